"""What the data tasks (text, pixels, arrays) share: train, validation and test splits of finite data, a whole split
cut into sequences (`Windows`, for labelling a dataset), and a fingerprint of a split's contents."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from smtrnn.data.tasks import Task, TaskError

SPLITS = ("train", "valid", "test")
_HASH_CHUNK = 1 << 22  # tokens hashed per step: a memory-mapped corpus is never read whole


@dataclass(frozen=True)
class Windows:
    """A whole split as `count` sequences of length T covering every position; `read(a, b)` -> x, y (b - a, T) long
    for sequences a..b-1."""

    count: int
    read: Callable[[int, int], tuple[Tensor, Tensor]]


def sha256_of(values: Tensor) -> str:
    """Hex digest of a 1-D integer tensor's values (as int64, so the storage dtype does not matter)."""
    digest = hashlib.sha256()
    for start in range(0, values.numel(), _HASH_CHUNK):
        digest.update(values[start : start + _HASH_CHUNK].to(torch.int64).numpy().tobytes())
    return digest.hexdigest()


class DataTask(Task):
    """A task over finite data with train, validation and test splits (the field `split` picks one)."""

    split: str
    has_splits: ClassVar[bool] = True

    def _check_split(self) -> None:
        if self.path is not None and not isinstance(self.path, str):
            raise TaskError(f"task '{self.name}': path must be a string, got {self.path!r}")
        if not isinstance(self.split, str) or self.split not in SPLITS:
            raise TaskError(f"task '{self.name}': split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if not isinstance(self.valid_fraction, (int, float)) or isinstance(self.valid_fraction, bool):
            raise TaskError(
                f"task '{self.name}': valid_fraction must be a number in (0, 1), got {self.valid_fraction!r}"
            )
        if not 0.0 < self.valid_fraction < 1.0:
            raise TaskError(f"task '{self.name}': valid_fraction must lie in (0, 1), got {self.valid_fraction}")

    def held_out(self, split: str = "valid") -> Task:
        super().held_out(split)  # the split's name is checked there
        return dataclasses.replace(self, split=split)

    def _split_data(self, splits: dict):
        """This split's data; the test split of a held-out part too small to halve is refused in one line."""
        if splits[self.split] is None:
            raise TaskError(
                f"task '{self.name}': the held-out part is too small to give a test split besides the "
                "validation split; hold out more (task.params valid_fraction)"
            )
        return splits[self.split]

    def documents_xy(self) -> list[tuple[Tensor, Tensor]]:
        """This split's whole documents (text) or images (pixels) as (x, y) pairs of 1-D long tensors."""
        raise NotImplementedError

    def min_seq_len(self) -> int:
        return 2

    def windows(self, seq_len: int) -> Windows:
        """This split cut into sequences of length seq_len that together hold every position once or more."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """What identifies this split's data: its split, size and a sha256 of its contents."""
        raise NotImplementedError
