"""Shapes of the recurrent and teacher APIs in the package's legend (B, T, Z = K·D, V), for every cell, K = 1 and
K > 1, and an odd T; and the one property every memory shares: each of its K tokens is RMS-normalized."""

from __future__ import annotations

import pytest
import torch
from support import debug_config

from smtrnn.config import CELLS, SMT_CELLS
from smtrnn.data.tasks import make_task
from smtrnn.model import Model

B, T = 3, 7  # T odd on purpose: nothing may assume an even length
WIDTH = 16  # D


def build(cell: str, tokens: int) -> tuple[Model, int]:
    cfg = debug_config("retrieval", "smt", rnn__cell=cell, memory__tokens=tokens, memory__width=WIDTH)
    vocab = make_task(cfg.task.name, **cfg.task.params).vocab_size
    torch.manual_seed(0)
    return Model.for_run(cfg, vocab), vocab


def token_mean_squares(m: torch.Tensor, tokens: int) -> torch.Tensor:
    """(..., Z) -> (..., K): the mean square of each D-wide memory token."""
    return m.unflatten(-1, (tokens, m.shape[-1] // tokens)).pow(2).mean(-1)


def assert_rms_normalized(m: torch.Tensor, tokens: int) -> None:
    ms = token_mean_squares(m, tokens)
    torch.testing.assert_close(ms, torch.ones_like(ms), atol=1e-4, rtol=0)


def inputs(vocab: int, length: int = T) -> torch.Tensor:
    return torch.randint(0, vocab, (B, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("tokens", [1, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_shapes(cell, tokens):
    model, vocab = build(cell, tokens)
    rnn, z = model.rnn, tokens * WIDTH
    x = inputs(vocab)

    m0 = rnn.init_state(B)
    assert m0.shape == (B, z)
    m1 = rnn.step(m0, x[:, 0])
    assert m1.shape == (B, z)
    assert rnn.readout(m1).shape == (B, vocab)
    memories, logits = rnn.rollout(x)
    assert memories.shape == (B, T, z)
    assert logits.shape == (B, T, vocab)


@pytest.mark.parametrize("tokens", [1, 3])
@pytest.mark.parametrize("cell", SMT_CELLS)  # the BPTT baselines are plain, unnormalized modules
def test_rnn_memories_are_rms_normalized_per_token(cell, tokens):
    model, vocab = build(cell, tokens)
    rnn = model.rnn
    memories, _ = rnn.rollout(inputs(vocab))
    assert_rms_normalized(rnn.init_state(B), tokens)
    assert_rms_normalized(memories, tokens)


@pytest.mark.parametrize("tokens", [1, 3])
def test_teacher_shapes(tokens):
    model, vocab = build("mlp", tokens)
    teacher, z = model.teacher, tokens * WIDTH
    x = inputs(vocab)

    m = teacher.encode(x)
    assert m.shape == (B, T, z)
    assert teacher.predict_next(m).shape == (B, T, vocab)
    flat = m.flatten(0, 1)  # (N, Z), N = B·T
    for future in (0, 1, 3):
        x_future = torch.randint(0, vocab, (flat.shape[0], future))
        assert teacher.decode(flat, x_future).shape == (B * T, future + 1, vocab)


@pytest.mark.parametrize("tokens", [1, 3])
def test_teacher_memories_are_rms_normalized_per_token(tokens):
    model, vocab = build("mlp", tokens)
    m = model.teacher.encode(inputs(vocab))
    assert_rms_normalized(m, tokens)


# --- the cell protocol: one step entry point, one whole-sequence entry point -------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("detach_every", [0, 3])
def test_every_cell_runs_a_sequence_as_its_steps_do(cell, detach_every):
    """`cell.sequence` (the base class's loop, or a baseline's fused path) gives the states that stepping the cell
    one input at a time gives, with and without a cut gradient (truncated BPTT takes the loop)."""
    from support import debug_config

    from smtrnn.model import Model

    cfg = debug_config("retrieval", "bptt", rnn__cell=cell)
    torch.manual_seed(0)
    rnn = Model.for_run(cfg, 8).rnn
    x = torch.randint(0, 8, (3, 7))
    memories, logits = rnn.rollout(x, detach_every=detach_every)
    m, stepped = rnn.init_state(3), []
    for t in range(7):
        m = rnn.step(m, x[:, t])
        stepped.append(m)
    torch.testing.assert_close(memories, torch.stack(stepped, dim=1), atol=1e-5, rtol=1e-5)
    assert logits.shape == (3, 7, 8)


def test_step_each_from_previous_memories_is_the_one_step_prediction_of_every_position():
    from support import debug_config

    from smtrnn.model import Model

    rnn = Model.for_run(debug_config("retrieval", "bptt"), 8).rnn
    x, m = torch.randint(0, 8, (2, 5)), torch.randn(2, 5, rnn.size)
    previous = rnn.previous_memories(m)
    assert torch.equal(previous[:, 0], rnn.init_state(2)) and torch.equal(previous[:, 1:], m[:, :-1])
    predicted = rnn.step_each(previous, x)
    for t in range(5):
        torch.testing.assert_close(predicted[:, t], rnn.step(previous[:, t], x[:, t]))


def test_the_model_is_built_from_the_model_configs():
    from smtrnn.config import MemoryConfig, RNNConfig, TeacherConfig

    memory, rnn = MemoryConfig(tokens=2, width=8), RNNConfig(hidden=16, embed=8, readout_hidden=16)
    alone = Model(memory, rnn, 5)
    assert alone.teacher is None and alone.rnn.size == 16
    paired = Model(memory, rnn, 5, TeacherConfig(width=16, depth=1, heads=2, decoder_depth=1))
    assert paired.teacher is not None
    cfg = debug_config("retrieval", "bptt")
    assert Model.for_run(cfg, 5).teacher is None
    cfg.train.method = "smt"
    assert Model.for_run(cfg, 5).teacher is not None
