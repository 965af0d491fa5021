"""The reference release's one-transition SMT step (`smt.transitions=one`), kept for the throughput comparison:
its transition is exactly one of the all-timestep step's, and it trains through the Trainer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support import debug_config

from smtrnn.config import validate
from smtrnn.data.tasks import make_task
from smtrnn.errors import ConfigError
from smtrnn.model import Model
from smtrnn.reference import smt_one_transition_loss
from smtrnn.trainer import Trainer, loss_function


def setup(**smt):
    cfg = debug_config("copy", "smt", smt__teacher_alone=0.0, smt__schedule="joint", smt__transitions="one", **smt)
    task = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(0)
    x, y = task.sample(4, cfg.task.seq_len, torch.Generator().manual_seed(0))
    return cfg, Model.for_run(cfg, task.vocab_size), x, y


def test_its_transition_is_the_all_timestep_one_at_t():
    """With t fixed, the dynamics term equals the regression of step t+1 of the single causal encoding."""
    cfg, model, x, y = setup()
    t = 5
    _, metrics = smt_one_transition_loss(model, x, y, cfg.smt, t=t)
    with torch.no_grad():
        m = model.teacher.encode(x)
        expected = F.mse_loss(model.rnn.step(m[:, t], x[:, t + 1]), m[:, t + 1])
    assert float(metrics["dynamics"]) == pytest.approx(float(expected), rel=1e-5)


def test_gradient_reaches_teacher_and_rnn():
    cfg, model, x, y = setup()
    smt_one_transition_loss(model, x, y, cfg.smt)[0].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.teacher.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.teacher.decoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.rnn.cell.parameters())


def test_trainer_uses_it_and_runs(tmp_path):
    cfg, _, _, _ = setup()
    assert loss_function(cfg, 0.0).func is smt_one_transition_loss
    Trainer(cfg, tmp_path / "run", show_progress=False).run()


def test_it_refuses_the_staged_schedule_flags():
    cfg, _, _, _ = setup()
    cfg.smt.teacher_alone = 0.5
    with pytest.raises(ConfigError, match="transitions='one'"):
        validate(cfg)
    cfg.smt.teacher_alone, cfg.smt.transitions = 0.0, "some"
    with pytest.raises(ConfigError, match="smt.transitions"):
        validate(cfg)
