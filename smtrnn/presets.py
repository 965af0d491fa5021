"""Presets: plain functions returning a full `RunConfig` for a task.

`debug` trains in seconds on CPU (tests, smoke runs); `small` is the 2-CPU-core base; `recipe` (the default of
`train`, `compare` and the demo) is `small` plus a rule over what the task declares: its memory size, the noise and
contraction levers, a shift-register lever, a dense teacher for tasks with targets at most positions, and a
decoder of the answers ahead for tasks whose answers lie far from their cues; `staged` is `small` with the staged
SMT schedule instead of the paper's joint one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from smtrnn.config import (
    BPTTConfig,
    MemoryConfig,
    OptimConfig,
    RNNConfig,
    RunConfig,
    SMTConfig,
    TaskConfig,
    TeacherConfig,
    TrainConfig,
)
from smtrnn.data.tasks import Task, make_task
from smtrnn.errors import ConfigError

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
    "passkey": {"digits": 2},
}


def debug(task: str = "retrieval", params: dict | None = None) -> RunConfig:
    """Tiny sizes and 40 steps: trains in a few seconds on one CPU core. The task's small debug parameters, then
    `params` (a data task's path); its length fits the task."""
    params = DEBUG_TASK_PARAMS.get(task, {}) | dict(params or {})
    made = make_task(task, **params)
    seq_len = max(12, made.min_seq_len())
    if made.max_seq_len() is not None:  # a data task bounded by its data (8x8 digits: 64)
        seq_len = min(seq_len, made.max_seq_len())
    return RunConfig(
        task=TaskConfig(name=task, seq_len=seq_len, params=dict(params)),
        memory=MemoryConfig(tokens=2, width=16),
        teacher=TeacherConfig(width=32, depth=1, heads=2, decoder_depth=1, future_len=4, decoder_positions=4),
        rnn=RNNConfig(hidden=64, depth=1, heads=2, embed=16, readout_hidden=32),
        smt=SMTConfig(schedule="staged", teacher_alone=0.25, dynamics_weight=1.0),
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
    RNN regresses onto its stop-gradient memories (as small trials with a bare-bones teacher ran it)."""
    cfg = small(task)
    cfg.smt = SMTConfig(dynamics_weight=1.0, schedule="staged", teacher_alone=0.6)
    return cfg


# The recipe's settings, each a rule over what the task declares (`Task.memory_bits`, `Task.target_lag`, which
# positions carry targets); the measurements behind each are in docs/LOG.md.
MEMORY_NOISE = 0.2  # std of the noise channel on the memories the decoder and readout read, per float
SMALLEST_MEMORY = 16  # Z for a task that declares a few bits: spare directions would let the rollout drift
CONTRACTION = 0.3  # std of the perturbation of SMT's input memories, decaying to 0 over the SMT share
DENSE_TARGETS = 0.5  # a task with targets at this fraction of a sample's positions or more gets the dense teacher
DENSE_TEACHER_WIDTH = 128  # a dense teacher learns real data faster wider (text, T = 256: 2.15 -> 2.01 bits)
FAST_LR = 3e-3  # AdamW's peak rate for dense and shift-register tasks, every method (BPTT's best rate there too)
SHIFT_REGISTER_DMT = {"fraction": 0.5, "grad_through_rollout_steps": 1}  # DMT's share and 2-step targets
FAR_ANSWERS = 0.25  # a task whose rows pass this share of their length without a target before one: answers ahead
LAST_INPUT_WEIGHT = 0.1  # λ_in of the far-answer rule: a linear head reads x_t from m_t (1.0 cost the one-digit key)
LAST_INPUTS = 8  # n of the far-answer rule: the head reads x_t..x_{t-7}, so a cue of several tokens is named when
# its value comes (the passkey after long prose: a memory naming x_t alone latches the prose's first digit)
FAR_ANSWER_DMT_STEPS = 8  # k of the far-answer rule: DMT's targets k + 1 steps ahead, so a held answer cannot drift


def memory_size(bits: float | None, default: int) -> int:
    """Z for a task that must hold `bits` at once: the next power of two, at least SMALLEST_MEMORY; `default`
    (small's 128) where the task cannot say."""
    if bits is None:
        return default
    return max(SMALLEST_MEMORY, 1 << math.ceil(math.log2(max(bits, 1.0))))


def sample_targets(task: Task, seq_len: int) -> torch.Tensor:
    """The targets y (8, T) of a fixed sample of the task at (about) `seq_len`, from which the rules read its layout."""
    longest = task.max_seq_len()
    length = max(task.min_seq_len(), seq_len if longest is None else min(seq_len, longest))
    return task.sample(8, length, torch.Generator().manual_seed(0))[1]


def target_fraction(task: Task, seq_len: int) -> float:
    """The fraction of positions that carry a target, in a fixed sample of the task at (about) `seq_len`."""
    return float((sample_targets(task, seq_len) >= 0).float().mean())


def far_answers(task: Task, seq_len: int) -> int:
    """The most targets in one row of a fixed sample at (about) `seq_len` where FAR_ANSWERS of the row or more
    passes without a target before one (answers far from their cues: a needle, a key, a copy), else 0."""
    y = sample_targets(task, seq_len)
    most = 0
    for row in y >= 0:
        at = row.nonzero().flatten()
        gaps = torch.diff(at, prepend=at.new_tensor([-1]))
        if len(at) and int(gaps.max()) >= FAR_ANSWERS * len(row):
            most = max(most, len(at))
    return most


def with_long_range_rule(cfg: RunConfig, task: Task) -> RunConfig:
    """The long-range part of the recipe (in place): K = 1 memory sized by `memory_size(task.memory_bits())`, a noise
    channel of std MEMORY_NOISE on the memories the decoder and the RNN's readout read in training, and, for a task
    whose targets are its inputs `target_lag` steps back, the shift-register lever: a linear decoder reading the
    Tf = lag + 1 targets y_t..y_{t+lag} = x_{t-lag}..x_t from m_t, so m_t holds the window linearly, the
    mlp-linear cell whose linear skip shifts such a memory exactly, DMT on half the budget with 2-step targets, and
    the rate FAST_LR."""
    bits = task.memory_bits()
    if bits is not None:
        cfg.memory.tokens, cfg.memory.width = 1, memory_size(bits, cfg.memory.size)
    cfg.smt.memory_noise = MEMORY_NOISE
    lag = task.target_lag()
    if lag is not None:
        cfg.teacher.decoder, cfg.rnn.cell, cfg.teacher.future_len = "linear", "mlp-linear", lag + 1
        cfg.dmt = dataclasses.replace(cfg.dmt, **SHIFT_REGISTER_DMT)
        cfg.optim.lr = FAST_LR
    return cfg


def with_answers_ahead(cfg: RunConfig, answers: int) -> RunConfig:
    """The far-answer part of the recipe (in place), for tasks whose targets lie far from some positions
    (`far_answers`): the next-targets decoder (the next `answers` targets from every memory, however far, so the
    teacher carries an answer from its cue to where it is asked, in one form at every position) and the last-input
    head of weight LAST_INPUT_WEIGHT (each memory names the LAST_INPUTS tokens just read, so the step after a cue can
    see the cue, a phrase as well as a token: the write the RNN must make), and DMT with FAR_ANSWER_DMT_STEPS-step
    targets (each teacher memory reached by k + 1 updates from the state the RNN visited k steps before, the gradient
    through all of them: an answer held over many steps is trained against drift that compounds, not only one
    step's error)."""
    cfg.teacher.decoder, cfg.teacher.future_len, cfg.teacher.decoder_positions = "next-targets", answers, 0
    cfg.teacher.last_input_weight, cfg.teacher.last_inputs = LAST_INPUT_WEIGHT, LAST_INPUTS
    cfg.dmt = dataclasses.replace(cfg.dmt, grad_through_rollout_steps=FAR_ANSWER_DMT_STEPS)
    return cfg


def with_dense_teacher(cfg: RunConfig) -> RunConfig:
    """The dense part of the recipe (in place), for tasks with a target at most positions (text, pixels): the
    teacher's decoder is trained on every position once, by a linear head on m_t for the next target (Tf = 1),
    instead of a Transformer decoder on 8 sampled windows; the teacher is DENSE_TEACHER_WIDTH wide and every method
    trains at FAST_LR."""
    cfg.teacher.decoder_positions, cfg.teacher.decoder, cfg.teacher.future_len = 0, "linear", 1
    cfg.teacher.width = DENSE_TEACHER_WIDTH
    cfg.optim.lr = FAST_LR
    return cfg


def with_contraction(cfg: RunConfig) -> RunConfig:
    """The contraction lever (in place): every SMT transition starts from a perturbed teacher memory,
    f(norm(m_{t-1} + σ·ε), x_t) -> m_t, σ = CONTRACTION decaying linearly to 0 over the SMT share, so the update
    learns to pull states near the teacher's trajectory back onto it."""
    cfg.smt.dynamics_input_noise, cfg.smt.dynamics_input_noise_final = CONTRACTION, 0.0
    return cfg


def long_range_base(task: str, params: dict | None = None, seq_len: int | None = None) -> tuple[RunConfig, Task]:
    """`small` with the recipe's parts every task gets (`with_long_range_rule`, `with_contraction`) for the task
    with these parameters at `seq_len` (small's where not given) -> (config, the task built once)."""
    cfg = small(task)
    cfg.task.params = dict(params or {})
    cfg.task.seq_len = seq_len or cfg.task.seq_len
    made = make_task(task, **cfg.task.params)  # built once: a data task loads its data here
    return with_contraction(with_long_range_rule(cfg, made)), made


def recipe(task: str = "retrieval", params: dict | None = None, seq_len: int | None = None) -> RunConfig:
    """The recipe for any task, built from what the task declares, never from its name: `long_range_base` (memory
    size from `memory_bits`, the noise channel, the shift-register lever from `target_lag`, the contraction), plus the
    dense teacher (`with_dense_teacher`) where a sample has targets at DENSE_TARGETS of its positions or more and the
    targets are not a shift register. A task that declares nothing (a user's text, images or task) gets Z = 128
    and, with dense targets, the dense teacher; answers far from some positions (FAR_ANSWERS of a row without a
    target before one) get the next-targets decoder, the last-input head and k-step DMT (`with_answers_ahead`).
    The rules read a sample at `seq_len` (the run's length; small's where not given)."""
    cfg, made = long_range_base(task, params, seq_len)
    if made.target_lag() is None:
        if target_fraction(made, cfg.task.seq_len) >= DENSE_TARGETS:
            with_dense_teacher(cfg)
        elif answers := far_answers(made, cfg.task.seq_len):
            with_answers_ahead(cfg, answers)
    return cfg


RECIPE = "recipe"  # the preset `smtrnn demo` and `smtrnn compare` start from
PRESETS: dict[str, Callable[[str], RunConfig]] = {
    "debug": debug,
    "small": small,
    "recipe": recipe,
    "staged": staged,
}


RULE_PRESETS = ("debug", "recipe")  # presets that read the task's parameters


def make_preset(name: str, task: str, params: dict | None = None, seq_len: int | None = None) -> RunConfig:
    """The preset `name` for `task`; the presets that follow a rule over the task's declared properties build the
    task with `params` (its final parameters), the others keep theirs; the recipe reads its layout at `seq_len`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose from: {', '.join(PRESETS)}")
    if name == RECIPE:
        cfg = recipe(task, params, seq_len)
    else:
        cfg = PRESETS[name](task, params) if name in RULE_PRESETS else PRESETS[name](task)
    if cfg.train.curriculum_start:  # a task posed only in longer sequences (passkey) starts its curriculum there
        shortest = make_task(task, **(params or {})).min_seq_len()  # constructing a task reads no data
        cfg.train.curriculum_start = max(cfg.train.curriculum_start, shortest)
    return cfg
