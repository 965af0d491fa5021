"""`arrays`: a researcher's own labelled sequences, read from integer arrays on disk.

A source is an ``.npz`` file or a folder of ``.npy`` files holding ``x`` (N, T) integer inputs and ``y`` (N, T)
integer targets, -1 where a position has no target; optionally ``x_valid``/``y_valid`` and ``x_test``/``y_test``.
Files are read with ``allow_pickle=False`` (a pickle is refused, never loaded); a folder's ``.npy`` files are
memory-mapped, so a large set is read row by row. One row is one sequence; training at length T takes the first T
positions of each row, so a run's length must reach the last labelled position. The vocabulary is the `vocab`
parameter, else the largest id in the data plus one.

The length curriculum on fixed-length rows (`crop`): where the targets sit in a tail of the rows (a needle asked for
at the end), a sequence shorter than the last labelled position keeps that labelled tail whole, with CONTEXT
positions before it, and takes the rest from the row's start, cutting the middle: the distance from early content
to the targets shrinks and no target is lost. Where targets are spread over the rows, it takes the row's first
positions (a prefix, as text windows).

The memory a task needs is found from the targets (`memory_bits`): what the memory must hold at t is at most the
information in the targets still to come, so at most (the most targets a row has) × log2(the distinct target values).

Splits: without validation arrays the last `valid_fraction` of the rows is held out and halved into validation and
test, as for the other data tasks; with validation arrays alone those are halved; with both, both are used as given.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from smtrnn.config import shown, size_text
from smtrnn.data.data_task import DataTask, Windows
from smtrnn.data.tasks import NO_TARGET, TaskError
from smtrnn.errors import DataError
from smtrnn.free_memory import available_memory

NAMES = ("x", "y", "x_valid", "y_valid", "x_test", "y_test")  # the arrays a source may hold
_ROWS_PER_READ = 4096  # rows read at once when checking or hashing a memory-mapped array
CONTEXT = 8  # positions before the first target that a curriculum crop keeps with the labelled tail (a query's words)
MOST_IDS = 1 << 20  # token ids an arrays source may use: a vocabulary of 2**20 is 4 MB of logits per position
MOST_BITS = 128  # a bound from the targets above this says nothing a default memory (small's Z = 128) would not give


@dataclass(frozen=True)
class Split:
    """One split: rows start..start+count-1 of inputs and targets (N, T), NumPy arrays (memory-mapped for a folder
    source)."""

    x: np.ndarray
    y: np.ndarray
    start: int
    count: int

    def rows(self, a: int, b: int) -> tuple[Tensor, Tensor]:
        """The split's rows a..b-1 -> x, y (b - a, T) long."""
        return self._tensors(slice(self.start + a, self.start + b))

    def pick(self, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        """The split's rows at the given positions -> x, y (len(rows), T) long."""
        return self._tensors(self.start + rows)

    def _tensors(self, index) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(self.x[index].astype(np.int64)), torch.from_numpy(self.y[index].astype(np.int64))


def _check_npz_members(path: Path) -> None:
    """Before anything is decompressed: every member a .npy array, and their sizes once expanded (from the zip's
    own directory) within the memory free, so a small file that expands to gigabytes is refused unread."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz of integer arrays ({_reason(e)})") from None
    for member in members:
        if not member.filename.endswith(".npy"):
            raise DataError(f"{path}: member {member.filename[:40]!r} is not a .npy array")
    expanded, free = sum(member.file_size for member in members), available_memory(torch.device("cpu"))
    if free is not None and expanded > free:
        raise DataError(
            f"{path}: its arrays expand to {size_text(expanded)}, more than the {size_text(free)} free; "
            "give a folder of .npy files instead (memory-mapped, read by rows)"
        )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    _check_npz_members(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            unknown = sorted(set(archive.files) - set(NAMES))
            if unknown:
                raise DataError(f"{path}: unknown arrays {', '.join(unknown)}; a source holds {', '.join(NAMES)}")
            return {name: archive[name] for name in archive.files}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not a zip, empty, or a pickled member
        raise DataError(f"{path}: not a readable .npz of integer arrays ({_reason(e)})") from None


def _read_folder(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for name in NAMES:
        file = path / f"{name}.npy"
        if not file.is_file():
            continue
        with open(file, "rb") as handle:
            if handle.read(6) != b"\x93NUMPY":  # numpy would take a file without the header for a pickle
                raise DataError(f"{file}: not a .npy file (no NumPy header)")
        try:
            arrays[name] = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{file}: not a readable .npy array ({_reason(e)})") from None
    return arrays


def _reason(error: Exception) -> str:
    """numpy's message, without its advice to unpickle."""
    text = str(error).split(". If you trust")[0].split(" when allow_pickle=False")[0]
    return text or type(error).__name__


def read_source(path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file or a folder of .npy files, each checked: 2-D integers, x and y of one shape."""
    source = Path(path)
    if source.is_dir():
        arrays = _read_folder(source)
    elif source.is_file() and source.suffix.lower() == ".npz":
        arrays = _read_npz(source)
    elif source.is_file():
        raise DataError(f"{source}: an arrays source is an .npz file or a folder of .npy files, got '{source.suffix}'")
    else:
        raise DataError(f"{source}: no such file or folder")
    for needed in ("x", "y"):
        if needed not in arrays:
            raise DataError(f"{source}: no array '{needed}' (a source holds x and y, (N, T) integers)")
    for name, array in arrays.items():
        if array.dtype.kind not in "iu":
            raise DataError(f"{source}: {name} is {array.dtype}; inputs and targets must be integer arrays")
        if array.ndim != 2:
            raise DataError(f"{source}: {name} must be 2-D (N sequences, T positions), got shape {array.shape}")
        if array.shape[0] == 0:
            raise DataError(f"{source}: {name} holds no sequence")
    for suffix in ("", "_valid", "_test"):
        x, y = arrays.get("x" + suffix), arrays.get("y" + suffix)
        if (x is None) != (y is None):
            raise DataError(f"{source}: x{suffix} and y{suffix} come together; one of them is missing")
        if x is not None and x.shape != y.shape:
            raise DataError(f"{source}: x{suffix} has shape {x.shape} and y{suffix} {y.shape}; they must match")
    if "x_test" in arrays and "x_valid" not in arrays:
        raise DataError(f"{source}: x_test needs x_valid (validation chooses settings, test scores them)")
    length = arrays["x"].shape[1]
    for name, array in arrays.items():
        if array.shape[1] != length:
            raise DataError(f"{source}: {name} has {array.shape[1]} positions per row, x has {length}")
    if length < 2:
        raise DataError(f"{source}: sequences need at least 2 positions, got {length}")
    return arrays


def _extremes(array: np.ndarray) -> tuple[int, int]:
    """(min, max) of an array, read in blocks of rows (a memory map is never loaded whole); the scan stops at the
    first block holding an id of MOST_IDS or more, or a target below -1, which is refused anyway."""
    low, high = math.inf, -math.inf
    for start in range(0, array.shape[0], _ROWS_PER_READ):
        block = np.asarray(array[start : start + _ROWS_PER_READ])
        low, high = min(low, int(block.min())), max(high, int(block.max()))
        if high >= MOST_IDS or low < NO_TARGET:
            break
    return low, high


@dataclass(frozen=True)
class TargetLayout:
    """Where and what the training targets are: the first and last labelled positions over all rows (-1 when none),
    the most targets one row has, and how many distinct target values there are."""

    first: int
    last: int
    most_per_row: int
    values: int


def _target_layout(y: np.ndarray) -> TargetLayout:
    """The `TargetLayout` of a target array, read in blocks of rows."""
    first, last, most, values = y.shape[1], -1, 0, set()
    for start in range(0, y.shape[0], _ROWS_PER_READ):
        block = np.asarray(y[start : start + _ROWS_PER_READ])
        labelled = block >= 0
        columns = np.flatnonzero(labelled.any(axis=0))
        if columns.size:
            first, last = min(first, int(columns[0])), max(last, int(columns[-1]))
        most = max(most, int(labelled.sum(axis=1).max()))
        values.update(np.unique(block[labelled]).tolist())
    return TargetLayout(first if last >= 0 else -1, last, most, len(values))


@lru_cache(maxsize=8)
def _array_splits(
    path: str, vocab: int | None, valid_fraction: float
) -> tuple[int, TargetLayout, dict[str, Split | None]]:
    """(vocab size, the training targets' `TargetLayout`, {split: Split}) for a source, loaded and checked once."""
    arrays = read_source(path)
    largest = -1
    for name, array in arrays.items():
        low, high = _extremes(array)
        if name.startswith("x") and low < 0:
            raise DataError(f"{path}: {name} holds the negative input {low}; inputs are ids >= 0")
        if name.startswith("y") and low < NO_TARGET:
            raise DataError(f"{path}: {name} holds {low}; targets are ids >= 0, or -1 where there is none")
        if vocab is not None and high >= vocab:
            raise DataError(f"{path}: {name} holds the id {high}, outside the declared vocab {vocab}")
        if high >= MOST_IDS:
            raise DataError(
                f"{path}: {name} holds the id {shown(high)}; ids are below 2**20 = {MOST_IDS} (the embedding and "
                "the logits grow with the largest id): renumber the tokens"
            )
        largest = max(largest, high)
    layout = _target_layout(arrays["y"])
    if layout.last < 0:
        raise DataError(f"{path}: y has no target (every entry is -1)")
    splits: dict[str, Split | None] = {"train": Split(arrays["x"], arrays["y"], 0, arrays["x"].shape[0])}
    if "x_test" in arrays:
        splits["valid"] = Split(arrays["x_valid"], arrays["y_valid"], 0, arrays["x_valid"].shape[0])
        splits["test"] = Split(arrays["x_test"], arrays["y_test"], 0, arrays["x_test"].shape[0])
    else:
        if "x_valid" in arrays:
            held = Split(arrays["x_valid"], arrays["y_valid"], 0, arrays["x_valid"].shape[0])
        else:
            count = arrays["x"].shape[0]
            if count < 2:
                raise DataError(f"{path}: x holds one sequence; a split needs at least 2 (or give x_valid)")
            held_count = min(max(math.ceil(valid_fraction * count - 1e-9), 1), count - 1)
            splits["train"] = Split(arrays["x"], arrays["y"], 0, count - held_count)
            held = Split(arrays["x"], arrays["y"], count - held_count, held_count)
        half = -(-held.count // 2)  # the first half, one more when odd, for validation
        splits["valid"] = Split(held.x, held.y, held.start, half)
        splits["test"] = Split(held.x, held.y, held.start + half, held.count - half) if held.count >= 2 else None
    return (vocab if vocab is not None else largest + 1), layout, splits


@dataclass(frozen=True)
class Arrays(DataTask):
    """Your own labelled sequences from integer arrays (see the module docstring); accuracy on labelled positions."""

    name: ClassVar[str] = "arrays"
    path: str | None = None  # an .npz file or a folder of .npy files (`--data PATH`)
    vocab: int | None = None  # the vocabulary of inputs and targets; None: the largest id in the data plus one
    valid_fraction: float = 0.1
    split: str = "train"

    def __post_init__(self):
        self._check_split()
        if self.path is None:
            raise TaskError("task 'arrays' reads your arrays: give --data FILE.npz (or a folder of x.npy, y.npy)")
        if self.vocab is not None and (not isinstance(self.vocab, int) or isinstance(self.vocab, bool)):
            raise TaskError(f"task 'arrays': vocab must be an integer >= 1, got {self.vocab!r}")
        if self.vocab is not None and not 1 <= self.vocab <= MOST_IDS:
            raise TaskError(f"task 'arrays': vocab must be an integer in [1, 2**20], got {shown(self.vocab)}")

    def _loaded(self):
        try:
            return _array_splits(self.path, self.vocab, self.valid_fraction)
        except DataError as exc:
            raise TaskError(f"task 'arrays': {exc}") from exc

    def data(self) -> Split:
        """This split's rows."""
        return self._split_data(self._loaded()[2])

    @property
    def vocab_size(self) -> int:
        return self._loaded()[0]

    def max_seq_len(self) -> int:
        return self.data().x.shape[1]

    def memory_bits(self) -> float | None:
        """At most (the most targets a training row has) × log2(the distinct target values): the information in
        the targets still to come, which bounds what the memory must hold; None above MOST_BITS."""
        layout = self._loaded()[1]
        bits = layout.most_per_row * math.log2(max(layout.values, 1))
        return bits if bits <= MOST_BITS else None

    def crop(self, x: Tensor, y: Tensor, seq_len: int) -> tuple[Tensor, Tensor]:
        """Rows (B, T) cut to seq_len positions. A length past the last labelled position (a run's length) takes
        the first seq_len positions. A shorter one (the curriculum's) takes the labelled tail, CONTEXT positions
        before the first target to the last, after the row's first positions, where that tail fits in half of
        seq_len, so every target is kept (see the module docstring); else the first seq_len positions."""
        layout = self._loaded()[1]
        if seq_len > layout.last:
            return x[:, :seq_len], y[:, :seq_len]
        start, end = max(layout.first - CONTEXT, 0), layout.last + 1
        if 2 * (end - start) > seq_len:
            return x[:, :seq_len], y[:, :seq_len]
        head = seq_len - (end - start)
        return torch.cat([x[:, :head], x[:, start:end]], dim=1), torch.cat([y[:, :head], y[:, start:end]], dim=1)

    def check_full_length(self, seq_len: int) -> None:
        last = self._loaded()[1].last
        if seq_len <= last:
            raise TaskError(
                f"task 'arrays': {self.path} has targets up to t = {last}; task.seq_len {seq_len} would never "
                f"train them (use at least {last + 1})"
            )

    def documents_xy(self) -> list[tuple[Tensor, Tensor]]:
        split = self.data()
        x, y = split.rows(0, split.count)
        return list(zip(x, y))

    def windows(self, seq_len: int) -> Windows:
        """One sequence per row: its first seq_len positions (as in training)."""
        self.check_seq_len(seq_len)
        split = self.data()

        def read(a: int, b: int) -> tuple[Tensor, Tensor]:
            x, y = split.rows(a, b)
            return x[:, :seq_len], y[:, :seq_len]

        return Windows(split.count, read)

    def fingerprint(self) -> dict:
        split, digest = self.data(), hashlib.sha256()
        for start in range(0, split.count, _ROWS_PER_READ):
            x, y = split.rows(start, min(start + _ROWS_PER_READ, split.count))
            digest.update(x.numpy().tobytes())
            digest.update(y.numpy().tobytes())
        return {"split": self.split, "sequences": split.count, "sha256": digest.hexdigest()}

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        split = self.data()
        pick = torch.randint(0, split.count, (batch_size,), generator=generator).numpy()
        x, y = self.crop(*split.pick(pick), seq_len)
        return x.to(generator.device), y.to(generator.device)


def forget_loaded_arrays() -> None:
    """Drop the arrays this process has loaded, so the next use reads the files as they are now."""
    _array_splits.cache_clear()
