"""Trainer schedules: the length curriculum, periodic checkpoints and the learning-rate schedule."""

from __future__ import annotations

import json

import pytest
import torch
from support import debug_config

from smtrnn.checkpoint import load_trainer_state
from smtrnn.config import OptimConfig, validate
from smtrnn.data.tasks import build_task
from smtrnn.errors import ConfigError
from smtrnn.trainer import Trainer, learning_rate, sequence_length


def test_curriculum_doubles_the_length_up_to_T_then_holds():
    cfg = debug_config("retrieval")
    cfg.task.seq_len, cfg.train.curriculum_start, cfg.train.curriculum_fraction = 64, 8, 0.4
    lengths = [sequence_length(cfg, p / 100) for p in range(100)]
    assert lengths[0] == 8 and lengths[-1] == 64
    assert sorted(set(lengths)) == [8, 16, 32, 64]
    assert lengths == sorted(lengths)  # never shrinks
    assert all(n == 64 for p, n in enumerate(lengths) if p >= 40)  # full T after the curriculum's share


def test_no_curriculum_is_always_T():
    cfg = debug_config("retrieval")
    assert {sequence_length(cfg, p / 10) for p in range(10)} == {cfg.task.seq_len}


def test_curriculum_start_below_the_task_minimum_is_refused():
    cfg = debug_config("delayed_recall")
    cfg.train.curriculum_start = 1  # the debug lag is 2, so sequences need length >= 3
    validate(cfg)  # a rule of the task, checked where the task is built
    with pytest.raises(ConfigError, match="curriculum_start"):
        build_task(cfg)


def test_training_follows_the_curriculum(tmp_path):
    cfg = debug_config("retrieval", "bptt", steps=10)
    cfg.task.seq_len, cfg.train.curriculum_start, cfg.train.curriculum_fraction = 16, 4, 0.5
    Trainer(cfg, tmp_path / "run", show_progress=False).run()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lengths = [r["seq_len"] for r in logged if "seq_len" in r]
    assert lengths[0] == 4 and lengths[-1] == 16


def test_periodic_checkpoints(tmp_path):
    cfg = debug_config("retrieval", "bptt", steps=7)
    cfg.train.save_every = 3
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    saved_steps = []
    original = trainer.save
    trainer.save = lambda: (saved_steps.append(trainer.step), original())
    trainer.run()
    assert saved_steps == [3, 6, 7]
    assert load_trainer_state(tmp_path / "run")["step"] == 7


def test_learning_rate_warms_up_then_follows_the_schedule():
    constant = OptimConfig(lr=1.0, warmup=0.1, schedule="constant")
    cosine = OptimConfig(lr=1.0, warmup=0.1, schedule="cosine")
    assert learning_rate(constant, 0.05) == pytest.approx(0.5)
    assert learning_rate(constant, 0.5) == 1.0 and learning_rate(constant, 1.0) == 1.0
    assert learning_rate(cosine, 0.1) == pytest.approx(1.0)
    assert learning_rate(cosine, 0.55) == pytest.approx(0.5)
    assert learning_rate(cosine, 1.0) == pytest.approx(0.0, abs=1e-9)


def test_gradients_are_clipped_to_grad_clip_and_the_raw_norm_is_logged(tmp_path):
    cfg = debug_config("retrieval", "smt", steps=4, optim__grad_clip=0.01)
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    seen = []
    original = trainer.optimizer.step
    trainer.optimizer.step = lambda: (
        seen.append(
            float(
                torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in trainer.model.parameters() if p.grad is not None])
                )
            )
        ),
        original(),
    )
    metrics = trainer.train_step()
    assert metrics["grad_norm"] > 0.01  # the raw norm, before clipping
    assert seen == [pytest.approx(0.01, rel=1e-4)]


HOST_READS = ("item", "tolist", "__float__", "__bool__", "__int__", "__index__")


def _count_host_reads(monkeypatch) -> list[str]:
    """Every read of a tensor's value by the host (a device sync on an accelerator) made by smtrnn's own code."""
    import sys

    calls = []
    for name in HOST_READS:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if "/smtrnn/" in caller.replace("\\", "/"):
                calls.append(f"{_name} in {caller.rsplit('/', 1)[-1]}:{sys._getframe(1).f_lineno}")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


@pytest.mark.parametrize("method", ["smt", "smt+dmt", "bptt", "dmt"])
def test_a_training_step_reads_the_device_once(method, tmp_path, monkeypatch):
    """The objectives return detached tensors; the step reads every loss term and the gradient norm in one
    transfer (which is also the finiteness check) and nowhere else, whichever phase (SMT, then DMT) it is in."""
    cfg = debug_config("retrieval", method, steps=12)
    if method == "dmt":
        cfg.train.method, cfg.dmt.fraction = "smt+dmt", 0.99  # DMT from the second step on
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    trainer.train_step()  # the first step builds lazy state (optimizer moments)
    calls = _count_host_reads(monkeypatch)
    for _ in range(10):
        metrics = trainer.train_step()
    assert len(calls) == 10, calls
    assert all(isinstance(v, float) for k, v in metrics.items() if k in ("loss", "grad_norm", "readout"))
    assert metrics["transitions"] == cfg.optim.batch_size * metrics["seq_len"]


def test_objectives_return_detached_scalar_tensors():
    from smtrnn.bptt import bptt_loss
    from smtrnn.data.tasks import make_task
    from smtrnn.dmt import dmt_loss
    from smtrnn.model import Model
    from smtrnn.smt import smt_loss

    cfg = debug_config("retrieval")
    task = make_task(cfg.task.name, **cfg.task.params)
    model = Model.for_run(cfg, task.vocab_size)
    x, y = task.sample(4, cfg.task.seq_len, torch.Generator().manual_seed(0))
    for loss, metrics in (
        smt_loss(model, x, y, cfg.smt),
        dmt_loss(model, x, y, cfg.dmt),
        bptt_loss(model, x, y, cfg.bptt),
    ):
        assert loss.requires_grad and metrics
        assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in metrics.values())
        assert torch.equal(metrics["loss"], loss.detach())


def test_the_log_reports_supervised_transitions_per_second(tmp_path):
    cfg = debug_config("retrieval", "smt", steps=4)
    Trainer(cfg, tmp_path / "run", show_progress=False).run()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rates = [r["transitions_per_s"] for r in logged if "loss" in r]
    assert len(rates) == 4 and all(isinstance(r, int) and r > 0 for r in rates)


def test_tensorboard_scalars_mirror_the_log(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from smtrnn.trainer import TENSORBOARD_DIR

    cfg = debug_config("retrieval", "smt", steps=3, train__tensorboard=True)
    Trainer(cfg, tmp_path / "run", show_progress=False).run()
    events = EventAccumulator(str(tmp_path / "run" / TENSORBOARD_DIR))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "grad_norm", "transitions_per_s", "eval/rnn_accuracy"} <= tags
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert [round(e.value, 5) for e in events.Scalars("loss")] == [round(v, 5) for v in losses]
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]


def test_without_tensorboard_no_event_files_are_written(tmp_path):
    from smtrnn.trainer import TENSORBOARD_DIR

    Trainer(debug_config("retrieval", "smt", steps=2), tmp_path / "run", show_progress=False).run()
    assert not (tmp_path / "run" / TENSORBOARD_DIR).exists()
