"""The BPTT baselines (gru-fused, lstm-fused, mingru): the whole-sequence path equals a loop of single steps in
values and gradients, the RNN's rollout takes that path, the minGRU scan holds over long sequences, every parameter
learns, a BPTT run trains and round-trips through a checkpoint, and `validate` keeps them out of SMT and DMT."""

from __future__ import annotations

import re

import pytest
import torch
from support import debug_config, state_dicts_equal

from smtrnn.baselines import BASELINE_CELLS, linear_scan
from smtrnn.bptt import bptt_loss
from smtrnn.cells import CELL_TYPES
from smtrnn.checkpoint import load_model
from smtrnn.config import BPTT_ONLY_CELLS, SMT_CELLS, BPTTConfig, validate
from smtrnn.data.tasks import make_task
from smtrnn.errors import ConfigError
from smtrnn.model import Model
from smtrnn.trainer import Trainer

B, T = 3, 7  # T odd on purpose
TOL = dict(atol=1e-5, rtol=1e-4)


def build(cell: str, tokens: int = 2, width: int = 8) -> tuple[Model, int]:
    cfg = debug_config("retrieval", "bptt", rnn__cell=cell, memory__tokens=tokens, memory__width=width)
    vocab = make_task(cfg.task.name, **cfg.task.params).vocab_size
    torch.manual_seed(0)
    return Model.for_run(cfg, vocab), vocab


def tokens_for(vocab: int, length: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (B, length), generator=torch.Generator().manual_seed(seed))


def some_state(size: int) -> torch.Tensor:
    """A state unlike m_∅: both signs, not normalized."""
    return 2 * torch.randn(B, size, generator=torch.Generator().manual_seed(2))


def test_the_registries_match_the_config_names():
    assert tuple(BASELINE_CELLS) == BPTT_ONLY_CELLS
    assert tuple(CELL_TYPES) == SMT_CELLS


@pytest.mark.parametrize("length", [1, 2, T, 16])
@pytest.mark.parametrize("cell", BPTT_ONLY_CELLS)
def test_sequence_equals_loop_of_forward(cell, length):
    model, vocab = build(cell)
    rnn = model.rnn
    embedded = rnn.embedding(tokens_for(vocab, length))
    m0 = some_state(rnn.size)
    memories = rnn.cell.sequence(embedded, m0)
    assert memories.shape == (B, length, rnn.size)
    m = m0
    for t in range(length):
        m = rnn.cell(m, embedded[:, t])
        torch.testing.assert_close(memories[:, t], m, **TOL)


@pytest.mark.parametrize("tokens", [1, 3])
@pytest.mark.parametrize("cell", BPTT_ONLY_CELLS)
def test_rollout_shapes_and_loop_of_step(cell, tokens):
    model, vocab = build(cell, tokens=tokens)
    rnn, x = model.rnn, tokens_for(vocab)
    memories, logits = rnn.rollout(x)
    assert memories.shape == (B, T, tokens * 8) and logits.shape == (B, T, vocab)
    m = rnn.init_state(B)
    for t in range(T):
        m = rnn.step(m, x[:, t])
        torch.testing.assert_close(memories[:, t], m, **TOL)
        torch.testing.assert_close(logits[:, t], rnn.readout(m), **TOL)


@pytest.mark.parametrize("cell", BPTT_ONLY_CELLS)
def test_rollout_takes_the_whole_sequence_path_unless_truncated(cell, monkeypatch):
    model, vocab = build(cell)
    rnn, x = model.rnn, tokens_for(vocab)
    expected, _ = rnn.rollout(x, detach_every=2)  # truncated BPTT: the step loop

    def no_steps(m, e):
        raise AssertionError("rollout stepped")

    monkeypatch.setattr(rnn.cell, "forward", no_steps)
    memories, _ = rnn.rollout(x)
    torch.testing.assert_close(memories, expected, **TOL)
    with pytest.raises(AssertionError, match="rollout stepped"):
        rnn.rollout(x, detach_every=2)


@pytest.mark.parametrize("cell", BPTT_ONLY_CELLS)
def test_whole_sequence_gradients_equal_the_step_loop(cell):
    """detach_every > T runs the step loop without cutting anything: the same function, so the same gradients (this
    checks the lstm-fused cell state rebuilt from the gates, and the scans' backward)."""
    model, vocab = build(cell)
    x, y = tokens_for(vocab), tokens_for(vocab, seed=3)

    def gradients(detach_every: int) -> dict[str, torch.Tensor]:
        model.zero_grad()
        bptt_loss(model, x, y, BPTTConfig(truncation=detach_every))[0].backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    fused, looped = gradients(0), gradients(T + 1)
    for name in fused:
        torch.testing.assert_close(fused[name], looped[name], **TOL, msg=name)


@pytest.mark.parametrize("cell", BPTT_ONLY_CELLS)
def test_bptt_gradients_reach_every_parameter(cell):
    model, vocab = build(cell)
    loss, _ = bptt_loss(model, tokens_for(vocab), tokens_for(vocab, seed=3), BPTTConfig())
    loss.backward()
    silent = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent


def test_linear_scan_matches_the_recurrence_for_any_sign():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 257, 5, generator=g), torch.randn(2, 257, 5, generator=g)
    h0 = torch.randn(2, 5, generator=g)
    h, expected = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        expected.append(h)
    torch.testing.assert_close(linear_scan(a, b, h0), torch.stack(expected, dim=1), **TOL)


def test_mingru_scan_matches_the_paper_recurrence_over_a_long_sequence():
    """T = 257 (not a power of two): the scan against h_t = (1 − z_t) h_{t-1} + z_t h̃_t written out from the weights."""
    model, vocab = build("mingru")
    rnn = model.rnn
    embedded = rnn.embedding(tokens_for(vocab, 257))
    m0 = some_state(rnn.size)
    weight, bias = rnn.cell.to_gate_and_candidate.weight, rnn.cell.to_gate_and_candidate.bias
    (w_z, w_h), (b_z, b_h) = weight.chunk(2), bias.chunk(2)
    h, expected = m0, []
    for t in range(embedded.shape[1]):
        z = torch.sigmoid(embedded[:, t] @ w_z.T + b_z)
        h = (1 - z) * h + z * (embedded[:, t] @ w_h.T + b_h)
        expected.append(h)
    torch.testing.assert_close(rnn.cell.sequence(embedded, m0), torch.stack(expected, dim=1), **TOL)


@pytest.mark.parametrize("cell", BPTT_ONLY_CELLS)
def test_overfits_one_batch(cell):
    model, vocab = build(cell, width=16)
    x, y = tokens_for(vocab), tokens_for(vocab, seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss, _ = bptt_loss(model, x, y, BPTTConfig())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("cell", BPTT_ONLY_CELLS)
def test_bptt_run_trains_and_round_trips(cell, tmp_path):
    cfg = debug_config("retrieval", "bptt", rnn__cell=cell)
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    result = trainer.run()
    assert result  # evaluated at the end
    loaded_cfg, model = load_model(tmp_path / "run")
    assert loaded_cfg.rnn.cell == cell and model.teacher is None
    assert state_dicts_equal(model.state_dict(), trainer.model.state_dict())
    x = tokens_for(model.vocab_size)
    fresh = Model.for_run(cfg, model.vocab_size)
    assert not torch.allclose(fresh.rnn.rollout(x)[1], model.rnn.rollout(x)[1])
    torch.testing.assert_close(model.rnn.rollout(x)[1], trainer.model.rnn.rollout(x)[1], atol=0, rtol=0)


@pytest.mark.parametrize("method", ["smt", "smt+dmt", "dmt"])
@pytest.mark.parametrize("cell", BPTT_ONLY_CELLS)
def test_validate_keeps_baselines_out_of_teacher_methods(cell, method):
    cfg = debug_config("retrieval", method, rnn__cell=cell, train__init="an-smt-run" if method == "dmt" else "")
    with pytest.raises(ConfigError, match=re.escape(f"cell '{cell}' is a BPTT baseline; method '{method}'")) as caught:
        validate(cfg)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("cell", BPTT_ONLY_CELLS)
def test_validate_accepts_baselines_with_bptt(cell):
    validate(debug_config("retrieval", "bptt", rnn__cell=cell))


def test_validate_needs_an_even_memory_for_lstm_fused():
    cfg = debug_config("retrieval", "bptt", rnn__cell="lstm-fused", memory__tokens=1, memory__width=15)
    with pytest.raises(ConfigError, match="lstm-fused"):
        validate(cfg)
