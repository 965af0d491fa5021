"""Equivalences and causality.

- `rollout` is exactly a loop of `step` from `init_state` (any cell), and `detach_every` changes gradients only.
- The teacher's encoder is causal: m_t depends on x_≤t only, and the batched m_t equals encoding the prefix
  x_0..x_t alone.
- The decoder's logits for y_{t+j} read m_t and x_{t+1}..x_{t+j} only, and read every one of the K memory tokens.
- The SMT terms line up in time: the dynamics term regresses f(m_{t-1}, x_t) onto m_t (m_{-1} = m_∅), and the
  decoder loss scores y_{t+j} against the decoder's j-th output with the teacher-forced x_{t+1}..x_{t+j}.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support import debug_config

from smtrnn.config import CELLS
from smtrnn.data.tasks import make_task
from smtrnn.model import Model
from smtrnn.smt import smt_loss

B, T = 4, 9
ATOL = 1e-5


def build(cell: str = "mlp", tokens: int = 2, task: str = "retrieval", seed: int = 0) -> tuple[Model, int]:
    cfg = debug_config(task, "smt", rnn__cell=cell, memory__tokens=tokens)
    vocab = make_task(cfg.task.name, **cfg.task.params).vocab_size
    torch.manual_seed(seed)
    return Model.for_run(cfg, vocab), vocab


def random_tokens(vocab: int, *shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def changed_after(x: torch.Tensor, t: int, vocab: int) -> torch.Tensor:
    """x with every input after position t replaced by a different token."""
    out = x.clone()
    out[:, t + 1 :] = (out[:, t + 1 :] + 1) % vocab
    return out


# --- the RNN ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_rollout_equals_loop_of_step(cell):
    model, vocab = build(cell)
    rnn, x = model.rnn, random_tokens(vocab, B, T)
    memories, logits = rnn.rollout(x)

    m = rnn.init_state(B)
    for t in range(T):
        m = rnn.step(m, x[:, t])
        torch.testing.assert_close(memories[:, t], m)
        torch.testing.assert_close(logits[:, t], rnn.readout(m))


@pytest.mark.parametrize("cell", CELLS)
def test_rollout_from_given_state_equals_loop_of_step(cell):
    model, vocab = build(cell)
    rnn, x = model.rnn, random_tokens(vocab, B, T)
    m0 = rnn.step(rnn.init_state(B), random_tokens(vocab, B, seed=2))  # some reachable state other than m_∅
    memories, _ = rnn.rollout(x, m0)

    m = m0
    for t in range(T):
        m = rnn.step(m, x[:, t])
    torch.testing.assert_close(memories[:, -1], m)
    assert not torch.allclose(memories[:, -1], rnn.rollout(x)[0][:, -1])  # m0 was really used


@pytest.mark.parametrize("every", [1, 3, 4])
def test_detach_every_changes_no_values(every):
    model, vocab = build("gru")
    x = random_tokens(vocab, B, T)
    full_m, full_logits = model.rnn.rollout(x)
    cut_m, cut_logits = model.rnn.rollout(x, detach_every=every)
    torch.testing.assert_close(cut_m, full_m, atol=0, rtol=0)
    torch.testing.assert_close(cut_logits, full_logits, atol=0, rtol=0)


# --- the encoder --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [1, 3])
@pytest.mark.parametrize("t", [0, 3, T - 2])
def test_encoder_memory_ignores_later_inputs(tokens, t):
    model, vocab = build(tokens=tokens)
    x = random_tokens(vocab, B, T)
    m = model.teacher.encode(x)
    m_changed = model.teacher.encode(changed_after(x, t, vocab))
    torch.testing.assert_close(m_changed[:, : t + 1], m[:, : t + 1], atol=ATOL, rtol=0)
    assert (m_changed[:, t + 1 :] - m[:, t + 1 :]).abs().max() > 1e-3  # the change did reach later memories


@pytest.mark.parametrize("tokens", [1, 3])
@pytest.mark.parametrize("t", [0, 1, 4, T - 1])
def test_batched_memory_equals_encoding_the_prefix_alone(tokens, t):
    model, vocab = build(tokens=tokens)
    x = random_tokens(vocab, B, T)
    m = model.teacher.encode(x)
    prefix = model.teacher.encode(x[:, : t + 1])
    torch.testing.assert_close(prefix, m[:, : t + 1], atol=ATOL, rtol=0)


# --- the decoder --------------------------------------------------------------------------------------------

FUTURE = 4  # decoder inputs x_{t+1}..x_{t+4}, logits for y_t..y_{t+4}


def decoder_inputs(model: Model, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    m = model.teacher.encode(random_tokens(vocab, B, T)).flatten(0, 1)  # (N, Z) real memories
    return m, random_tokens(vocab, m.shape[0], FUTURE, seed=3)


@pytest.mark.parametrize("j", range(FUTURE))
def test_decoder_logits_ignore_inputs_beyond_their_target(j):
    """Logits j (for y_{t+j}) may read x_future[:, :j] = x_{t+1}..x_{t+j}, nothing later."""
    model, vocab = build()
    m, x_future = decoder_inputs(model, vocab)
    logits = model.teacher.decode(m, x_future)
    changed = x_future.clone()
    changed[:, j:] = (changed[:, j:] + 1) % vocab
    logits_changed = model.teacher.decode(m, changed)
    torch.testing.assert_close(logits_changed[:, : j + 1], logits[:, : j + 1], atol=ATOL, rtol=0)
    assert (logits_changed[:, j + 1 :] - logits[:, j + 1 :]).abs().max() > 1e-3


@pytest.mark.parametrize("j", range(FUTURE + 1))
def test_decoder_on_a_shorter_future_gives_the_same_leading_logits(j):
    model, vocab = build()
    m, x_future = decoder_inputs(model, vocab)
    logits = model.teacher.decode(m, x_future)
    short = model.teacher.decode(m, x_future[:, :j])
    torch.testing.assert_close(short, logits[:, : j + 1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("token", [0, 1, 2])
def test_decoder_reads_every_memory_token(token):
    model, vocab = build(tokens=3)
    m, x_future = decoder_inputs(model, vocab)
    changed = m.clone().unflatten(-1, (3, -1))
    changed[:, token] = -changed[:, token]
    logits = model.teacher.decode(m, x_future)
    logits_changed = model.teacher.decode(changed.flatten(-2), x_future)
    assert (logits_changed[:, 0] - logits[:, 0]).abs().max() > 1e-3


# --- the SMT terms, by hand ---------------------------------------------------------------------------------


def test_smt_dynamics_and_readout_terms_match_a_per_step_computation():
    model, vocab = build(task="delayed_recall")
    cfg = debug_config("delayed_recall").smt
    x = random_tokens(vocab, B, T)
    y = torch.full_like(x, -1)
    y[:, 2:] = x[:, :-2]
    _, metrics = smt_loss(model, x, y, cfg)

    m = model.teacher.encode(x)
    previous = model.rnn.init_state(B)
    squared = []
    for t in range(T):
        squared.append((model.rnn.step(previous, x[:, t]) - m[:, t]).pow(2))
        previous = m[:, t]
    labelled = y >= 0
    readout = F.cross_entropy(model.rnn.readout(m)[labelled], y[labelled])
    assert float(metrics["dynamics"]) == pytest.approx(torch.stack(squared).mean().item(), rel=1e-5)
    assert float(metrics["readout"]) == pytest.approx(readout.item(), rel=1e-5)


def test_decoder_loss_scores_each_position_against_its_own_future():
    """With the sampled positions fixed, decoder_loss is the CE of decode(m_t, x_{t+1..t+Tf-1}) against
    y_t..y_{t+Tf-1}, past-the-end targets ignored."""
    model, vocab = build(task="delayed_recall")
    teacher, window = model.teacher, model.teacher.future_len
    x = random_tokens(vocab, B, T)
    y = random_tokens(vocab, B, T, seed=5)
    y[:, :2] = -1
    positions = torch.tensor([0, 3, T - 2, T - 1])  # includes windows that run past the end
    m = teacher.encode(x)
    loss = teacher.decoder_loss(m, x, y, positions.repeat(B, 1))

    nats, count = 0.0, 0
    for b in range(B):
        for t in positions.tolist():
            future = x[b, t + 1 : t + window]
            logits = teacher.decode(m[b, t][None], future[None])[0]  # (len(future)+1, V)
            targets = y[b, t : t + window]
            for j in range(len(targets)):
                if targets[j] >= 0:
                    nats += F.cross_entropy(logits[j], targets[j]).item()
                    count += 1
    assert loss.item() == pytest.approx(nats / count, rel=1e-5)


def test_a_horizon_past_the_sequence_is_cut_at_its_end_without_changing_the_loss():
    """Tf = 5T (a horizon reaching the one label from any position): the decoder is given at most T - 1 future
    inputs, never padding, and the loss is still each position's CE against its own future."""
    cfg = debug_config("retrieval", "smt", teacher__future_len=5 * T, teacher__decoder_positions=3)
    vocab = make_task(cfg.task.name, **cfg.task.params).vocab_size
    torch.manual_seed(0)
    teacher = Model.for_run(cfg, vocab).teacher
    x, y = random_tokens(vocab, B, T), random_tokens(vocab, B, T, seed=5)
    y[:, : T - 1] = -1  # one label, at the end
    seen = []
    teacher.decoder.register_forward_hook(lambda module, args, out: seen.append(args[1].shape[1]))
    m = teacher.encode(x)
    positions = torch.tensor([0, 4, T - 1])
    loss = teacher.decoder_loss(m, x, y, positions.repeat(B, 1))
    assert seen == [T - 1]

    nats = []
    for b in range(B):
        for t in positions.tolist():
            logits = teacher.decode(m[b, t][None], x[b, t + 1 :][None])[0]
            nats.append(F.cross_entropy(logits[T - 1 - t], y[b, T - 1]).item())
    assert loss.item() == pytest.approx(sum(nats) / len(nats), rel=1e-5)
    torch.manual_seed(0)
    assert teacher.sample_positions(y).min() < T - 4  # every window holds the label: drawn anywhere


def test_decoder_positions_are_drawn_among_windows_that_hold_a_label():
    """Retrieval labels only the last position; with Tf = 4 only m_{T-4}..m_{T-1} can see it."""
    model, vocab = build(task="retrieval")
    teacher = model.teacher
    task = make_task("retrieval", num_symbols=4)
    x, y = task.sample(8, T, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    positions = teacher.sample_positions(y)
    assert positions.shape == (8, teacher.decoder_positions)
    assert positions.min() >= T - teacher.future_len
    assert positions.max() <= T - 1


def test_decoder_positions_at_least_t_train_on_every_position_once():
    """decoder_positions >= T: no draw; the loss is the mean over every labelled target of every window."""
    model, vocab = build(task="copy")
    teacher = model.teacher
    x, y = make_task("copy", num_symbols=4).sample(3, T, torch.Generator().manual_seed(0))
    teacher.decoder_positions = T
    positions = teacher.sample_positions(y)
    assert positions.tolist() == [list(range(T))] * 3
    with torch.no_grad():
        m = teacher.encode(x)
        torch.manual_seed(1)
        every = teacher.decoder_loss(m, x, y)
        torch.manual_seed(2)  # nothing is drawn: another seed gives the same loss
        assert teacher.decoder_loss(m, x, y) == every
        assert every == teacher.decoder_loss(m, x, y, positions=torch.arange(T).expand(3, T))
        teacher.decoder_positions = T - 1  # below T: drawn, with replacement
        assert teacher.sample_positions(y).shape == (3, T - 1)


@pytest.mark.parametrize("token_shift", [True, False])
def test_kv_cached_teacher_equals_encoding_the_prefix(token_shift):
    """encode_next token by token, from an empty cache, gives every prefix's memory exactly as one causal pass."""
    from smtrnn.presets import debug

    cfg = debug("copy")
    cfg.teacher.token_shift = token_shift
    torch.manual_seed(0)
    teacher = Model.for_run(cfg, 12).teacher
    x = torch.randint(0, 12, (3, 9))
    with torch.no_grad():
        full = teacher.encode(x)
        cache = teacher.new_cache()
        stepped = torch.stack([teacher.encode_next(x[:, t], cache) for t in range(9)], dim=1)
    assert torch.allclose(stepped, full, atol=1e-5)
    assert cache.layers[0].length == 9 and cache.nbytes() > 0
