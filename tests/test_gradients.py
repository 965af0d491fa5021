"""Which parameters each loss term and each routing flag sends gradient to.

SMT: the dynamics MSE trains the RNN's cell and m_∅, and the encoder only under the `joint` schedule; the
readout CE never reaches the teacher; `rnn_active=False` (teacher warm-up) leaves the RNN untouched;
the `staged` schedule leaves the teacher untouched once the RNN is active, in the optimizer too.
BPTT: truncation k cuts every gradient path longer than the current k-step window.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support import debug_config, state_dicts_equal

from smtrnn.bptt import bptt_loss
from smtrnn.config import BPTTConfig, SMTConfig
from smtrnn.data.tasks import make_task
from smtrnn.model import Model
from smtrnn.smt import smt_loss
from smtrnn.trainer import Trainer


def build(method: str = "smt", task: str = "delayed_recall") -> tuple[Model, torch.Tensor, torch.Tensor]:
    cfg = debug_config(task, method)
    task_ = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(0)
    model = Model.for_run(cfg, task_.vocab_size)
    x, y = task_.sample(4, cfg.task.seq_len, torch.Generator().manual_seed(0))
    return model, x, y


def only(term: str, **flags) -> SMTConfig:
    """An SMTConfig whose loss is the one named term (weight 1), the others weighted 0."""
    weights = {
        name: 0.0
        for name in (
            "decoder_weight",
            "dynamics_weight",
            "uniformity_weight",
            "readout_weight",
            "onestep_readout_weight",
        )
    }
    weights[f"{term}_weight"] = 1.0
    return dataclasses.replace(SMTConfig(), **weights, **flags)  # joint unless a test names another schedule


ROUTING = {True: "joint", False: "joint-detached"}  # does the dynamics loss reach the encoder?


def grads(module: torch.nn.Module) -> dict[str, float]:
    """Largest absolute gradient of each parameter; 0.0 where it got none."""
    return {name: 0.0 if p.grad is None else p.grad.abs().max().item() for name, p in module.named_parameters()}


def backward(model: Model, x, y, cfg: SMTConfig, rnn_active: bool = True) -> None:
    model.zero_grad(set_to_none=True)
    loss, _ = smt_loss(model, x, y, cfg, rnn_active=rnn_active)
    loss.backward()


def without_grad(module: torch.nn.Module) -> list[str]:
    return [name for name, g in grads(module).items() if g == 0.0]


def with_grad(module: torch.nn.Module) -> list[str]:
    return [name for name, g in grads(module).items() if g != 0.0]


@pytest.mark.parametrize("updates_teacher", [False, True])
def test_dynamics_term_trains_the_cell_and_the_empty_memory(updates_teacher):
    model, x, y = build()
    backward(model, x, y, only("dynamics", schedule=ROUTING[updates_teacher]))
    assert without_grad(model.rnn.cell) == []
    assert grads(model.rnn)["empty_memory"] > 0
    assert with_grad(model.rnn.readout_net) == []  # the readout is not part of the dynamics


def test_onestep_readout_term_trains_cell_and_readout_but_not_the_teacher():
    """CE of g(f(m_{t-1}, x_t)): the gradient reaches the update f (one step) and g, never the teacher's memories."""
    model, x, y = build()
    backward(model, x, y, only("onestep_readout", schedule="joint"))
    assert with_grad(model.rnn.cell) and with_grad(model.rnn.readout_net)
    assert with_grad(model.teacher) == []


def test_dmt_onestep_readout_trains_the_cell_through_the_step():
    from smtrnn.config import DMTConfig
    from smtrnn.dmt import dmt_loss

    model, x, y = build()
    for weight, reaches in ((0.0, False), (1.0, True)):
        model.zero_grad(set_to_none=True)
        cfg = DMTConfig(dynamics_weight=0.0, readout_weight=0.0, onestep_readout_weight=weight)
        dmt_loss(model, x, y, cfg)[0].backward()
        assert bool(with_grad(model.rnn.cell)) == reaches


def test_dynamics_term_leaves_the_teacher_alone_without_the_flag():
    model, x, y = build()
    backward(model, x, y, only("dynamics", schedule="joint-detached"))
    assert with_grad(model.teacher) == []


def test_dynamics_term_trains_the_encoder_with_the_flag():
    model, x, y = build()
    backward(model, x, y, only("dynamics", schedule="joint"))
    assert grads(model.teacher)["embedding.weight"] > 0
    assert without_grad(model.teacher.encoder) == []
    assert with_grad(model.teacher.decoder) == []  # the decoder plays no part in the dynamics


@pytest.mark.parametrize("updates_teacher", [False, True])
def test_readout_term_never_reaches_the_teacher(updates_teacher):
    model, x, y = build()
    backward(model, x, y, only("readout", schedule=ROUTING[updates_teacher]))
    assert with_grad(model.teacher) == []
    assert without_grad(model.rnn.readout_net) == []


def test_teacher_warmup_leaves_the_rnn_alone():
    model, x, y = build()
    backward(model, x, y, SMTConfig(schedule="joint"), rnn_active=False)
    assert with_grad(model.rnn) == []
    assert grads(model.teacher)["embedding.weight"] > 0  # the teacher terms did run


def test_decoder_term_trains_the_whole_teacher_and_not_the_rnn():
    model, x, y = build()
    backward(model, x, y, only("decoder"))
    assert without_grad(model.teacher) == []
    assert with_grad(model.rnn) == []


# --- BPTT truncation ----------------------------------------------------------------------------------------


def embedding_grad(truncation: int, position: int) -> float:
    """|d loss / d embedding| of the input at `position` (T = 8), for a loss on the last step only.

    The input at `position` is the only occurrence of token 0, so the gradient of embedding row 0 is exactly
    the gradient through that one input.
    """
    model, _, _ = build("bptt", "retrieval")
    x = torch.full((2, 8), 2, dtype=torch.long)
    x[:, position] = 0
    y = torch.full_like(x, -1)
    y[:, -1] = 1
    loss, _ = bptt_loss(model, x, y, BPTTConfig(truncation=truncation))
    loss.backward()
    return model.rnn.embedding.weight.grad[0].abs().max().item()


@pytest.mark.parametrize(
    "truncation, position, reaches",
    [
        (0, 0, True),  # full BPTT: the first input influences the last loss
        (4, 0, False),  # windows x_0..x_3 | x_4..x_7: the path from x_0 is cut
        (4, 4, True),  # x_4 opens the last window
        (4, 3, False),  # x_3 closes the window before it
        (5, 4, False),  # windows x_0..x_4 | x_5..x_7
        (5, 5, True),
        (8, 0, True),  # one window spanning the sequence: as full BPTT
    ],
)
def test_truncation_cuts_gradient_paths_longer_than_the_window(truncation, position, reaches):
    assert (embedding_grad(truncation, position) > 0) == reaches


def test_with_the_flag_the_dynamics_gradient_flows_through_both_memories(monkeypatch):
    """Under `joint`, d(dynamics)/d m is that of MSE(f(m_{t-1}, x_t), m_t) with both m_{t-1}
    (the input of the step) and m_t (the target) live; without it, none reaches m."""
    model, x, y = build()
    memories = model.teacher.encode(x).detach()

    def grad_of_smt(updates_teacher: bool) -> torch.Tensor:
        m = memories.clone().requires_grad_(True)
        monkeypatch.setattr(model.teacher, "encode", lambda _: m)
        loss, _ = smt_loss(model, x, y, only("dynamics", schedule=ROUTING[updates_teacher]))
        loss.backward()
        return torch.zeros_like(m) if m.grad is None else m.grad

    m = memories.clone().requires_grad_(True)
    previous = torch.cat([model.rnn.init_state(x.shape[0])[:, None], m[:, :-1]], dim=1)
    by_hand = torch.stack(
        [(model.rnn.step(previous[:, t], x[:, t]) - m[:, t]).pow(2) for t in range(x.shape[1])], dim=1
    ).mean()
    (expected,) = torch.autograd.grad(by_hand, m)

    torch.testing.assert_close(grad_of_smt(True), expected)
    assert grad_of_smt(False).abs().max() == 0


# --- freezing the teacher after the warm-up -----------------------------------------------------------------


def test_frozen_teacher_gets_no_gradient_once_the_rnn_is_active():
    model, x, y = build()
    cfg = SMTConfig(schedule="staged", teacher_alone=0.5)
    backward(model, x, y, cfg, rnn_active=True)
    assert all(p.grad is None for p in model.teacher.parameters())  # None, not zeros: AdamW must skip them
    assert without_grad(model.rnn.cell) == [] and without_grad(model.rnn.readout_net) == []


def test_frozen_teacher_still_learns_during_the_warmup():
    model, x, y = build()
    backward(model, x, y, SMTConfig(schedule="staged", teacher_alone=0.5), rnn_active=False)
    assert without_grad(model.teacher) == []
    assert with_grad(model.rnn) == []


def test_frozen_teacher_does_not_move_in_training(tmp_path):
    """Steps 0-2 are the warm-up (progress < 0.5); from step 3 on the teacher's weights stay put, even though
    AdamW still holds momentum for them from the warm-up, while the RNN keeps training."""
    cfg = debug_config("retrieval", "smt", steps=6, smt__teacher_alone=0.5, smt__schedule="staged")
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    teacher, rnn = trainer.model.teacher, trainer.model.rnn
    for _ in range(3):
        trainer.train_step()
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    rnn_before = {k: v.clone() for k, v in rnn.state_dict().items()}
    for _ in range(3):
        metrics = trainer.train_step()
    assert "dynamics" in metrics  # the RNN phase did start
    assert state_dicts_equal(teacher.state_dict(), frozen)
    assert not state_dicts_equal(rnn.state_dict(), rnn_before)
