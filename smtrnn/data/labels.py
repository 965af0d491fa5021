"""Label once, train many: a trained teacher's memories m_t stored on disk, so that any number of RNNs (other
cells, sizes, seeds) can be fit to them with no teacher in the loop (`smtrnn train --method labels`).

A label store is a directory of

    manifest.json             format/version, the teacher's config and its hash (and its run's `cell_code`, for a
                              user's cell), what was labelled, T, Z, dtype, the shards written so far with their
                              sizes and sha256 (the manifest is the commit: a shard it lists is whole)
    shard-00000.safetensors   x, y (S, T) int32 and m (S, T, Z) float16 or float32, S <= shard_sequences

Two sources of sequences:
- `write_labels` (source "sampled"): N sequences of the teacher run's own task (training split), drawn shard by shard
  from a generator seeded by the label seed and the shard's index, so a store is reproducible and a shard can be
  rewritten alone. Works for every task, synthetic ones included.
- `write_dataset_labels` (source "dataset", `smtrnn label --data`): every position of a text or pixels split — its
  own data or another file of the same vocabulary — cut into windows of T (`Task.windows`); the manifest names the
  data by path, size and sha256.

Writing is resumable: a call into a directory the same arguments began skips the shards the manifest lists and
writes the rest (a listed shard whose size or sha256 no longer matches is written again); any other store there is
refused naming the field that differs, and so is a folder that holds anything but a store. Every file is written to
a temporary name and renamed into place; memories that are not finite are never written. Reading (`load_labels`)
checks each shard's sha256 and that its memories are finite, streaming, then memory-maps the shards: a batch reads
only its rows, so a store may be far larger than memory.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from smtrnn.checkpoint import (
    WEIGHTS_FILE,
    atomic_write,
    checkpoint_dir,
    load_model,
    read_config,
    read_json,
    regular_file,
    safetensors_file,
)
from smtrnn.config import TEACHER_METHODS, RunConfig, shown, size_text
from smtrnn.data.real import DATA_TASKS, forget_loaded
from smtrnn.data.tasks import Task, make_task
from smtrnn.errors import CheckpointError, ConfigError, DataError

FORMAT, VERSION = "smtrnn-labels", 3  # 3: each shard's sha256 in the manifest
MANIFEST = "manifest.json"
DTYPES = {"float16": torch.float16, "float32": torch.float32}
LABEL_SPLITS = ("train", "valid")  # the test split is for final numbers, never for labels
_NUMPY = {"I32": np.int32, "F16": np.float16, "F32": np.float32}
_SHARD_NAME = re.compile(r"shard-\d{5}\.safetensors")
_SEED_STRIDE = 1_000_003  # shard i of label seed s draws from seed s·stride + i: distinct streams for i < stride
# The fields that make two stores (or a store and a resumed write) the same labels.
_IDENTITY = (
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


def teacher_hash(run_dir: str | Path) -> str:
    """sha256 of the run's task, memory and teacher config and of its teacher's tensors (names, dtypes, shapes,
    bytes): labels depend on nothing else, so retraining only the RNN keeps the hash."""
    cfg, _ = read_config(run_dir, open_data=False)
    data = cfg.to_dict()
    digest = hashlib.sha256(json.dumps({k: data[k] for k in ("task", "memory", "teacher")}, sort_keys=True).encode())
    path = checkpoint_dir(run_dir) / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="pt") as weights:
            for name in sorted(k for k in weights.keys() if k.startswith("teacher.")):
                tensor = weights.get_tensor(name)
                digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is missing or corrupt: {str(exc).splitlines()[0]}") from exc
    return digest.hexdigest()


def write_labels(
    teacher_run_dir: str | Path,
    out_dir: str | Path,
    sequences: int,
    batch_size: int = 64,
    dtype: str = "float16",
    seed: int = 0,
    shard_sequences: int = 1024,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
    trust_cell_code: bool = False,
) -> dict:
    """Encode `sequences` training sequences of the teacher run's task with its frozen teacher into `out_dir`;
    returns the manifest. Resumes a store this call's arguments began; any other store there is refused. A run whose
    cell is a user's code is loaded only with `trust_cell_code` (`checkpoint.load_model`)."""
    _check_arguments(out_dir, sequences, batch_size, shard_sequences, dtype)
    cfg, teacher, vocab = _load_teacher(teacher_run_dir, device, trust_cell_code)
    task = make_task(cfg.task.name, **cfg.task.params)

    def draw(index: int, start: int, count: int) -> tuple[Tensor, Tensor]:
        return task.sample(count, cfg.task.seq_len, torch.Generator().manual_seed(seed * _SEED_STRIDE + index))

    manifest = _manifest(teacher_run_dir, cfg, vocab, "sampled", None, sequences, shard_sequences, seed, dtype)
    return _write(Path(out_dir), manifest, teacher, draw, batch_size, device, log)


def write_dataset_labels(
    teacher_run_dir: str | Path,
    out_dir: str | Path,
    data: str | None = None,
    split: str = "train",
    batch_size: int = 64,
    dtype: str = "float16",
    shard_sequences: int = 1024,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
    trust_cell_code: bool = False,
) -> dict:
    """Encode every position of a text or pixels split with the run's frozen teacher into `out_dir`, in windows of
    the run's T (`Task.windows`); `data` replaces the run's data path (None: the run's own data). Returns the
    manifest; resumes, and takes `trust_cell_code`, like `write_labels`."""
    _check_arguments(out_dir, 1, batch_size, shard_sequences, dtype)
    if split == "test":  # memories to train on are never taken from the data the final numbers are read on
        raise ConfigError("--split test is for final numbers only; label the train or valid split")
    if split not in LABEL_SPLITS:
        raise ConfigError(f"unknown split '{split}'; choose from: {', '.join(LABEL_SPLITS)}")
    cfg, teacher, vocab = _load_teacher(teacher_run_dir, device, trust_cell_code)
    if cfg.task.name not in DATA_TASKS:
        raise ConfigError(
            f"--data labels a dataset, but {teacher_run_dir} was trained on the generated task "
            f"'{cfg.task.name}' (use --sequences)"
        )
    if data is not None:  # stored absolute, so runs trained from the store find the data from any directory
        named = data.startswith(("hf:", "builtin:"))  # a source by name, not a path
        cfg.task.params = cfg.task.params | {"path": data if named else str(Path(data).resolve())}
    forget_loaded()  # the fingerprint and the windows must be of the files as they are now
    task: Task = make_task(cfg.task.name, **cfg.task.params)
    if task.vocab_size != vocab:
        raise DataError(f"{data} has a vocabulary of {task.vocab_size}, the teacher's is {vocab}")
    task = task if split == "train" else task.held_out()
    windows = task.windows(cfg.task.seq_len)
    identity = {"path": cfg.task.params.get("path")} | task.fingerprint()
    manifest = _manifest(teacher_run_dir, cfg, vocab, "dataset", identity, windows.count, shard_sequences, None, dtype)
    return _write(
        Path(out_dir),
        manifest,
        teacher,
        lambda index, start, count: windows.read(start, start + count),
        batch_size,
        device,
        log,
    )


def _check_arguments(out_dir: str | Path, sequences: int, batch_size: int, shard_sequences: int, dtype: str) -> None:
    if sequences < 1 or batch_size < 1 or shard_sequences < 1:
        raise ConfigError(
            f"sequences, batch size and shard size must be >= 1, got {sequences}, {batch_size}, {shard_sequences}"
        )
    if dtype not in DTYPES:
        raise ConfigError(f"unknown label dtype '{dtype}'; choose from: {', '.join(DTYPES)}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise CheckpointError(f"output path {out_dir} exists and is not a directory")


def _load_teacher(
    run_dir: str | Path, device: torch.device | str, trust_cell_code: bool
) -> tuple[RunConfig, torch.nn.Module, int]:
    """(config, the frozen teacher in eval mode, its vocabulary) of a trained run; a run without one is refused."""
    cfg, model = load_model(run_dir, device, trust_cell_code=trust_cell_code)
    if cfg.train.method not in TEACHER_METHODS or model.teacher is None:
        raise CheckpointError(f"{run_dir} is a {cfg.train.method} run: it has no teacher to label with")
    return cfg, model.teacher.eval(), model.vocab_size


def _manifest(
    run_dir: str | Path,
    cfg: RunConfig,
    vocab: int,
    source: str,
    data: dict | None,
    sequences: int,
    shard_sequences: int,
    seed: int | None,
    dtype: str,
) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "source": source,
        "teacher_hash": teacher_hash(run_dir),
        "teacher_run": str(run_dir),
        "task": {"name": cfg.task.name, "params": cfg.task.params},
        "data": data,
        "seq_len": cfg.task.seq_len,
        "memory": {"tokens": cfg.memory.tokens, "width": cfg.memory.width},
        "vocab_size": vocab,
        "sequences": sequences,
        "shard_sequences": shard_sequences,
        "seed": seed,
        "dtype": dtype,
        "config": cfg.to_dict(),
        "shards": [],
        "sequences_written": 0,
        # the run's cell, if a user's: `train --labels` builds it from "config", so it is trusted as a run's is
        "cell_code": read_config(run_dir, open_data=False)[1].get("cell_code"),
    }


def _write(
    out_dir: Path,
    manifest: dict,
    teacher: torch.nn.Module,
    draw: Callable[[int, int, int], tuple],
    batch_size: int,
    device: torch.device | str,
    log: Callable[[str], None] | None,
) -> dict:
    """Write (or finish) the store: shard i holds sequences draw(i, start, count) and their teacher memories."""
    _require_store_folder(out_dir)
    if (out_dir / MANIFEST).exists():
        previous = read_manifest(out_dir)
        if previous["version"] != VERSION:
            raise CheckpointError(
                f"{out_dir} holds labels of format version {previous['version']}; this smtrnn "
                f"writes version {VERSION}: choose another --out"
            )
        _require_same(previous, manifest, f"{out_dir} holds other labels", "choose another --out")
        manifest["shards"] = [s for s in previous["shards"] if _shard_whole(out_dir, s)]
    _check_disk_space(out_dir, manifest)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = {s["file"] for s in manifest["shards"]}
    total, per_shard = manifest["sequences"], manifest["shard_sequences"]
    for index, start in enumerate(range(0, total, per_shard)):
        name = f"shard-{index:05d}.safetensors"
        if name in done:
            continue
        count = min(per_shard, total - start)
        x, y = draw(index, start, count)
        with torch.no_grad():
            m = torch.cat(
                [teacher.encode(xb.to(device)).to("cpu", DTYPES[manifest["dtype"]]) for xb in x.split(batch_size)]
            )
        if not m.isfinite().all():
            raise CheckpointError(f"the teacher wrote non-finite memories for {name}: its run is damaged; nothing kept")
        tensors = {"x": x.to(torch.int32), "y": y.to(torch.int32), "m": m.contiguous()}
        atomic_write(out_dir / name, safetensors_file(tensors, FORMAT))
        path = out_dir / name
        manifest["shards"].append(
            {"file": name, "sequences": count, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
        )
        _commit(out_dir, manifest)
        if log:
            log(f"{name}: {count} sequences ({manifest['sequences_written']} of {total})")
    _commit(out_dir, manifest)
    return manifest


def store_bytes(manifest: dict, sequences: int) -> int:
    """About how many bytes `sequences` sequences of a store take: x and y (T,) int32 and m (T, Z) in its dtype each
    (the shard headers and the manifest add a few KB)."""
    size = manifest["memory"]["tokens"] * manifest["memory"]["width"]
    return sequences * manifest["seq_len"] * (2 * 4 + size * DTYPES[manifest["dtype"]].itemsize)


def _check_disk_space(out_dir: Path, manifest: dict) -> None:
    """Refuse, before anything is written, a store the disk cannot hold: found out by a full disk, it would have
    filled the disk first (a trillion sequences are petabytes)."""
    left = manifest["sequences"] - sum(s["sequences"] for s in manifest["shards"])
    need = store_bytes(manifest, left)
    folder = out_dir.absolute()
    while not folder.exists():  # the folder the store will be created in
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need > free:
        size = manifest["memory"]["tokens"] * manifest["memory"]["width"]
        raise CheckpointError(
            f"--out {out_dir}: {shown(left)} sequences of T={manifest['seq_len']}, Z={size} in "
            f"{manifest['dtype']} need about {size_text(need)} of disk; {folder} has "
            f"{size_text(free)} free"
        )


def _commit(out_dir: Path, manifest: dict) -> None:
    manifest["shards"].sort(key=lambda s: s["file"])
    manifest["sequences_written"] = sum(s["sequences"] for s in manifest["shards"])
    size = manifest["memory"]["tokens"] * manifest["memory"]["width"]
    manifest["shapes"] = {
        "x": [manifest["sequences_written"], manifest["seq_len"]],
        "m": [manifest["sequences_written"], manifest["seq_len"], size],
    }
    atomic_write(out_dir / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))


def _shard_whole(out_dir: Path, shard: dict) -> bool:
    path = out_dir / shard["file"]
    return path.is_file() and path.stat().st_size == shard["bytes"] and file_sha256(path) == shard.get("sha256")


_HASH_BLOCK = 1 << 22  # bytes read at a time when hashing or checking a shard


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _require_store_folder(out_dir: Path) -> None:
    """Refuse an --out that holds anything but a label store (a run, someone's files): a store is written only into
    a new or empty folder or its own."""
    if not out_dir.is_dir():
        return
    foreign = [
        p.name
        for p in out_dir.iterdir()
        if p.name != MANIFEST and not _SHARD_NAME.fullmatch(p.name) and not p.name.endswith(".tmp")
    ]
    if foreign:
        raise CheckpointError(
            f"--out {out_dir} holds {foreign[0]!r}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}, "
            "not a label store: choose a new or empty folder"
        )


def _require_same(ours: dict, theirs: dict, what: str, hint: str) -> None:
    for name in _IDENTITY:
        if ours.get(name) != theirs.get(name):
            mine, other = (_short(ours.get(name)), _short(theirs.get(name)))
            raise CheckpointError(f"{what}: {name} is {mine}, this call's is {other}; {hint}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text[:40] + "…" if len(text) > 40 else text


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
    missing = [k for k in _IDENTITY + ("config", "shards") if k not in manifest]
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
        if not _SHARD_NAME.fullmatch(str(shard.get("file"))):  # also keeps a crafted manifest inside the store
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
