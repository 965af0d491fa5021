"""Presets: plain functions returning a full `RunConfig` for a task.

`debug` trains in seconds on CPU (tests, smoke runs); `small` is the setting the benchmarks and the demo use on
2 CPU cores; `staged` is `small` with the staged SMT schedule instead of the paper's joint one.
"""

from __future__ import annotations

from typing import Callable

from smtrnn.config import (BPTTConfig, MemoryConfig, OptimConfig, RNNConfig, RunConfig, SMTConfig, TaskConfig,
                           TeacherConfig, TrainConfig)
from smtrnn.errors import ConfigError
from smtrnn.tasks import make_task

# Small task parameters for the debug preset, so a few dozen steps already show learning.
DEBUG_TASK_PARAMS = {
    "retrieval": {"num_symbols": 4},
    "copy": {"num_symbols": 4},
    "delayed_recall": {"num_symbols": 4, "lag": 2},
    "assoc_recall": {"num_keys": 4, "num_values": 4, "num_pairs": 2, "num_queries": 1},
    "stack": {"num_symbols": 4},
    "parity": {},
    "modular_icl": {"modulus": 3},
    "text": {"max_bytes": 100_000},  # the first 100 kB of the embedded corpus
    "pixels": {"levels": 4},
}


def debug(task: str = "retrieval") -> RunConfig:
    """Tiny sizes and 40 steps: trains in a few seconds on one CPU core."""
    params = DEBUG_TASK_PARAMS.get(task, {})
    made = make_task(task, **params)
    seq_len = max(12, made.min_seq_len())
    if made.max_seq_len() is not None:  # a data task bounded by its data (8x8 digits: 64)
        seq_len = min(seq_len, made.max_seq_len())
    return RunConfig(
        task=TaskConfig(name=task, seq_len=seq_len, params=dict(params)),
        memory=MemoryConfig(tokens=2, width=16),
        teacher=TeacherConfig(width=32, depth=1, heads=2, decoder_depth=1, future_len=4, decoder_positions=4),
        rnn=RNNConfig(hidden=64, depth=1, heads=2, embed=16, readout_hidden=32),
        smt=SMTConfig(teacher_warmup=0.25, dyn_loss_updates_teacher=False, freeze_teacher_after_warmup=True,
                      dynamics_weight=1.0),
        bptt=BPTTConfig(),
        optim=OptimConfig(lr=3e-3, batch_size=16),
        train=TrainConfig(steps=40, log_every=10, eval_batches=2),
    )


def small(task: str = "retrieval") -> RunConfig:
    """The 2-CPU-core setting of the benchmarks: memory Z = 128, a 2-layer width-64 teacher, an MLP cell."""
    return RunConfig(
        task=TaskConfig(name=task, seq_len=64),
        memory=MemoryConfig(tokens=1, width=128),
        teacher=TeacherConfig(width=64, depth=2, heads=4, decoder_depth=2, future_len=4, decoder_positions=8),
        rnn=RNNConfig(cell="mlp", hidden=256, depth=2, heads=4, embed=64, readout_hidden=256),
        smt=SMTConfig(),
        optim=OptimConfig(lr=1e-3, batch_size=32),
        # Every method (BPTT too) sees the same length curriculum: 32, 64, ... up to T over the first 30 %.
        train=TrainConfig(steps=3000, curriculum_start=32),
    )


def staged(task: str = "retrieval") -> RunConfig:
    """`small` with the staged SMT schedule: the teacher learns alone for the first 60 %, then is frozen while the
    RNN regresses onto its stop-gradient memories (the recipe of the small trials in FINDINGS)."""
    cfg = small(task)
    cfg.smt = SMTConfig(dynamics_weight=1.0, teacher_warmup=0.6, dyn_loss_updates_teacher=False,
                        freeze_teacher_after_warmup=True)
    return cfg


PRESETS: dict[str, Callable[[str], RunConfig]] = {"debug": debug, "small": small, "staged": staged}


def make_preset(name: str, task: str) -> RunConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose from: {', '.join(PRESETS)}")
    return PRESETS[name](task)
