"""Run configuration: one small dataclass per component, composed into `RunConfig`.

Each field carries its documentation as a string right under it (`field_docs` reads them; `smtrnn train --help`
lists them). Choices are `Literal` types. Each section checks its own fields (`check`, also run on construction);
the rules that tie sections together live in `validate`, which does no I/O (the task and its data are checked where
the task is built, `smtrnn.data.tasks.build_task`). Shared sizes (memory tokens K, memory width D, hence Z = K·D)
live in `MemoryConfig` and nowhere else; the vocabulary V comes from the task.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from smtrnn.errors import ConfigError

Method = Literal["smt", "bptt", "dmt", "smt+dmt", "smt+dmt+bptt", "labels", "labels+dmt"]
CellName = Literal[
    "transformer", "mlp", "mlp-linear", "mlp-gated", "gru", "lstm", "elman", "gru-fused", "lstm-fused", "mingru"
]
SMTSchedule = Literal["joint", "joint-detached", "staged"]
DecoderKind = Literal["transformer", "linear", "next-targets"]
EncoderKind = Literal["transformer", "linear"]
Transitions = Literal["all", "one"]
LRSchedule = Literal["constant", "cosine"]
Precision = Literal["fp32", "bf16"]

METHODS = get_args(Method)  # labels: the RNN fit to stored teacher memories
LABEL_METHODS = ("labels", "labels+dmt")  # labels+dmt: then DMT, relabelling visited states from the same store
TEACHER_METHODS = ("smt", "dmt", "smt+dmt", "smt+dmt+bptt")  # methods that train or use a teacher
CELLS = get_args(CellName)
BPTT_ONLY_CELLS = ("gru-fused", "lstm-fused", "mingru")  # the plain baselines of smtrnn.baselines
SMT_CELLS = tuple(c for c in CELLS if c not in BPTT_ONLY_CELLS)  # RMS-normalized memories: every method
USER_CELL_PATTERN = re.compile(r"[^:]+:[A-Za-z_]\w*")  # a user's cell class: MODULE:CLASS or FILE.py:CLASS
DICT_FIELDS = ("task.params", "rnn.cell_args")  # fields whose value is one mapping (not a nested section)
# Fields removed with the levers they set, and the value at which each had no effect (docs/LOG.md names the commit):
# a stored config holding that value still loads.
RETIRED = {"smt.unroll_steps": 0, "smt.unroll_weight": 1.0, "smt.unroll_starts": 32, "teacher.future_weight": 1.0}
# ... nested at most this deep: copying one (dataclasses.asdict) and writing it (json.dumps) recurse once per level
MAX_DEPTH = 32
SMT_SCHEDULES = get_args(SMTSchedule)
LR_SCHEDULES = get_args(LRSchedule)
PRECISIONS = get_args(Precision)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def shown(value: Any, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters with an ellipsis: an error names the user's value, but a 10 KB value
    must not become a 10 KB error line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def size_text(size: int) -> str:
    """A size in bytes for a message: '512.0 MB', '12.3 GB'; past a trillion GB (a 400-digit length asks for more
    than a float holds) as a power of ten."""
    if size < 10**9:
        return f"{size / 1e6:,.1f} MB"
    if size < 10**21:
        return f"{size / 1e9:,.1f} GB"
    return f"10^{int(size.bit_length() * math.log10(2)) - 9} GB"


def _choice(section: str, name: str, value: Any, choices: tuple) -> None:
    _check(value in choices, f"unknown {section}.{name} {shown(value)}; choose from: {', '.join(choices)}")


class _Section:
    """A config section: `check()` holds its per-field rules and runs on construction too."""

    SECTION = ""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            _check(
                not isinstance(value, float) or math.isfinite(value),
                f"{self.SECTION}.{item.name} must be finite, got {value}",
            )

    def _at_least(self, bound: float, *names: str, strict: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            ok = value > bound if strict else value >= bound
            _check(ok, f"{self.SECTION}.{name} must be {'>' if strict else '>='} {bound:g}, got {shown(value)}")

    def _fraction(self, name: str, low_open: bool = False, high_open: bool = True) -> None:
        value = getattr(self, name)
        ok = (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        _check(ok, f"{self.SECTION}.{name} must be in {interval}, got {value}")


@dataclass
class TaskConfig(_Section):
    SECTION = "task"
    name: str = "retrieval"
    """The task (see `smtrnn.data.tasks`): retrieval, copy, delayed_recall, assoc_recall, stack, parity, modular_icl,
    text, pixels."""
    seq_len: int = 64
    """T, the training sequence length."""
    params: dict[str, Any] = field(default_factory=dict)
    """Task-specific parameters, e.g. {"lag": 16}; text and pixels take their data path here."""

    def check(self) -> None:
        super().check()
        self._at_least(0, "seq_len", strict=True)


@dataclass
class MemoryConfig(_Section):
    SECTION = "memory"
    tokens: int = 1
    """K, memory tokens (each RMS-normalized on its own)."""
    width: int = 128
    """D, floats per memory token; the memory holds Z = K·D floats."""

    @property
    def size(self) -> int:  # Z
        return self.tokens * self.width

    def check(self) -> None:
        super().check()
        self._at_least(0, "tokens", "width", strict=True)


@dataclass
class TeacherConfig(_Section):
    SECTION = "teacher"
    width: int = 128
    """The encoder's and decoder's model width."""
    depth: int = 2
    """Causal encoder layers."""
    heads: int = 4
    """Attention heads (must divide the width into an even head size)."""
    encoder: EncoderKind = "transformer"
    """transformer: causal softmax attention over the whole prefix, O(T²) per sequence. linear: each layer attends
    to the last `window` positions by softmax and to the whole prefix by linear attention (`smtrnn.linear_attention`),
    O(T) per sequence: a teacher for training at T = 4k-64k."""
    window: int = 64
    """The linear encoder's local attention span and chunk length."""
    decoder: DecoderKind = "transformer"
    """transformer: a causal decoder over [m_t; the teacher-forced future inputs] (the paper's). linear: each
    future target y_{t+j} read from m_t alone by its own linear map (no future inputs), so m_t must hold what the
    horizon needs in linearly readable form; for tasks whose targets within Tf depend on the past only.
    next-targets: the next Tf targets at or after t, however far, each by its own linear map from m_t
    alone, so m_t holds the coming answers in one form at every position (sparse answers far from their cue)."""
    decoder_depth: int = 2
    """Decoder layers (transformer decoder)."""
    future_len: int = 16
    """Tf: the targets y_t..y_{t+Tf-1} the decoder predicts from m_t."""
    decoder_positions: int = 16
    """Positions per sequence the decoder is trained on each step, drawn at random; 0 (or >= T): every position,
    once."""
    token_shift: bool = True
    """The encoder adds a projection of the previous token's embedding at each position."""
    future_input_dropout: float = 0.0
    """Horizon without shortcuts (p in [0, 1)): in training, each teacher-forced future input of the decoder is
    replaced by a learned blank with probability p, so a long horizon cannot be predicted from the future inputs
    themselves and the memory has to carry the information."""
    last_input_weight: float = 0.0
    """λ_in (>= 0): the teacher's memories m_t also predict their own last input x_t by a linear head (CE), so the
    state each transition starts from names the token just read: the cue an update needs one step later (a marker
    followed by the value to write), which the predictive objective alone leaves to the encoder's look back."""
    last_inputs: int = 1
    """n (>= 1): the last-input head reads the memory's last n inputs x_t, x_{t-1}, .., x_{t-n+1} (one linear map
    each, the CE their mean), so each memory names the phrase it has just read: the context an update needs to tell
    a cue of several tokens from the same token elsewhere (a passkey's digit after "The pass key is " from a digit of
    the prose). Read only where last_input_weight > 0 (with 0 there is no head)."""

    def check(self) -> None:
        super().check()
        self._at_least(0, "width", "depth", "heads", "decoder_depth", "future_len", "window", strict=True)
        self._at_least(0, "decoder_positions")
        self._fraction("future_input_dropout")
        self._at_least(0, "last_input_weight")
        self._at_least(1, "last_inputs")
        _choice("teacher", "decoder", self.decoder, get_args(DecoderKind))
        _choice("teacher", "encoder", self.encoder, get_args(EncoderKind))
        _check(
            self.width % self.heads == 0 and (self.width // self.heads) % 2 == 0,
            f"teacher.heads={self.heads} must divide the width {self.width} into an even head size",
        )


@dataclass
class RNNConfig(_Section):
    SECTION = "rnn"
    cell: str = "mlp"
    """The update f: a built-in cell (transformer, mlp, mlp-linear, gru, lstm, elman: RMS-normalized memories,
    every method; the BPTT-only baselines gru-fused, lstm-fused, mingru), or a user's class as MODULE:CLASS or
    FILE.py:CLASS (`smtrnn.user_cell`)."""
    cell_args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of a user's cell class (rnn.cell MODULE:CLASS), e.g. {"hidden": 64}."""
    hidden: int = 256
    """MLP hidden width of the cell (transformer cell: its feed-forward is 4·D)."""
    depth: int = 2
    """Hidden layers (mlp) or blocks (transformer); the other cells are one layer."""
    heads: int = 4
    """Attention heads of the transformer cell over the K memory tokens."""
    embed: int = 64
    """E, the input-token embedding width."""
    readout_hidden: int = 256
    """Hidden width of the readout g."""

    def check(self) -> None:
        super().check()
        _check(
            self.cell in CELLS or USER_CELL_PATTERN.fullmatch(self.cell) is not None,
            f"unknown rnn.cell {shown(self.cell)}; choose from: {', '.join(CELLS)}, or a user's cell as "
            "MODULE:CLASS or FILE.py:CLASS",
        )
        _check(
            not self.cell_args or self.cell not in CELLS,
            f"rnn.cell_args are the keyword arguments of a user's cell; the built-in {self.cell!r} takes none",
        )
        self._at_least(0, "hidden", "depth", "heads", "embed", "readout_hidden", strict=True)


@dataclass
class SMTConfig(_Section):
    """Weights, schedule and levers of the SMT objective.

    The defaults are the paper's joint training (weights 1.0 / 0.1 / 0.001, teacher and RNN from step 0, the
    dynamics loss reaching the encoder): the core benchmark shows it ahead of the staged schedule for the RNN alone.
    The `staged` preset is schedule='staged', teacher_alone=0.6, dynamics_weight=1.0.
    """

    SECTION = "smt"
    decoder_weight: float = 1.0
    """λ_dec, the decoder's cross-entropy (the predictive-state objective)."""
    dynamics_weight: float = 0.1
    """λ_dyn, the one-step regression MSE(f(m_{t-1}, x_t), m_t)."""
    uniformity_weight: float = 0.001
    """λ_unif, the uniformity term that keeps memories spread on the sphere."""
    readout_weight: float = 1.0
    """λ_read, the readout's cross-entropy on teacher memories."""
    onestep_readout_weight: float = 0.0
    """> 0: readout CE also on the RNN's one-step predictions g(f(m_{t-1}, x_t)), so the update learns to keep what
    the readout needs, not only to be close in MSE (the gradient still crosses one step only)."""
    schedule: SMTSchedule = "joint"
    """How teacher and RNN share training. joint: both from the start (after `teacher_alone`), the dynamics MSE
    also training the encoder through m_{t-1} and m_t (the paper); joint-detached: the same, with the RNN regressing
    onto stop-gradient memories; staged: the teacher alone for `teacher_alone`, then frozen (no decoder or
    uniformity loss, the encoder without a graph) while the RNN fits it."""
    teacher_alone: float = 0.0
    """Fraction of the SMT share in which only the teacher learns (decoder + uniformity), in [0, 1); staged needs
    > 0."""
    uniformity_samples: int = 512
    """Memory tokens sampled per step for the uniformity term."""
    memory_noise: float = 0.0
    """Noise channel (σ >= 0, memories have unit RMS per float): in training only, the decoder and the RNN's readout
    read m_t + σ·ε, ε ~ N(0, 1), so what the future needs sits in the memory with margins wider than σ and an RNN
    whose rollout stays within σ of the teacher still reads the right answer. The dynamics targets stay clean."""
    memory_dropout: float = 0.0
    """Memory dropout (p in [0, 1)): in training only, the decoder and readout read memories with a fraction p of
    the floats zeroed (the rest scaled by 1/(1-p)): what the future needs is spread over many directions."""
    dynamics_input_noise: float = 0.0
    """Contraction (σ >= 0): the dynamics regression starts from perturbed memories, f(norm(m_{t-1} + σ·ε), x_t) ->
    m_t, so the update learns to pull nearby states back onto the teacher's trajectory."""
    dynamics_input_noise_final: float = 1.0
    """The contraction σ at the end of the SMT share, as a fraction of `dynamics_input_noise` (linear decay)."""
    transitions: Transitions = "all"
    """all: every transition of every sequence in one pass (smtrnn); one: the reference release's objective, one
    transition per sequence per step from two prefix encodings (`reference.smt_one_transition_loss`, for comparison)."""

    @property
    def freezes_teacher(self) -> bool:
        return self.schedule == "staged"

    @property
    def dynamics_trains_teacher(self) -> bool:
        return self.schedule == "joint"

    def check(self) -> None:
        super().check()
        self._at_least(
            0,
            "decoder_weight",
            "dynamics_weight",
            "uniformity_weight",
            "readout_weight",
            "onestep_readout_weight",
        )
        self._at_least(0, "uniformity_samples", strict=True)
        _choice("smt", "schedule", self.schedule, SMT_SCHEDULES)
        _choice("smt", "transitions", self.transitions, get_args(Transitions))
        self._fraction("teacher_alone")
        _check(
            self.schedule != "staged" or self.teacher_alone > 0,
            "smt.schedule='staged' trains the teacher alone first: it needs smt.teacher_alone > 0",
        )
        for name in ("memory_noise", "dynamics_input_noise"):
            value = getattr(self, name)
            _check(value >= 0, f"smt.{name} must be >= 0 (a noise std in units of the memories' RMS), got {value}")
        self._fraction("memory_dropout")
        _check(
            0 <= self.dynamics_input_noise_final <= 1,
            f"smt.dynamics_input_noise_final must be in [0, 1] (a fraction of smt.dynamics_input_noise), got "
            f"{self.dynamics_input_noise_final}",
        )
        _check(
            self.transitions == "all" or (self.schedule == "joint" and not self.teacher_alone),
            "smt.transitions='one' is the reference objective, trained jointly: it takes smt.schedule='joint' "
            "and no smt.teacher_alone",
        )
        levers = [name for name in ("memory_noise", "memory_dropout", "dynamics_input_noise") if getattr(self, name)]
        _check(
            self.transitions == "all" or not levers,
            f"smt.transitions='one' is the reference objective, kept for comparison: it takes no smt.{levers[0]}"
            if levers
            else "",
        )


@dataclass
class DMTConfig(_Section):
    """DAgger Memory Training (see `smtrnn.dmt`)."""

    SECTION = "dmt"
    fraction: float = 0.25
    """smt+dmt: the last fraction of training is DMT, in (0, 1)."""
    restart_fraction: float = 0.5
    """Sequences that follow the teacher up to a random offset, then the RNN."""
    grad_through_rollout_steps: int = 0
    """k > 0: each target is reached by k+1 steps with gradient through all of them."""
    time_parallel: bool = True
    """false: the paper's sequential DMT (graph through the rollout)."""
    label_every: int = 16
    """Sequential DMT only: MSE to the teacher every this many steps."""
    dynamics_weight: float = 1.0
    """Weight of the regression of f(visited state, x_t) onto the teacher's m_t."""
    readout_weight: float = 1.0
    """Weight of the readout CE on the RNN's own memories."""
    onestep_readout_weight: float = 0.0
    """> 0: readout CE on f(visited state, x_t) too, with gradient into f."""
    teacher_learns: bool = False
    """DMT with the teacher still learning: each DMT step also takes the SMT objective on the same batch, so the
    teacher's memories keep moving toward states the RNN can reach while DMT relabels the ones it visits."""

    def check(self) -> None:
        super().check()
        self._fraction("fraction", low_open=True)
        self._fraction("restart_fraction", high_open=False)
        self._at_least(0, "grad_through_rollout_steps", "dynamics_weight", "readout_weight", "onestep_readout_weight")
        self._at_least(0, "label_every", strict=True)
        _check(
            not self.teacher_learns or self.time_parallel,
            "dmt.teacher_learns runs with the time-parallel DMT step (dmt.time_parallel=true)",
        )


@dataclass
class BPTTConfig(_Section):
    SECTION = "bptt"
    truncation: int = 0
    """0: full BPTT; k > 0: the state is detached every k steps (truncated BPTT)."""
    fraction: float = 0.25
    """smt+dmt+bptt: the last fraction of training fine-tunes the RNN by BPTT from where SMT→DMT left it (SMT
    pretraining, then the RNN on its own targets), in (0, 1); DMT takes the `dmt.fraction` before it."""

    def check(self) -> None:
        super().check()
        self._at_least(0, "truncation")
        _check(0 < self.fraction < 1, f"bptt.fraction must be in (0, 1), got {self.fraction}")


@dataclass
class OptimConfig(_Section):
    SECTION = "optim"
    lr: float = 1e-3
    """AdamW's peak learning rate."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay."""
    beta1: float = 0.9
    """AdamW's β1, in [0, 1)."""
    beta2: float = 0.95
    """AdamW's β2, in [0, 1)."""
    warmup: float = 0.02
    """Fraction of training with a linear learning-rate warm-up, in [0, 1)."""
    schedule: LRSchedule = "constant"
    """The learning rate after warm-up: constant or cosine (to 0)."""
    grad_clip: float = 1.0
    """The global gradient-norm bound (0: none)."""
    batch_size: int = 32
    """The global batch (sequences per step, over all ranks)."""

    def check(self) -> None:
        super().check()
        self._at_least(0, "lr", "batch_size", strict=True)
        self._at_least(0, "weight_decay", "grad_clip")
        _choice("optim", "schedule", self.schedule, LR_SCHEDULES)
        for name in ("warmup", "beta1", "beta2"):
            self._fraction(name)


@dataclass
class TrainConfig(_Section):
    SECTION = "train"
    method: Method = "smt"
    """smt, bptt, dmt (continues an SMT run: `init`), smt+dmt, smt+dmt+bptt (then a BPTT fine-tune: `bptt.fraction`),
    labels or labels+dmt (fit to a label store: `labels`)."""
    steps: int = 1000
    """Optimizer steps."""
    max_seconds: float = 0.0
    """> 0: stop at this wall-clock budget too; the schedules then follow elapsed time."""
    seed: int = 0
    """Seeds the weights, the data stream and the losses' sampling; in [0, 2^63)."""
    curriculum_start: int = 0
    """Length curriculum: > 0 trains on sequences of this length first, doubling up to task.seq_len in equal stages
    over the first `curriculum_fraction` of training (0, or a start >= task.seq_len: always task.seq_len)."""
    curriculum_fraction: float = 0.3
    """The share of training the length curriculum takes, in (0, 1)."""
    init: str = ""
    """Method dmt: the SMT run directory whose teacher and RNN DMT starts from."""
    labels: str = ""
    """Methods labels, labels+dmt: the label store (`smtrnn label`) the RNN is fit to."""
    log_every: int = 25
    """Write a training-log record every this many steps."""
    eval_every: int = 0
    """Evaluate every this many steps (0: only at the end)."""
    eval_every_seconds: float = 0.0
    """> 0: also evaluate each time this much training time has passed (learning curves against time)."""
    save_every: int = 1000
    """Checkpoint every this many steps (0: only at the end)."""
    keep_checkpoints: int = 3
    """The newest this many checkpoints stay in <run>/checkpoints/."""
    skip_nonfinite_steps: int = 0
    """A step whose loss or gradient is not finite stops training; up to this many such steps are skipped instead
    (no update, logged) before it does."""
    keep_best: bool = False
    """Data tasks: keep the checkpoint whose RNN alone had the fewest validation bits at a periodic evaluation
    (`eval_every`, `eval_every_seconds`) and report it, not the last (`smtrnn.best`): fair to a method that overfits."""
    stop_grace: float = 60.0
    """`smtrnn train`: seconds (at least twice the longest step so far) a step or evaluation may run past the
    budget or past a SIGINT/SIGTERM before the run is stopped there, without saving it (a cell that never returns)."""
    eval_batches: int = 4
    """Held-out batches per evaluation."""
    device: str = "auto"
    """auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps."""
    precision: Precision = "fp32"
    """bf16: the losses run under CUDA autocast (fp32 master weights); CUDA only, a CPU run refuses it."""
    compile: bool = False
    """torch.compile the teacher's encoder/decoder and the RNN's cell/readout."""
    tensorboard: bool = False
    """Also write every logged number as a TensorBoard scalar in <run>/tensorboard/ (needs smtrnn[tensorboard]);
    metrics.jsonl stays the record."""

    def check(self) -> None:
        super().check()
        _choice("train", "method", self.method, METHODS)
        _choice("train", "precision", self.precision, PRECISIONS)
        self._at_least(0, "steps", "log_every", "eval_batches", strict=True)
        self._at_least(
            0,
            "max_seconds",
            "eval_every",
            "eval_every_seconds",
            "save_every",
            "curriculum_start",
            "skip_nonfinite_steps",
        )
        self._at_least(0, "stop_grace", strict=True)
        _check(
            not self.keep_best or bool(self.eval_every or self.eval_every_seconds),
            "train.keep_best chooses among the periodic evaluations: set train.eval_every or train.eval_every_seconds",
        )
        self._at_least(1, "keep_checkpoints")
        self._fraction("curriculum_fraction", low_open=True)
        _check(0 <= self.seed < 2**63, f"train.seed must be in [0, 2^63), got {shown(self.seed)}")
        _check(self.method != "dmt" or bool(self.init), "method dmt starts from a trained SMT run: pass --init DIR")
        _check(not self.init or self.method == "dmt", "train.init (--init) is only for method dmt")
        _check(
            self.method not in LABEL_METHODS or bool(self.labels),
            "method labels fits the RNN to stored teacher memories: pass --labels DIR (written by smtrnn label)",
        )
        _check(
            not self.labels or self.method in LABEL_METHODS,
            "train.labels (--labels) is only for methods labels and labels+dmt",
        )
        _check(
            self.method not in LABEL_METHODS or not self.curriculum_start,
            "train.curriculum_start draws shorter sequences; method labels trains on the stored length only",
        )


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
        """A config from its dict (a file, a checkpoint's config.json). A field the project removed (RETIRED) is
        dropped where it holds the value that left it without effect, so older runs still load; any other value is
        refused, naming the field."""
        if not isinstance(data, dict):
            raise ConfigError(f"a run config must be a mapping, got {type(data).__name__}")
        cfg = cls()
        fields = flatten(data)
        for name, neutral in RETIRED.items():
            if name in fields and fields.pop(name) != neutral:
                raise ConfigError(
                    f"{name} was removed (a lever that did not help; see docs/LOG.md); this config sets it"
                )
        apply_overrides(cfg, fields)
        return cfg


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"rnn": {"cell": "gru"}} -> {"rnn.cell": "gru"}; the DICT_FIELDS (task params, cell args) stay one key."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in DICT_FIELDS:
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
            except RecursionError as exc:
                raise ConfigError(f"{name} is nested too deeply ({len(value)} characters of JSON)") from exc
            except ValueError as exc:  # also an integer past Python's digit limit
                raise ConfigError(f"{name} must be a JSON object, got {shown(value)}") from exc
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {shown(value)}")
        if _depth_over(value, MAX_DEPTH):
            raise ConfigError(f"{name} is nested too deeply (more than {MAX_DEPTH} levels)")
        return dict(value)
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name} must be true or false, got {shown(value)}")
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be {type(current).__name__}, got {shown(value)}")
    for kind in (int, float):
        if isinstance(current, kind):
            try:
                converted = kind(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ConfigError(f"{name} must be {kind.__name__}, got {shown(value)}") from exc
            if kind is int and isinstance(value, float) and value != converted:
                raise ConfigError(f"{name} must be an integer, got {shown(value)}")
            return converted
    return str(value)


def _depth_over(value: Any, limit: int) -> bool:
    """Whether lists and mappings nest more than `limit` levels deep in value (iteratively: no recursion to
    exhaust)."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Set dotted fields ("rnn.cell" -> "gru"); an unknown section or field is a ConfigError naming it."""
    for name, value in overrides.items():
        section_name, _, field_name = name.partition(".")
        section = getattr(cfg, section_name, None)
        if not dataclasses.is_dataclass(section) or not field_name:
            raise ConfigError(f"unknown config section in {shown(name)}")
        if field_name not in {f.name for f in dataclasses.fields(section)}:
            raise ConfigError(f"unknown config field {shown(name)}")
        setattr(section, field_name, _coerce(name, getattr(section, field_name), value))
    return cfg


SECTIONS = ("task", "memory", "teacher", "rnn", "smt", "dmt", "bptt", "optim", "train")


def validate(cfg: RunConfig) -> None:
    """Every section's own checks, then the rules that tie sections together; the first violation is a ConfigError
    naming the field. No I/O: the task and its data are checked where the task is built (`tasks.build_task`)."""
    for name in SECTIONS:
        getattr(cfg, name).check()
    _check(
        cfg.rnn.cell not in BPTT_ONLY_CELLS or cfg.train.method == "bptt",
        f"cell '{cfg.rnn.cell}' is a BPTT baseline; method '{cfg.train.method}' needs a cell whose memories are "
        f"RMS-normalized like the teacher's: one of {', '.join(SMT_CELLS)}",
    )
    _check(
        not cfg.dmt.teacher_learns or cfg.train.method in ("smt+dmt", "smt+dmt+bptt", "dmt"),
        f"dmt.teacher_learns trains the teacher during DMT: methods smt+dmt, smt+dmt+bptt or dmt, not "
        f"{cfg.train.method}",
    )
    _check(
        cfg.train.method != "smt+dmt+bptt" or cfg.dmt.fraction + cfg.bptt.fraction < 1,
        f"smt+dmt+bptt leaves SMT the rest of dmt.fraction {cfg.dmt.fraction} and bptt.fraction "
        f"{cfg.bptt.fraction}: their sum must be below 1",
    )
    if cfg.rnn.cell == "transformer":
        _check(
            cfg.memory.width % cfg.rnn.heads == 0 and (cfg.memory.width // cfg.rnn.heads) % 2 == 0,
            f"rnn.heads={cfg.rnn.heads} must divide the width {cfg.memory.width} into an even head size",
        )
    if cfg.rnn.cell in ("lstm", "lstm-fused"):
        _check(
            cfg.memory.size % 2 == 0,
            f"the {cfg.rnn.cell} cell splits the memory into h and c: memory size "
            f"{cfg.memory.size} (tokens·width) must be even",
        )


def field_docs(section: type) -> dict[str, str]:
    """{field name: the documentation string written under it} of a config section class."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(section)))
    body = tree.body[0].body
    docs = {}
    for item, following in zip(body, body[1:]):
        if (
            isinstance(item, ast.AnnAssign)
            and isinstance(item.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[item.target.id] = " ".join(following.value.value.split())
    return docs


def describe_fields() -> str:
    """Every config field as 'section.field = default  doc', section by section (for `smtrnn train --help`)."""
    cfg, lines = RunConfig(), []
    for name in SECTIONS:
        section = getattr(cfg, name)
        docs = field_docs(type(section))
        for item in dataclasses.fields(section):
            default = json.dumps(getattr(section, item.name))
            lines.append(f"  {name}.{item.name} = {default}")
            if docs.get(item.name):
                lines += textwrap.wrap(docs[item.name], 110, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)
