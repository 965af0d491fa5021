"""Run configuration: one small dataclass per component, composed into `RunConfig`, validated in one place.

Shared sizes (memory tokens K, memory width D, hence Z = K·D) live in `MemoryConfig` and nowhere else; the
vocabulary V comes from the task.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtrnn.errors import ConfigError

METHODS = ("smt", "bptt", "dmt", "smt+dmt", "labels", "labels+dmt")  # labels: the RNN fit to stored teacher memories
LABEL_METHODS = ("labels", "labels+dmt")  # labels+dmt: then DMT, relabelling visited states from the same store
TEACHER_METHODS = ("smt", "dmt", "smt+dmt")  # methods that train or use a teacher
SMT_CELLS = ("transformer", "mlp", "gru", "lstm", "elman")  # RMS-normalized memories: every method can train them
BPTT_ONLY_CELLS = ("gru-fused", "lstm-fused", "mingru")  # the plain baselines of smtrnn.baselines
CELLS = SMT_CELLS + BPTT_ONLY_CELLS
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TaskConfig:
    name: str = "retrieval"
    seq_len: int = 64  # T
    params: dict[str, Any] = field(default_factory=dict)  # task-specific, e.g. {"lag": 16}


@dataclass
class MemoryConfig:
    tokens: int = 1  # K
    width: int = 128  # D

    @property
    def size(self) -> int:  # Z
        return self.tokens * self.width


@dataclass
class TeacherConfig:
    width: int = 128
    depth: int = 2
    heads: int = 4
    decoder_depth: int = 2
    future_len: int = 16  # Tf: targets y_t..y_{t+Tf-1} predicted from m_t
    decoder_positions: int = 16  # positions per sequence the decoder is trained on each step
    token_shift: bool = True  # the encoder adds a projection of the previous token's embedding at each position
    # Horizon without shortcuts (p in [0, 1)): in training, each teacher-forced future input of the decoder is
    # replaced by a learned blank with probability p, so a long horizon Tf cannot be predicted from the future
    # inputs themselves and the memory has to carry the information.
    future_input_dropout: float = 0.0


@dataclass
class RNNConfig:
    cell: str = "mlp"
    hidden: int = 256  # MLP hidden width of the cell (transformer cell: its feed-forward is 4·D)
    depth: int = 2  # hidden layers (mlp) or blocks (transformer); the other cells are one layer
    heads: int = 4  # transformer cell only
    embed: int = 64  # input-token embedding width E
    readout_hidden: int = 256


@dataclass
class SMTConfig:
    """Weights and gradient routing of the SMT objective.

    The defaults are the paper's joint training (weights 1.0 / 0.1 / 0.001, teacher and RNN from step 0, the
    dynamics loss reaching the encoder): the core benchmark shows it ahead of the staged schedule for the RNN alone.
    The staged schedule (the `staged` preset) is teacher_warmup=0.6, dyn_loss_updates_teacher=false,
    freeze_teacher_after_warmup=true, dynamics_weight=1.0.
    """

    decoder_weight: float = 1.0
    dynamics_weight: float = 0.1
    uniformity_weight: float = 0.001
    readout_weight: float = 1.0
    # > 0: readout CE also on the RNN's one-step predictions g(f(m_{t-1}, x_t)), so the update learns to keep what
    # the readout needs, not only to be close in MSE (the gradient still crosses one step only).
    onestep_readout_weight: float = 0.0
    # Fraction of training in which only the teacher learns (decoder + uniformity), before the RNN terms start.
    teacher_warmup: float = 0.0
    # Whether the dynamics MSE sends gradient into the encoder through m_{t-1} and m_t (the paper's joint
    # training) or only trains the RNN on stop-gradient teacher memories.
    dyn_loss_updates_teacher: bool = True
    # After the warm-up, stop training the teacher (no decoder or uniformity loss, encoder without a graph).
    freeze_teacher_after_warmup: bool = False
    uniformity_samples: int = 512
    # Noise channel (σ >= 0, memories have unit RMS per float): in training only, the decoder and the RNN's readout
    # read m_t + σ·ε, ε ~ N(0, 1). What the future needs must then sit in the memory with margins wider than σ, so an
    # RNN whose rollout stays within σ of the teacher still reads the right answer. The dynamics targets stay clean.
    memory_noise: float = 0.0
    # Memory dropout (p in [0, 1)): in training only, the decoder and readout read memories with a fraction p of
    # the floats zeroed (and the rest scaled by 1/(1-p)): what the future needs is spread over many directions.
    memory_dropout: float = 0.0
    # Contraction (σ >= 0): the dynamics regression starts from perturbed memories, f(norm(m_{t-1} + σ·ε), x_t) -> m_t,
    # so the update learns to pull nearby states back onto the teacher's trajectory. σ decays linearly to
    # σ·dynamics_input_noise_final over the SMT share when dynamics_input_noise_final < 1.
    dynamics_input_noise: float = 0.0
    dynamics_input_noise_final: float = 1.0
    # "all": every transition of every sequence in one pass (smtrnn); "one": the reference release's recipe, one
    # transition per sequence per step from two prefix encodings (`smt_one_transition_loss`, for comparison).
    transitions: str = "all"


@dataclass
class DMTConfig:
    """DAgger Memory Training (see `smtrnn.dmt`)."""

    fraction: float = 0.25  # smt+dmt: the last fraction of training is DMT
    restart_fraction: float = 0.5  # sequences that follow the teacher up to a random offset, then the RNN
    grad_through_rollout_steps: int = 0  # k > 0: each target is reached by k+1 steps with gradient through all
    time_parallel: bool = True  # false: the paper's sequential DMT (graph through the rollout)
    label_every: int = 16  # sequential DMT only: MSE to the teacher every this many steps
    dynamics_weight: float = 1.0
    readout_weight: float = 1.0
    onestep_readout_weight: float = 0.0  # > 0: readout CE on f(visited state, x_t) too, with gradient into f
    # DMT with the teacher still learning: each DMT step also takes the SMT objective on the same batch, so the
    # teacher's memories keep moving toward states the RNN can reach while DMT relabels the ones it visits.
    teacher_learns: bool = False


@dataclass
class BPTTConfig:
    truncation: int = 0  # 0: full BPTT; k > 0: the state is detached every k steps (truncated BPTT)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    warmup: float = 0.02  # fraction of training with linear learning-rate warm-up
    schedule: str = "constant"
    grad_clip: float = 1.0
    batch_size: int = 32


@dataclass
class TrainConfig:
    method: str = "smt"
    steps: int = 1000
    max_seconds: float = 0.0  # > 0: stop at this wall-clock budget too; schedules then follow elapsed time
    seed: int = 0
    # Length curriculum: > 0 trains on sequences of this length first, doubling up to task.seq_len in equal stages
    # over the first `curriculum_fraction` of training (0, or a start >= task.seq_len: always task.seq_len).
    curriculum_start: int = 0
    curriculum_fraction: float = 0.3
    init: str = ""  # method dmt: the SMT run directory whose teacher and RNN DMT starts from
    labels: str = ""  # method labels: the label store (`smtrnn label`) the RNN is fit to
    log_every: int = 25
    eval_every: int = 0  # 0: evaluate only at the end
    eval_every_seconds: float = 0.0  # > 0: also evaluate each time this much training time has passed
    save_every: int = 1000  # checkpoint every this many steps (0: only at the end)
    keep_checkpoints: int = 3  # the newest this many checkpoints stay in <run>/checkpoints/
    # A step whose loss or gradient is not finite stops training; up to this many such steps are skipped instead
    # (no update, logged) before it does.
    skip_nonfinite_steps: int = 0
    eval_batches: int = 4
    device: str = "auto"
    # "bf16": the losses run under CUDA autocast (fp32 master weights); CUDA only, a CPU run refuses it.
    precision: str = "fp32"
    compile: bool = False  # torch.compile the teacher's encoder/decoder and the RNN's cell/readout


@dataclass
class RunConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    rnn: RNNConfig = field(default_factory=RNNConfig)
    smt: SMTConfig = field(default_factory=SMTConfig)
    dmt: DMTConfig = field(default_factory=DMTConfig)
    bptt: BPTTConfig = field(default_factory=BPTTConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a run config must be a mapping, got {type(data).__name__}")
        cfg = cls()
        apply_overrides(cfg, flatten(data))
        return cfg


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"rnn": {"cell": "gru"}} -> {"rnn.cell": "gru"}; task params stay one dict-valued key."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "task.params":
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _coerce(name: str, current: Any, value: Any) -> Any:
    """Convert a value (possibly a CLI string) to the type of the field's current value."""
    if isinstance(current, dict):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise ConfigError(f"{name} must be a JSON object, got {value!r}") from exc
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be {type(current).__name__}, got {value!r}")
    for kind in (int, float):
        if isinstance(current, kind):
            try:
                converted = kind(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ConfigError(f"{name} must be {kind.__name__}, got {value!r}") from exc
            if kind is int and isinstance(value, float) and value != converted:
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            return converted
    return str(value)


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Set dotted fields ("rnn.cell" -> "gru"); an unknown section or field is a ConfigError naming it."""
    for name, value in overrides.items():
        section_name, _, field_name = name.partition(".")
        section = getattr(cfg, section_name, None)
        if not dataclasses.is_dataclass(section) or not field_name:
            raise ConfigError(f"unknown config section in '{name}'")
        if field_name not in {f.name for f in dataclasses.fields(section)}:
            raise ConfigError(f"unknown config field '{name}'")
        setattr(section, field_name, _coerce(name, getattr(section, field_name), value))
    return cfg


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a nested JSON or YAML config file (a partial RunConfig)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; pass a JSON or YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # any parser error becomes one line naming the file
        raise ConfigError(f"config file {path} is not valid: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    return data


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: RunConfig) -> None:
    """Every consistency rule of a run in one place; the first violation is a ConfigError naming the field."""
    from smtrnn.tasks import make_task

    for name, value in flatten(cfg.to_dict()).items():
        _check(not isinstance(value, float) or math.isfinite(value), f"{name} must be finite, got {value}")
    _check(cfg.train.method in METHODS, f"unknown method '{cfg.train.method}'; choose from: {', '.join(METHODS)}")
    _check(cfg.rnn.cell in CELLS, f"unknown cell '{cfg.rnn.cell}'; choose from: {', '.join(CELLS)}")
    _check(cfg.rnn.cell not in BPTT_ONLY_CELLS or cfg.train.method == "bptt",
           f"cell '{cfg.rnn.cell}' is a BPTT baseline; method '{cfg.train.method}' needs a cell whose memories are "
           f"RMS-normalized like the teacher's: one of {', '.join(SMT_CELLS)}")
    _check(cfg.optim.schedule in SCHEDULES,
           f"unknown optim.schedule '{cfg.optim.schedule}'; choose from: {', '.join(SCHEDULES)}")
    positive = {
        "train.steps": cfg.train.steps, "task.seq_len": cfg.task.seq_len, "memory.tokens": cfg.memory.tokens,
        "memory.width": cfg.memory.width, "teacher.width": cfg.teacher.width, "teacher.depth": cfg.teacher.depth,
        "teacher.heads": cfg.teacher.heads, "teacher.decoder_depth": cfg.teacher.decoder_depth,
        "teacher.future_len": cfg.teacher.future_len, "teacher.decoder_positions": cfg.teacher.decoder_positions,
        "rnn.hidden": cfg.rnn.hidden, "rnn.depth": cfg.rnn.depth, "rnn.heads": cfg.rnn.heads,
        "rnn.embed": cfg.rnn.embed, "rnn.readout_hidden": cfg.rnn.readout_hidden,
        "optim.batch_size": cfg.optim.batch_size, "optim.lr": cfg.optim.lr, "train.log_every": cfg.train.log_every,
        "train.eval_batches": cfg.train.eval_batches, "smt.uniformity_samples": cfg.smt.uniformity_samples,
        "dmt.label_every": cfg.dmt.label_every,
    }
    for name, value in positive.items():
        _check(value > 0, f"{name} must be > 0, got {value}")
    non_negative = {
        "smt.decoder_weight": cfg.smt.decoder_weight, "smt.dynamics_weight": cfg.smt.dynamics_weight,
        "smt.uniformity_weight": cfg.smt.uniformity_weight, "smt.readout_weight": cfg.smt.readout_weight,
        "smt.onestep_readout_weight": cfg.smt.onestep_readout_weight,
        "dmt.onestep_readout_weight": cfg.dmt.onestep_readout_weight,
        "bptt.truncation": cfg.bptt.truncation, "optim.weight_decay": cfg.optim.weight_decay,
        "optim.grad_clip": cfg.optim.grad_clip, "train.max_seconds": cfg.train.max_seconds,
        "train.eval_every": cfg.train.eval_every, "train.save_every": cfg.train.save_every,
        "dmt.grad_through_rollout_steps": cfg.dmt.grad_through_rollout_steps,
        "dmt.dynamics_weight": cfg.dmt.dynamics_weight, "dmt.readout_weight": cfg.dmt.readout_weight,
    }
    for name, value in non_negative.items():
        _check(value >= 0, f"{name} must be >= 0, got {value}")
    _check(cfg.smt.transitions in ("all", "one"), f"smt.transitions must be 'all' or 'one', got "
                                                   f"{cfg.smt.transitions!r}")
    _check(cfg.smt.transitions == "all" or not (cfg.smt.teacher_warmup or cfg.smt.freeze_teacher_after_warmup),
           "smt.transitions='one' is the reference recipe, trained jointly: it takes no smt.teacher_warmup or "
           "smt.freeze_teacher_after_warmup")
    for name in ("memory_noise", "dynamics_input_noise"):
        value = getattr(cfg.smt, name)
        _check(value >= 0, f"smt.{name} must be >= 0 (a noise std in units of the memories' RMS), got {value}")
    for name, value in (("smt.memory_dropout", cfg.smt.memory_dropout),
                        ("teacher.future_input_dropout", cfg.teacher.future_input_dropout)):
        _check(0 <= value < 1, f"{name} must be in [0, 1), got {value}")
    _check(0 <= cfg.smt.dynamics_input_noise_final <= 1,
           f"smt.dynamics_input_noise_final must be in [0, 1] (a fraction of smt.dynamics_input_noise), got "
           f"{cfg.smt.dynamics_input_noise_final}")
    levers = [name for name in ("memory_noise", "memory_dropout", "dynamics_input_noise")
              if getattr(cfg.smt, name)]
    _check(cfg.smt.transitions == "all" or not levers,
           f"smt.transitions='one' is the reference recipe, kept for comparison: it takes no smt.{levers[0]}"
           if levers else "")
    _check(0 <= cfg.smt.teacher_warmup < 1, f"smt.teacher_warmup must be in [0, 1), got {cfg.smt.teacher_warmup}")
    _check(not (cfg.smt.freeze_teacher_after_warmup and cfg.smt.dyn_loss_updates_teacher),
           "smt.freeze_teacher_after_warmup needs smt.dyn_loss_updates_teacher=false (a frozen teacher takes no "
           "gradient)")
    _check(0 < cfg.train.curriculum_fraction < 1,
           f"train.curriculum_fraction must be in (0, 1), got {cfg.train.curriculum_fraction}")
    _check(cfg.train.curriculum_start >= 0, f"train.curriculum_start must be >= 0, got {cfg.train.curriculum_start}")
    _check(cfg.train.eval_every_seconds >= 0,
           f"train.eval_every_seconds must be >= 0, got {cfg.train.eval_every_seconds}")
    _check(0 <= cfg.train.seed < 2**63, f"train.seed must be in [0, 2^63), got {cfg.train.seed}")
    _check(cfg.train.keep_checkpoints >= 1, f"train.keep_checkpoints must be >= 1, got {cfg.train.keep_checkpoints}")
    _check(cfg.train.skip_nonfinite_steps >= 0,
           f"train.skip_nonfinite_steps must be >= 0, got {cfg.train.skip_nonfinite_steps}")
    _check(cfg.train.precision in PRECISIONS,
           f"unknown train.precision '{cfg.train.precision}'; choose from: {', '.join(PRECISIONS)}")
    _check(0 < cfg.dmt.fraction < 1, f"dmt.fraction must be in (0, 1), got {cfg.dmt.fraction}")
    _check(not cfg.dmt.teacher_learns or cfg.train.method in ("smt+dmt", "dmt"),
           f"dmt.teacher_learns trains the teacher during DMT: methods smt+dmt or dmt, not {cfg.train.method}")
    _check(not cfg.dmt.teacher_learns or cfg.dmt.time_parallel,
           "dmt.teacher_learns runs with the time-parallel DMT step (dmt.time_parallel=true)")
    _check(0 <= cfg.dmt.restart_fraction <= 1,
           f"dmt.restart_fraction must be in [0, 1], got {cfg.dmt.restart_fraction}")
    _check(cfg.train.method != "dmt" or bool(cfg.train.init),
           "method dmt starts from a trained SMT run: pass --init DIR")
    _check(not cfg.train.init or cfg.train.method == "dmt", "train.init (--init) is only for method dmt")
    _check(cfg.train.method not in LABEL_METHODS or bool(cfg.train.labels),
           "method labels fits the RNN to stored teacher memories: pass --labels DIR (written by smtrnn label)")
    _check(not cfg.train.labels or cfg.train.method in LABEL_METHODS,
           "train.labels (--labels) is only for methods labels and labels+dmt")
    _check(cfg.train.method not in LABEL_METHODS or not cfg.train.curriculum_start,
           "train.curriculum_start draws shorter sequences; method labels trains on the stored length only")
    _check(0 <= cfg.optim.warmup < 1, f"optim.warmup must be in [0, 1), got {cfg.optim.warmup}")
    for name in ("beta1", "beta2"):
        value = getattr(cfg.optim, name)
        _check(0 <= value < 1, f"optim.{name} must be in [0, 1), got {value}")
    for name, width, heads in (("teacher", cfg.teacher.width, cfg.teacher.heads),
                               ("rnn", cfg.memory.width, cfg.rnn.heads)):
        if name == "rnn" and cfg.rnn.cell != "transformer":
            continue
        _check(width % heads == 0 and (width // heads) % 2 == 0,
               f"{name}.heads={heads} must divide the width {width} into an even head size")
    if cfg.rnn.cell in ("lstm", "lstm-fused"):
        _check(cfg.memory.size % 2 == 0, f"the {cfg.rnn.cell} cell splits the memory into h and c: memory size "
                                         f"{cfg.memory.size} (tokens·width) must be even")
    task = make_task(cfg.task.name, **cfg.task.params)
    minimum = task.min_seq_len()
    _check(cfg.task.seq_len >= minimum,
           f"task '{cfg.task.name}' needs task.seq_len >= {minimum}, got {cfg.task.seq_len}")
    task.check_seq_len(cfg.task.seq_len)  # data tasks: both splits must hold one whole sequence
    task.held_out().check_seq_len(cfg.task.seq_len)
    if cfg.train.curriculum_start:
        _check(cfg.train.curriculum_start >= minimum,
               f"train.curriculum_start must be >= {minimum} (task '{cfg.task.name}''s minimum length), "
               f"got {cfg.train.curriculum_start}")
