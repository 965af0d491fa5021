"""Label once, train many: a trained teacher's memories m_t stored on disk, so that any number of RNNs (other
cells, sizes, seeds) can be fit to them with no teacher in the loop (`smtrnn train --method labels`).

A label store is a directory of

    manifest.json             format/version, the teacher's config and its hash (and its run's `cell_code`, for a
                              user's cell), what was labelled, T, Z, dtype, the shards written so far with their
                              sizes and sha256 (the manifest is the commit: a shard it lists is whole)
    shard-00000.safetensors   x, y (S, T) int32 and m (S, T, Z) float16 or float32, S <= shard_sequences

Writing a store (`write_labels`, `write_dataset_labels`) is `smtrnn.labelling`, which needs a trained run; this
module is the format and its reading, and imports nothing above the data package. Reading (`load_labels`) checks
each shard's sha256 and that its memories are finite, streaming, then memory-maps the shards: a batch reads only its
rows, so a store may be far larger than memory.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from smtrnn.config import RunConfig, shown
from smtrnn.errors import CheckpointError, ConfigError
from smtrnn.files import read_json, regular_file

FORMAT, VERSION = "smtrnn-labels", 3  # 3: each shard's sha256 in the manifest
MANIFEST = "manifest.json"
DTYPES = {"float16": torch.float16, "float32": torch.float32}
LABEL_SPLITS = ("train", "valid")  # the test split is for final numbers, never for labels
_NUMPY = {"I32": np.int32, "F16": np.float16, "F32": np.float32}
SHARD_NAME = re.compile(r"shard-\d{5}\.safetensors")
# The fields that make two stores (or a store and a resumed write) the same labels.
IDENTITY = (
    "source",
    "teacher_hash",
    "task",
    "data",
    "seq_len",
    "memory",
    "vocab_size",
    "sequences",
    "shard_sequences",
    "seed",
    "dtype",
)


def store_bytes(manifest: dict, sequences: int) -> int:
    """About how many bytes `sequences` sequences of a store take: x and y (T,) int32 and m (T, Z) in its dtype each
    (the shard headers and the manifest add a few KB)."""
    size = manifest["memory"]["tokens"] * manifest["memory"]["width"]
    return sequences * manifest["seq_len"] * (2 * 4 + size * DTYPES[manifest["dtype"]].itemsize)


_HASH_BLOCK = 1 << 22  # bytes read at a time when hashing or checking a shard


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(labels_dir: str | Path) -> dict:
    """The manifest of a label store, checked for format and fields; a missing or corrupt one is a CheckpointError."""
    labels_dir = Path(labels_dir)
    path = labels_dir / MANIFEST
    if not labels_dir.is_dir():
        raise CheckpointError(f"label directory {labels_dir} does not exist")
    if not regular_file(path):
        raise CheckpointError(f"{labels_dir} is not a label store ({MANIFEST} missing)")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an smtrnn label manifest")
    if manifest.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has label format version {shown(manifest.get('version'))}; this smtrnn reads version "
            f"{VERSION}: label again"
        )
    missing = [k for k in IDENTITY + ("config", "shards") if k not in manifest]
    if missing or not isinstance(manifest["shards"], list) or manifest["dtype"] not in DTYPES:
        raise CheckpointError(f"{path} is corrupt: missing or invalid fields {missing or ['shards/dtype']}")
    wrong = _wrong_types(manifest)
    if wrong:
        raise CheckpointError(f"{path} is corrupt: {wrong}")
    return manifest


def _wrong_types(manifest: dict) -> str | None:
    """The first manifest field whose type or range is not what smtrnn writes, or None."""

    def count(value, minimum=0):
        return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

    checks = [
        ("sequences", count(manifest["sequences"])),
        ("shard_sequences", count(manifest.get("shard_sequences"), 1)),
        ("seq_len", count(manifest["seq_len"], 1)),
        ("vocab_size", count(manifest["vocab_size"], 1)),
        ("config", isinstance(manifest["config"], dict)),
        (
            "memory",
            isinstance(manifest["memory"], dict)
            and all(count(manifest["memory"].get(k), 1) for k in ("tokens", "width")),
        ),
        (
            "task",
            isinstance(manifest["task"], dict)
            and isinstance(manifest["task"].get("name"), str)
            and isinstance(manifest["task"].get("params", {}), dict),
        ),
        (
            "shards",
            all(
                isinstance(shard, dict)
                and isinstance(shard.get("file"), str)
                and count(shard.get("sequences"))
                and isinstance(shard.get("sha256"), str)
                for shard in manifest["shards"]
            ),
        ),
    ]
    bad = [name for name, ok in checks if not ok]
    return f"field {bad[0]!r} has the wrong type or range" if bad else None


@dataclass
class _Shard:
    """One shard's arrays, memory-mapped (read-only views of one map of the file)."""

    x: np.ndarray  # (S, T) int32
    y: np.ndarray  # (S, T) int32
    m: np.ndarray  # (S, T, Z) float16 or float32


class LabelStore:
    """A complete label store, memory-mapped: `read(a, b)` and `rows(index)` return stored sequences with their
    memories, `sample` draws batches like a Task. Only the rows asked for are read from disk."""

    def __init__(self, directory: Path, manifest: dict, shards: list[_Shard]):
        self.directory, self.manifest, self._shards = directory, manifest, shards
        self._ends = torch.tensor([len(s.x) for s in shards]).cumsum(0)

    def __len__(self) -> int:
        return int(self._ends[-1])

    @property
    def seq_len(self) -> int:
        return self.manifest["seq_len"]

    def config(self) -> RunConfig:
        """The teacher run's config (with the labelled data's path), the base of a run trained from these labels."""
        return RunConfig.from_dict(self.manifest["config"])

    def check(self, cfg: RunConfig, where: str = "--labels") -> None:
        """Refuse a run whose task, T or memory size differs from the labels' (a CheckpointError naming it)."""
        stored = {
            "task.name": self.manifest["task"]["name"],
            "task.params": self.manifest["task"]["params"],
            "task.seq_len": self.manifest["seq_len"],
            "memory.tokens": self.manifest["memory"]["tokens"],
            "memory.width": self.manifest["memory"]["width"],
        }
        ours = {
            "task.name": cfg.task.name,
            "task.params": cfg.task.params,
            "task.seq_len": cfg.task.seq_len,
            "memory.tokens": cfg.memory.tokens,
            "memory.width": cfg.memory.width,
        }
        for name, value in stored.items():
            if ours[name] != value:
                raise CheckpointError(
                    f"{where} {self.directory} holds labels for {name}={value!r}, this run has {name}={ours[name]!r}"
                )

    def rows(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Stored sequences `index` (B,) -> x, y (B, T) long and m (B, T, Z) as stored, in the order asked."""
        index = index.to(torch.long)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise IndexError(f"label rows must lie in [0, {len(self)}), got {index.min()}..{index.max()}")
        size = self.manifest["memory"]["tokens"] * self.manifest["memory"]["width"]
        x = torch.empty(len(index), self.seq_len, dtype=torch.int32)
        y = torch.empty_like(x)
        m = torch.empty(len(index), self.seq_len, size, dtype=DTYPES[self.manifest["dtype"]])
        shard_of = torch.bucketize(index, self._ends, right=True)
        for s in shard_of.unique().tolist():  # one fancy-indexed read per shard touched
            picked = (shard_of == s).nonzero().flatten()
            local = (index[picked] - (int(self._ends[s - 1]) if s else 0)).numpy()
            shard = self._shards[s]
            x[picked], y[picked], m[picked] = (torch.from_numpy(a[local]) for a in (shard.x, shard.y, shard.m))
        return x.long(), y.long(), m

    def read(self, start: int, stop: int) -> tuple[Tensor, Tensor, Tensor]:
        """Stored sequences start..stop-1 (see `rows`)."""
        return self.rows(torch.arange(start, stop))

    def sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """A batch of stored sequences drawn with replacement: x, y (B, T) long, m (B, T, Z) float32."""
        if seq_len != self.seq_len:
            raise ConfigError(f"the labels hold sequences of length {self.seq_len}, asked for {seq_len}")
        x, y, m = self.rows(torch.randint(0, len(self), (batch_size,), generator=generator))
        return x, y, m.float()


def load_labels(labels_dir: str | Path) -> LabelStore:
    """Open and check a complete label store (every shard the manifest promises, whole, with the manifest's shapes
    and dtypes); the shards are memory-mapped, not read."""
    labels_dir = Path(labels_dir)
    manifest = read_manifest(labels_dir)
    if manifest.get("sequences_written") != manifest["sequences"]:
        raise CheckpointError(
            f"{labels_dir} is incomplete ({manifest.get('sequences_written')} of "
            f"{manifest['sequences']} sequences); run smtrnn label again to finish it"
        )
    size = manifest["memory"]["tokens"] * manifest["memory"]["width"]
    shards = []
    for shard in manifest["shards"]:
        if not SHARD_NAME.fullmatch(str(shard.get("file"))):  # also keeps a crafted manifest inside the store
            raise CheckpointError(f"{labels_dir / MANIFEST} is corrupt: shard name {str(shard.get('file'))[:40]!r}")
        n, length = shard["sequences"], manifest["seq_len"]
        expected = {
            "x": ((n, length), "I32"),
            "y": ((n, length), "I32"),
            "m": ((n, length, size), "F16" if manifest["dtype"] == "float16" else "F32"),
        }
        path = labels_dir / shard["file"]
        shards.append(_map_shard(path, expected))
        if file_sha256(path) != shard.get("sha256"):
            raise CheckpointError(f"{path} is corrupt: its sha256 is not the manifest's; label again")
        _check_token_ids(path, shards[-1], manifest["vocab_size"])
        _check_finite(path, shards[-1])
    if not shards:
        raise CheckpointError(f"{labels_dir / MANIFEST} is corrupt: it lists no shards")
    return LabelStore(labels_dir, manifest, shards)


def _check_token_ids(path: Path, shard: _Shard, vocab_size: int) -> None:
    """Inputs must lie in [0, V) and targets in [0, V) or be -1: a tampered shard is refused when opened, not
    when an embedding lookup fails mid-training."""
    if shard.x.size and (int(shard.x.min()) < 0 or int(shard.x.max()) >= vocab_size):
        raise CheckpointError(f"{path}: input token ids outside [0, {vocab_size}) (the store's vocabulary)")
    if shard.y.size and (int(shard.y.min()) < -1 or int(shard.y.max()) >= vocab_size):
        raise CheckpointError(f"{path}: target ids outside [-1, {vocab_size}) (the store's vocabulary)")


def _check_finite(path: Path, shard: _Shard) -> None:
    """Every stored memory must be finite: a NaN shard would stop training at its first step, unnamed."""
    rows = max(1, _HASH_BLOCK // max(shard.m[0].nbytes, 1)) if len(shard.m) else 1
    for start in range(0, len(shard.m), rows):
        if not np.isfinite(shard.m[start : start + rows]).all():
            raise CheckpointError(f"{path} holds memories that are not finite (from sequence {start}); label again")


def _map_shard(path: Path, expected: dict[str, tuple[tuple[int, ...], str]]) -> _Shard:
    """Check a shard with safetensors' own reader (a truncated or corrupt file is refused) and against the
    manifest's shapes and dtypes, then memory-map its arrays."""
    regular_file(path)  # a FIFO is refused unopened: opening it would wait for a writer
    try:
        with safe_open(str(path), framework="pt"):
            pass  # validates the header and that the tensors cover the file exactly
        with open(path, "rb") as handle:
            length = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(length))
        whole = np.memmap(path, dtype=np.uint8, mode="r")
    except (SafetensorError, OSError, ValueError, struct.error, RecursionError) as exc:
        raise CheckpointError(f"{path} is missing or corrupt: {str(exc).splitlines()[0]}") from exc
    arrays = {}
    for key, (shape, dtype) in expected.items():
        entry = header.get(key)
        got = (tuple(entry["shape"]), entry["dtype"]) if isinstance(entry, dict) else ("missing", "")
        if got != (shape, dtype):
            raise CheckpointError(f"{path}: {key} has shape {got[0]} {got[1]}, the manifest says {shape} {dtype}")
        begin, end = (8 + length + offset for offset in entry["data_offsets"])
        arrays[key] = whole[begin:end].view(_NUMPY[dtype]).reshape(shape)
    return _Shard(**arrays)
