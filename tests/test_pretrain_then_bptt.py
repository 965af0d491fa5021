"""`smt+dmt+bptt`: SMT, then DMT, then a BPTT fine-tune of the RNN alone over the last `bptt.fraction`."""

from __future__ import annotations

import pytest
import torch
from support import debug_config

from smtrnn.bptt import bptt_loss
from smtrnn.config import validate
from smtrnn.dmt import dmt_loss
from smtrnn.errors import ConfigError
from smtrnn.smt import smt_loss
from smtrnn.trainer import Trainer, loss_function


def test_the_phases_split_the_budget_smt_then_dmt_then_bptt():
    cfg = debug_config("retrieval", "smt+dmt+bptt")
    cfg.dmt.fraction, cfg.bptt.fraction = 0.25, 0.25
    assert loss_function(cfg, 0.0).func is smt_loss and loss_function(cfg, 0.49).func is smt_loss
    assert loss_function(cfg, 0.51).func is dmt_loss and loss_function(cfg, 0.74).func is dmt_loss
    assert loss_function(cfg, 0.76).func is bptt_loss and loss_function(cfg, 1.0).func is bptt_loss
    assert loss_function(cfg, 0.3).keywords["smt_progress"] == pytest.approx(0.6)  # 0.3 of the 0.5 SMT share


def test_the_bptt_phase_trains_the_rnn_and_leaves_the_teacher(tmp_path):
    cfg = debug_config("retrieval", "smt+dmt+bptt", steps=8)
    cfg.dmt.fraction, cfg.bptt.fraction = 0.25, 0.5
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    for _ in range(4):  # SMT, then DMT
        trainer.train_step()
    teacher = {k: v.clone() for k, v in trainer.model.teacher.state_dict().items()}
    cell = {k: v.clone() for k, v in trainer.model.rnn.cell.state_dict().items()}
    for _ in range(4):
        metrics = trainer.train_step()
    assert set(metrics) >= {"readout", "loss"} and "decoder" not in metrics and "dynamics" not in metrics
    assert all(torch.equal(teacher[k], v) for k, v in trainer.model.teacher.state_dict().items())
    assert any(not torch.equal(cell[k], v) for k, v in trainer.model.rnn.cell.state_dict().items())


def test_shares_that_leave_no_smt_are_refused():
    cfg = debug_config("retrieval", "smt+dmt+bptt")
    cfg.dmt.fraction, cfg.bptt.fraction = 0.5, 0.5
    with pytest.raises(ConfigError, match="sum must be below 1"):
        validate(cfg)


@pytest.mark.slow
def test_compare_runs_smt_pretraining_beside_bptt(tmp_path, capsys):
    import json

    from smtrnn.cli import main

    argv = ["compare", "--task", "retrieval", "--lengths", "12", "--methods", "smt+dmt+bptt,bptt", "--seeds", "1"]
    argv += ["--steps", "8", "--preset", "debug", "--eval-batches", "1", "--out", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert sorted(row["method"] for row in rows) == ["bptt", "smt+dmt+bptt"]
    pretrained = next(row for row in rows if row["method"] == "smt+dmt+bptt")
    assert "teacher_accuracy" in pretrained  # the run keeps its teacher
