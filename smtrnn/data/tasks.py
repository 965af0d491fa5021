"""Synthetic sequence tasks, generated on the fly: seeded, vectorized, any batch size and length.

A batch is ``(x, y)``, two ``torch.long`` tensors of shape (B, T): ``x`` holds input tokens and ``y`` the targets,
with ``y == -1`` (``NO_TARGET``) where there is nothing to predict. The model predicts ``y_t`` having seen
``x_0 .. x_t``, so every target is a function of that past — never of a later input. (``modular_icl`` is the one
nuance: its targets also depend on the sequence's hidden rule, which the past reveals after a few examples.)
Every id in ``x``, and every target other than -1, lies in ``[0, vocab_size)``.

Here are our versions of the paper's five synthetic tasks (its release does not define them in runnable form):
retrieval, string copy, stack operations, keys–values (associative recall) and modular arithmetic in context;
plus ``delayed_recall`` and ``parity``, dense-label anchors that separate long-range memory from local state
tracking. Batches are drawn only from the ``torch.Generator`` passed in, on that generator's device, so a seed
fixes the data and the global RNG is left alone.

In the worked examples of the class docstrings, ``.`` marks a position with no target (-1).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from smtrnn.errors import SmtrnnError

if TYPE_CHECKING:
    from smtrnn.config import RunConfig

NO_TARGET = -1  # the target at positions that carry no loss; pass as ``ignore_index`` to cross-entropy


class TaskError(SmtrnnError, ValueError):
    """An unknown task or parameter, an invalid parameter value, or a sequence too short for the task."""


class Task(ABC):
    """A family of synthetic sequences; subclasses are frozen dataclasses whose fields are the parameters."""

    name: ClassVar[str]
    has_splits: ClassVar[bool] = False  # data tasks: train, validation and test splits of finite data
    scored_in_bits: ClassVar[bool] = False  # studies rank runs by bits per token (text, pixels), else by accuracy

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of token ids: every id in x, and every target other than -1, is below it."""

    @abstractmethod
    def min_seq_len(self) -> int:
        """The shortest sequence in which the task, with these parameters, can be posed."""

    @abstractmethod
    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw (x, y); `sample` has already checked the sizes."""

    def max_seq_len(self) -> int | None:
        """The longest sequence the task can give (data tasks: bounded by their data); None = unbounded."""
        return None

    def memory_bits(self) -> float | None:
        """What a memory must hold at once to solve the task, in bits, where the task can say (a needle, a window of
        symbols); None where it cannot (real data). The recipe sizes the memory from it (`smtrnn.presets`)."""
        return None

    def target_lag(self) -> int | None:
        """L where every target is the input L steps back (y_t = x_{t-L}: the memory is a shift register); None
        otherwise. The recipe then has the teacher write that window in linearly readable form."""
        return None

    def answer_mask(self, x: Tensor, y: Tensor) -> Tensor | None:
        """(B, T) bool: the targets that are the task's answer (passkey: the key's digits when asked at the end),
        scored on their own beside every target (`rnn_answer_accuracy`, `rnn_answer_exact`); None where the task
        has no answers apart from its targets."""
        return None

    def lured_rows(self, x: Tensor, y: Tensor) -> Tensor | None:
        """(B,) bool: the rows that read a lure before the answer's cue, a token of the answer's kind that a memory
        could hold in its place (passkey: a digit of the prose before the statement); the RNN alone's exact answer
        accuracy is then reported apart for rows with and without one. None where the task has no lures."""
        return None

    def check_full_length(self, seq_len: int) -> None:
        """Raise a TaskError unless a run at length seq_len trains every target the task has (arrays: the last
        labelled position of the data); the curriculum's shorter lengths are only prefixes of these."""

    def held_out(self, split: str = "valid") -> Task:
        """The task evaluation draws from: "valid" during training and for choosing settings, "test" for final
        numbers. Synthetic tasks have no split: fresh draws under the split's own evaluation seed are held out
        (`smtrnn.evaluate`). Data tasks return that split of their data."""
        if split not in ("valid", "test"):
            raise TaskError(f"task '{self.name}': a held-out split is valid or test, got {split!r}")
        return self

    def check_seq_len(self, seq_len: int) -> None:
        """Raise a TaskError naming the bound unless a sequence of length seq_len can be drawn."""
        if seq_len < self.min_seq_len():
            raise TaskError(f"task '{self.name}' needs seq_len >= {self.min_seq_len()}, got {seq_len}")
        longest = self.max_seq_len()
        if longest is not None and seq_len > longest:
            split = getattr(self, "split", "")
            raise TaskError(
                f"task '{self.name}' can give sequences of at most {longest} tokens"
                f"{f' (its {split} split)' if split else ''}, got seq_len {seq_len}"
            )

    def sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A batch (x, y), each (B, T) long on the generator's device; the same generator state gives the same batch."""
        if batch_size < 1:
            raise TaskError(f"task '{self.name}' needs batch_size >= 1, got {batch_size}")
        self.check_seq_len(seq_len)
        return self._sample(batch_size, seq_len, generator)

    def needed_symbol(self, x: Tensor, y: Tensor) -> Tensor:
        """(B, T): the symbol a memory written at t must hold for a later target, -1 where none is defined yet —
        what an information probe looks for. Tasks without one such symbol raise a TaskError."""
        raise TaskError(
            f"task '{self.name}' defines no single symbol its memories must hold; the information "
            "probe runs on retrieval, delayed_recall and copy"
        )

    def describe(self) -> dict:
        """The parameters as a plain dict: ``make_task(task.name, **task.describe())`` rebuilds the task."""
        return dataclasses.asdict(self)

    def _require(self, field: str, minimum: int) -> None:
        """Raise a TaskError naming `field` unless it is an integer >= `minimum`."""
        value = getattr(self, field)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TaskError(f"task '{self.name}': {field} must be an integer, got {value!r}")
        if value < minimum:
            raise TaskError(f"task '{self.name}': {field} must be >= {minimum}, got {value}")


# Every draw goes through these, so all randomness comes from the caller's generator, on its device.


def _randint(low: int, high: int, size: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randint(low, high, size, generator=generator, device=generator.device)


def _rand(size: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.rand(size, generator=generator, device=generator.device)


def _distinct(population: int, count: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """(B, count) ids from [0, population), distinct within each row: the first `count` of a random permutation."""
    return _rand((batch_size, population), generator).argsort(dim=1)[:, :count]


def _no_targets(batch_size: int, seq_len: int, generator: torch.Generator) -> Tensor:
    return torch.full((batch_size, seq_len), NO_TARGET, dtype=torch.long, device=generator.device)


@dataclass(frozen=True)
class Retrieval(Task):
    """Find the needle: recall the symbol that followed a marker, when the last token asks for it.

    One MARKER sits at a uniformly random position p < T // 2 (the first half); the symbol right after it is the
    needle. The last token is QUERY and its target, the only one in the sequence, is the needle. Every other
    position holds a uniformly random content symbol, the same distribution as the needle, so only the marker
    singles it out. The gap between needle and query grows with T: sparse, long-range credit assignment.

    Example, ``Retrieval(num_symbols=4)``: symbols 0-3, MARKER = 4, QUERY = 5::

        x:  2  4  3  0  1  1  2  5
        y:  .  .  .  .  .  .  .  3
    """

    name: ClassVar[str] = "retrieval"
    num_symbols: int = 8

    def __post_init__(self):
        self._require("num_symbols", 2)

    @property
    def marker(self) -> int:
        return self.num_symbols

    @property
    def query(self) -> int:
        return self.num_symbols + 1

    @property
    def vocab_size(self) -> int:
        return self.num_symbols + 2

    def min_seq_len(self) -> int:
        return 3  # marker, needle, query

    def memory_bits(self) -> float:
        return math.log2(self.num_symbols) + 1  # the needle, and whether the marker has passed

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = _randint(0, self.num_symbols, (batch_size, seq_len), generator)
        rows = torch.arange(batch_size, device=x.device)
        marker_at = _randint(0, seq_len // 2, (batch_size,), generator)
        x[rows, marker_at] = self.marker
        x[:, -1] = self.query
        y = _no_targets(batch_size, seq_len, generator)
        y[:, -1] = x[rows, marker_at + 1]
        return x, y

    def needed_symbol(self, x: Tensor, y: Tensor) -> Tensor:
        """The needle, from the step that reads it (right after the marker) to the query."""
        needle_at = (x == self.marker).int().argmax(dim=1) + 1  # (B,)
        t = torch.arange(x.shape[1], device=x.device)
        return torch.where(t[None] >= needle_at[:, None], y[:, -1:], NO_TARGET)


@dataclass(frozen=True)
class Copy(Task):
    """Copy a string: read L random symbols and a separator, then write the symbols back in order.

    Positions 0..L-1 hold the string s and position L holds SEP (no target). The next L positions hold BLANK,
    and the target at L + 1 + i is s_i: the inputs there carry nothing, so the model must keep the whole string
    and its place in it. The remaining T - 2L - 1 positions are PAD, with no target. L is ``copy_len``, or
    (T - 1) // 2 when that is None: the longest string that fits, leaving one PAD when T is even.

    Example, ``Copy(num_symbols=4, copy_len=3)``: symbols 0-3, SEP = 4, BLANK = 5, PAD = 6::

        x:  2  0  3  4  5  5  5  6  6
        y:  .  .  .  .  2  0  3  .  .
    """

    name: ClassVar[str] = "copy"
    num_symbols: int = 8
    copy_len: int | None = None

    def __post_init__(self):
        self._require("num_symbols", 2)
        if self.copy_len is not None:
            self._require("copy_len", 1)

    @property
    def sep(self) -> int:
        return self.num_symbols

    @property
    def blank(self) -> int:
        return self.num_symbols + 1

    @property
    def pad(self) -> int:
        return self.num_symbols + 2

    @property
    def vocab_size(self) -> int:
        return self.num_symbols + 3

    def min_seq_len(self) -> int:
        return 2 * (self.copy_len or 1) + 1  # string, SEP, one BLANK per symbol

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        length = self.copy_len or (seq_len - 1) // 2
        string = _randint(0, self.num_symbols, (batch_size, length), generator)
        x = torch.full((batch_size, seq_len), self.pad, dtype=torch.long, device=string.device)
        x[:, :length] = string
        x[:, length] = self.sep
        x[:, length + 1 : 2 * length + 1] = self.blank
        y = _no_targets(batch_size, seq_len, generator)
        y[:, length + 1 : 2 * length + 1] = string
        return x, y

    def needed_symbol(self, x: Tensor, y: Tensor) -> Tensor:
        """The string symbol to come: at t, the next target after t whose symbol has been read (-1 once the copy is
        written, and before s_0 is read)."""
        length = int((x[0] == self.sep).int().argmax())
        t = torch.arange(x.shape[1], device=x.device)
        # the next target after t is s_i with i = max(t - length, 0); s_i is read at position i
        index = (t - length).clamp_min(0)
        defined = (index < length) & (index <= t)
        symbols = x[:, index.clamp_max(length - 1)]
        return torch.where(defined[None], symbols, NO_TARGET)


@dataclass(frozen=True)
class DelayedRecall(Task):
    """Echo the input from ``lag`` steps ago: y_t = x_{t-lag} for t >= lag, no target before.

    Inputs are uniformly random symbols. Every position from ``lag`` on is labelled, so the task measures how
    long a memory lasts with dense credit, where retrieval measures it with a single sparse label.

    Example, ``DelayedRecall(num_symbols=4, lag=2)``: symbols 0-3::

        x:  3  1  0  2  2  1
        y:  .  .  3  1  0  2
    """

    name: ClassVar[str] = "delayed_recall"
    num_symbols: int = 8
    lag: int = 16

    def __post_init__(self):
        self._require("num_symbols", 2)
        self._require("lag", 1)

    @property
    def vocab_size(self) -> int:
        return self.num_symbols

    def min_seq_len(self) -> int:
        return self.lag + 1  # at least one labelled position

    def memory_bits(self) -> float:
        return self.lag * math.log2(self.num_symbols)  # the last `lag` symbols, in order

    def target_lag(self) -> int:
        return self.lag

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = _randint(0, self.num_symbols, (batch_size, seq_len), generator)
        y = _no_targets(batch_size, seq_len, generator)
        y[:, self.lag :] = x[:, : -self.lag]
        return x, y

    def needed_symbol(self, x: Tensor, y: Tensor) -> Tensor:
        """The oldest symbol still to be recalled: x_{t-lag+1}, the target of step t+1."""
        needed = torch.full_like(x, NO_TARGET)
        needed[:, self.lag - 1 :] = x[:, : x.shape[1] - self.lag + 1]
        return needed


@dataclass(frozen=True)
class AssocRecall(Task):
    """Keys and values: read key-value pairs, then answer each queried key with its value.

    Layout: ``num_pairs`` pairs k_1 v_1 k_2 v_2 ... (keys distinct within a sequence, values drawn independently
    and so may repeat), then FILL up to the last ``num_queries`` positions, which hold distinct keys from those
    pairs. The target at a query is the value paired with its key; nothing else has a target. Keys and values
    use disjoint id ranges, so a key after the pairs can only be a query. The filler grows with T, so the
    distance from a pair to its query does too.

    Example, ``AssocRecall(num_keys=3, num_values=3, num_pairs=2, num_queries=2)``: keys 0-2, values 3-5,
    FILL = 6::

        x:  2  4  0  3  6  6  0  2
        y:  .  .  .  .  .  .  3  4
    """

    name: ClassVar[str] = "assoc_recall"
    num_keys: int = 8
    num_values: int = 8
    num_pairs: int = 4
    num_queries: int = 2

    def __post_init__(self):
        self._require("num_keys", 1)
        self._require("num_values", 2)
        self._require("num_pairs", 1)
        if self.num_pairs > self.num_keys:
            raise TaskError(
                f"task '{self.name}': num_pairs must be <= num_keys={self.num_keys} "
                f"(keys are distinct within a sequence), got {self.num_pairs}"
            )
        self._require("num_queries", 1)
        if self.num_queries > self.num_pairs:
            raise TaskError(
                f"task '{self.name}': num_queries must be <= num_pairs={self.num_pairs} "
                f"(each query asks a different pair), got {self.num_queries}"
            )

    @property
    def fill(self) -> int:
        return self.num_keys + self.num_values

    @property
    def vocab_size(self) -> int:
        return self.num_keys + self.num_values + 1

    def min_seq_len(self) -> int:
        return 2 * self.num_pairs + self.num_queries

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        pairs, queries = self.num_pairs, self.num_queries
        keys = _distinct(self.num_keys, pairs, batch_size, generator)
        values = _randint(self.num_keys, self.num_keys + self.num_values, (batch_size, pairs), generator)
        asked = _distinct(pairs, queries, batch_size, generator)  # which pairs the queries ask about
        x = torch.full((batch_size, seq_len), self.fill, dtype=torch.long, device=keys.device)
        x[:, 0 : 2 * pairs : 2] = keys
        x[:, 1 : 2 * pairs : 2] = values
        x[:, seq_len - queries :] = keys.gather(1, asked)
        y = _no_targets(batch_size, seq_len, generator)
        y[:, seq_len - queries :] = values.gather(1, asked)
        return x, y


@dataclass(frozen=True)
class Stack(Task):
    """Stack operations: each token pushes a symbol or pops; at a pop the target is the symbol popped.

    Token s < num_symbols pushes s; POP pops. Each step pushes with probability 1/2 and pops otherwise, except
    that an empty stack is always pushed to, so a pop never fails. The depth is therefore a random walk
    reflected at zero, typically about sqrt(T) deep, and a popped symbol may have been pushed long ago. Pushes
    have no target.

    Example, ``Stack(num_symbols=4)``: symbols 0-3 (push that symbol), POP = 4::

        x:  1  3  4  2  4  4  0  4
        y:  .  .  3  .  2  1  .  0
    """

    name: ClassVar[str] = "stack"
    num_symbols: int = 8

    def __post_init__(self):
        self._require("num_symbols", 2)

    @property
    def pop(self) -> int:
        return self.num_symbols

    @property
    def vocab_size(self) -> int:
        return self.num_symbols + 1

    def min_seq_len(self) -> int:
        return 2  # a push, then possibly a pop

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        # Depth without the empty-stack rule is the walk w_t of ±1 coin flips; each forced push lifts it by 2,
        # which happens exactly when w reaches a new low of floor(w / 2). So, in closed form and without a loop,
        # depth_t = w_t - 2 * min(0, min_{s <= t} floor(w_s / 2)).
        step = torch.where(_rand((batch_size, seq_len), generator) < 0.5, 1, -1)
        walk = step.cumsum(dim=1)
        lifts = torch.div(walk, 2, rounding_mode="floor").cummin(dim=1).values.clamp(max=0)
        depth = walk - 2 * lifts  # stack size after step t, (B, T)
        before = torch.cat([torch.zeros_like(depth[:, :1]), depth[:, :-1]], dim=1)
        is_push = depth > before
        x = torch.where(is_push, _randint(0, self.num_symbols, (batch_size, seq_len), generator), self.pop)

        # Each step touches one stack slot (the depth it pushes to or pops from). Within a slot, steps alternate
        # push, pop, push, ... in time, so after sorting by (slot, time) every pop comes right after its push.
        slot = torch.where(is_push, depth, before)
        time = torch.arange(seq_len, device=x.device)
        order = (slot * seq_len + time).argsort(dim=1)
        pushed = x.gather(1, order.roll(1, dims=1))  # the token one place earlier in that order
        sorted_targets = torch.where(is_push.gather(1, order), NO_TARGET, pushed)
        y = torch.empty_like(x).scatter_(1, order, sorted_targets)
        return x, y


@dataclass(frozen=True)
class Parity(Task):
    """Running parity: y_t = (x_0 + ... + x_t) mod 2, a target at every position; x is uniform over {0, 1}.

    Example, ``Parity()``: tokens 0 and 1, targets 0 and 1::

        x:  1  0  1  1  0
        y:  1  1  0  1  1
    """

    name: ClassVar[str] = "parity"

    @property
    def vocab_size(self) -> int:
        return 2

    def memory_bits(self) -> float:
        return 1.0  # the running parity

    def min_seq_len(self) -> int:
        return 1

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = _randint(0, 2, (batch_size, seq_len), generator)
        return x, x.cumsum(dim=1) % 2


@dataclass(frozen=True)
class ModularICL(Task):
    """Modular arithmetic in context: infer the sequence's hidden map a -> (w·a + b) mod p from its examples.

    Each sequence draws w in [1, p) and b in [0, p) and alternates an input a (uniform, shown as token a) with
    its answer (shown as token p + answer, so inputs and answers are told apart by id). The target at each input
    is its answer token, i.e. the input that follows; answers have no target. The first answers are guesses;
    once the past pins down (w, b) — two examples with different inputs when p is prime — every later target
    is determined. An odd T ends on an input.

    Example, ``ModularICL(modulus=5)`` with hidden w = 2, b = 1: inputs 0-4, answer v shown as 5 + v::

        x:  3  7  0  6  4  9  2
        y:  7  .  6  .  9  .  5
    """

    name: ClassVar[str] = "modular_icl"
    modulus: int = 7

    def __post_init__(self):
        self._require("modulus", 2)

    @property
    def vocab_size(self) -> int:
        return 2 * self.modulus

    def min_seq_len(self) -> int:
        return 5  # two examples, then an input whose answer they can determine

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        p, examples = self.modulus, (seq_len + 1) // 2
        w = _randint(1, p, (batch_size, 1), generator)
        b = _randint(0, p, (batch_size, 1), generator)
        inputs = _randint(0, p, (batch_size, examples), generator)
        answers = p + (w * inputs + b) % p
        x = torch.stack([inputs, answers], dim=2).flatten(1)[:, :seq_len]  # a_0, ans_0, a_1, ans_1, ...
        y = _no_targets(batch_size, seq_len, generator)
        y[:, 0::2] = answers
        return x, y


TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Retrieval, Copy, DelayedRecall, AssocRecall, Stack, Parity, ModularICL)
}


REGISTRY: dict[str, type[Task]] = dict(TASKS)  # every task by name: `register` adds the data tasks


def register(tasks: dict[str, type[Task]]) -> None:
    """Make tasks known to `make_task` (smtrnn.data.real registers text and pixels when the package loads)."""
    REGISTRY.update(tasks)


def all_tasks() -> dict[str, type[Task]]:
    """The synthetic tasks and the data tasks (`smtrnn.data.real`: text, pixels)."""
    return dict(REGISTRY)


def make_task(name: str, **params) -> Task:
    """The task registered as `name`, with `params` overriding its defaults; bad names and values raise TaskError."""
    registry = all_tasks()
    if name not in registry:
        raise TaskError(f"unknown task '{name}'; choose from: {', '.join(sorted(registry))}")
    cls = registry[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    for param in params:
        if param not in fields:
            takes = f"it takes: {', '.join(fields)}" if fields else "it takes no parameters"
            raise TaskError(f"task '{name}' has no parameter '{param}'; {takes}")
    return cls(**params)


def build_task(cfg: RunConfig) -> Task:
    """The task a run config names, checked against the config: the sequence length (and the curriculum's first
    length) at least the task's minimum, and for data tasks both splits long enough for one sequence. Loads the data
    of text and pixels tasks; `config.validate` leaves all of this here, so validating a config does no I/O."""
    from smtrnn.errors import ConfigError

    task = make_task(cfg.task.name, **cfg.task.params)
    minimum = task.min_seq_len()
    if cfg.task.seq_len < minimum:
        raise ConfigError(f"task '{cfg.task.name}' needs task.seq_len >= {minimum}, got {cfg.task.seq_len}")
    task.check_seq_len(cfg.task.seq_len)  # data tasks: both splits must hold one whole sequence
    task.check_full_length(cfg.task.seq_len)
    task.held_out().check_seq_len(cfg.task.seq_len)
    if cfg.train.curriculum_start and cfg.train.curriculum_start < minimum:
        raise ConfigError(
            f"train.curriculum_start must be >= {minimum} (task '{cfg.task.name}''s minimum length), "
            f"got {cfg.train.curriculum_start}"
        )
    return task
