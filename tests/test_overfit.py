"""Each training method fits one fixed small batch: the smallest end-to-end check that its loss is wired to
something learnable. For SMT the payoff is the RNN alone, rolled out from m_∅ without the teacher.

Task: delayed_recall with lag 1 (y_t = x_{t-1}), labels at every position from t = 1.
"""

from __future__ import annotations

import pytest
import torch
from support import debug_config

from smtrnn.bptt import bptt_loss
from smtrnn.data.tasks import make_task
from smtrnn.losses import masked_accuracy
from smtrnn.model import Model
from smtrnn.smt import smt_loss

STEPS = 150


def fit(method: str, **overrides) -> tuple[Model, torch.Tensor, torch.Tensor, dict, dict]:
    """Adam at 3e-3 on one fixed batch -> (model, x, y, metrics of the first step, metrics of the last)."""
    cfg = debug_config("delayed_recall", method, task__params={"num_symbols": 4, "lag": 1}, **overrides)
    task = make_task(cfg.task.name, **cfg.task.params)
    x, y = task.sample(16, cfg.task.seq_len, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = Model.for_run(cfg, task.vocab_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(STEPS):
        if method == "smt":
            loss, metrics = smt_loss(model, x, y, cfg.smt)
        else:
            loss, metrics = bptt_loss(model, x, y, cfg.bptt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(metrics)
    return model, x, y, history[0], history[-1]


def rnn_alone_accuracy(model: Model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        _, logits = model.rnn.rollout(x)
    correct, labelled = masked_accuracy(logits, y)
    return correct / labelled


def test_bptt_overfits_one_batch():
    model, x, y, first, last = fit("bptt")
    assert first["readout"] > 1.0  # about ln 4 at the start
    assert last["readout"] < 0.1
    assert rnn_alone_accuracy(model, x, y) == 1.0


@pytest.mark.parametrize("updates_teacher", [False, True])
def test_smt_overfits_one_batch(updates_teacher):
    # Every step trains teacher and RNN together (no warm-up, teacher never frozen); when the dynamics loss reaches
    # the teacher, the paper's weight 0.1 keeps it from collapsing the memories.
    model, x, y, first, last = fit(
        "smt",
        smt__schedule="joint" if updates_teacher else "joint-detached",
        smt__dynamics_weight=0.1 if updates_teacher else 1.0,
    )
    assert last["decoder"] < first["decoder"] / 20
    assert last["readout"] < first["readout"] / 20
    assert last["dynamics"] < first["dynamics"] / 10
    # What SMT is for: the RNN, run alone from m_∅, solves the batch.
    assert rnn_alone_accuracy(model, x, y) >= 0.95
