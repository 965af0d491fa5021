"""Label once, train many: a trained teacher's memories m_t stored on disk, so that any number of RNNs (other
cells, sizes, seeds) can be fit to them with no teacher in the loop (`smtrnn train --method labels`).

A label store is a directory of

    manifest.json             format/version, the teacher's config and its hash, task identity, T, Z, dtype,
                              the shards written so far (the manifest is the commit: a shard it lists is whole)
    shard-00000.safetensors   x, y (S, T) int32 and m (S, T, Z) float16 or float32, S <= shard_sequences

The sequences are the teacher run's own task (training split), drawn shard by shard from a generator seeded by the
label seed and the shard's index: a store is reproducible and a shard can be rewritten alone. Writing is resumable:
`write_labels` into a directory it began skips the shards the manifest lists and writes the rest. Every file is
written to a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from smtrnn.checkpoint import WEIGHTS_FILE, atomic_write, checkpoint_dir, load_model, read_config, read_json
from smtrnn.config import TEACHER_METHODS, RunConfig
from smtrnn.errors import CheckpointError, ConfigError
from smtrnn.tasks import make_task

FORMAT, VERSION = "smtrnn-labels", 1
MANIFEST = "manifest.json"
DTYPES = {"float16": torch.float16, "float32": torch.float32}
_SHARD_NAME = re.compile(r"shard-\d{5}\.safetensors")
_SEED_STRIDE = 1_000_003  # shard i of label seed s draws from seed s·stride + i: distinct streams for i < stride
# The fields that make two stores (or a store and a resumed write) the same labels.
_IDENTITY = ("teacher_hash", "task", "seq_len", "memory", "vocab_size", "sequences", "shard_sequences", "seed",
             "dtype")


def teacher_hash(run_dir: str | Path) -> str:
    """sha256 of the run's task, memory and teacher config and of its weights file: labels depend on nothing else."""
    cfg, _ = read_config(run_dir)
    digest = hashlib.sha256(json.dumps(_teacher_identity(cfg), sort_keys=True).encode())
    with open(checkpoint_dir(run_dir) / WEIGHTS_FILE, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _teacher_identity(cfg: RunConfig) -> dict[str, Any]:
    data = cfg.to_dict()
    return {name: data[name] for name in ("task", "memory", "teacher")}


def write_labels(teacher_run_dir: str | Path, out_dir: str | Path, sequences: int, batch_size: int = 64,
                 dtype: str = "float16", seed: int = 0, shard_sequences: int = 1024,
                 device: torch.device | str = "cpu", log: Callable[[str], None] | None = None) -> dict:
    """Encode `sequences` training sequences of the teacher run's task with its frozen teacher into `out_dir`;
    returns the manifest. Resumes a store this call's arguments began; any other store there is refused."""
    if sequences < 1 or batch_size < 1 or shard_sequences < 1:
        raise ConfigError(f"sequences, batch size and shard size must be >= 1, got {sequences}, {batch_size}, "
                          f"{shard_sequences}")
    if dtype not in DTYPES:
        raise ConfigError(f"unknown label dtype '{dtype}'; choose from: {', '.join(DTYPES)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f"output path {out_dir} exists and is not a directory")
    cfg, model = load_model(teacher_run_dir, device)
    if cfg.train.method not in TEACHER_METHODS or model.teacher is None:
        raise CheckpointError(f"{teacher_run_dir} is a {cfg.train.method} run: it has no teacher to label with")
    task = make_task(cfg.task.name, **cfg.task.params)
    manifest = {
        "format": FORMAT, "version": VERSION, "teacher_hash": teacher_hash(teacher_run_dir),
        "teacher_run": str(teacher_run_dir), "task": {"name": cfg.task.name, "params": cfg.task.params},
        "seq_len": cfg.task.seq_len, "memory": {"tokens": cfg.memory.tokens, "width": cfg.memory.width},
        "vocab_size": task.vocab_size, "sequences": sequences, "shard_sequences": shard_sequences, "seed": seed,
        "dtype": dtype, "config": cfg.to_dict(), "shards": [], "sequences_written": 0,
    }
    if (out_dir / MANIFEST).exists():
        previous = read_manifest(out_dir)
        _require_same(previous, manifest, f"{out_dir} holds other labels", "choose another --out")
        manifest["shards"] = [s for s in previous["shards"] if _shard_whole(out_dir, s)]
    out_dir.mkdir(parents=True, exist_ok=True)
    done = {s["file"] for s in manifest["shards"]}
    teacher = model.teacher.eval()
    for index, start in enumerate(range(0, sequences, shard_sequences)):
        name = f"shard-{index:05d}.safetensors"
        if name in done:
            continue
        count = min(shard_sequences, sequences - start)
        generator = torch.Generator().manual_seed(seed * _SEED_STRIDE + index)
        x, y = task.sample(count, cfg.task.seq_len, generator)
        with torch.no_grad():
            m = torch.cat([teacher.encode(xb.to(device)).to("cpu", DTYPES[dtype]) for xb in x.split(batch_size)])
        tensors = {"x": x.to(torch.int32), "y": y.to(torch.int32), "m": m.contiguous()}
        atomic_write(out_dir / name, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT}))
        manifest["shards"].append({"file": name, "sequences": count, "bytes": (out_dir / name).stat().st_size})
        _commit(out_dir, manifest)
        if log:
            log(f"{name}: {count} sequences ({manifest['sequences_written']} of {sequences})")
    _commit(out_dir, manifest)
    return manifest


def _commit(out_dir: Path, manifest: dict) -> None:
    manifest["shards"].sort(key=lambda s: s["file"])
    manifest["sequences_written"] = sum(s["sequences"] for s in manifest["shards"])
    size = manifest["memory"]["tokens"] * manifest["memory"]["width"]
    manifest["shapes"] = {"x": [manifest["sequences_written"], manifest["seq_len"]],
                          "m": [manifest["sequences_written"], manifest["seq_len"], size]}
    atomic_write(out_dir / MANIFEST, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n"))


def _shard_whole(out_dir: Path, shard: dict) -> bool:
    path = out_dir / shard["file"]
    return path.is_file() and path.stat().st_size == shard["bytes"]


def _require_same(ours: dict, theirs: dict, what: str, hint: str) -> None:
    for name in _IDENTITY:
        if ours.get(name) != theirs.get(name):
            mine, other = (_short(ours.get(name)), _short(theirs.get(name)))
            raise CheckpointError(f"{what}: {name} is {mine}, this call's is {other}; {hint}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text[:12] + "…" if isinstance(value, str) and len(value) > 12 else text


def read_manifest(labels_dir: str | Path) -> dict:
    """The manifest of a label store, checked for format and fields; a missing or corrupt one is a CheckpointError."""
    labels_dir = Path(labels_dir)
    path = labels_dir / MANIFEST
    if not labels_dir.is_dir():
        raise CheckpointError(f"label directory {labels_dir} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{labels_dir} is not a label store ({MANIFEST} missing)")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an smtrnn label manifest")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{path} has label format version {manifest.get('version')!r}; this smtrnn reads "
                              f"version {VERSION}")
    missing = [k for k in _IDENTITY + ("config", "shards") if k not in manifest]
    if missing or not isinstance(manifest["shards"], list) or manifest["dtype"] not in DTYPES:
        raise CheckpointError(f"{path} is corrupt: missing or invalid fields {missing or ['shards/dtype']}")
    return manifest


@dataclass
class LabelStore:
    """A complete label store in memory: x, y (N, T) long and m (N, T, Z) as stored; draws batches like a Task."""

    directory: Path
    manifest: dict
    x: Tensor
    y: Tensor
    m: Tensor

    def config(self) -> RunConfig:
        """The teacher run's config, the base of a run trained from these labels."""
        return RunConfig.from_dict(self.manifest["config"])

    def check(self, cfg: RunConfig, where: str = "--labels") -> None:
        """Refuse a run whose task, T or memory size differs from the labels' (a CheckpointError naming it)."""
        stored = {"task.name": self.manifest["task"]["name"], "task.params": self.manifest["task"]["params"],
                  "task.seq_len": self.manifest["seq_len"], "memory.tokens": self.manifest["memory"]["tokens"],
                  "memory.width": self.manifest["memory"]["width"]}
        ours = {"task.name": cfg.task.name, "task.params": cfg.task.params, "task.seq_len": cfg.task.seq_len,
                "memory.tokens": cfg.memory.tokens, "memory.width": cfg.memory.width}
        for name, value in stored.items():
            if ours[name] != value:
                raise CheckpointError(f"{where} {self.directory} holds labels for {name}={value!r}, this run "
                                      f"has {name}={ours[name]!r}")

    def sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """A batch of stored sequences drawn with replacement: x, y (B, T) long, m (B, T, Z) float32."""
        if seq_len != self.x.shape[1]:
            raise ConfigError(f"the labels hold sequences of length {self.x.shape[1]}, asked for {seq_len}")
        pick = torch.randint(0, self.x.shape[0], (batch_size,), generator=generator)
        return self.x[pick], self.y[pick], self.m[pick].float()


def load_labels(labels_dir: str | Path) -> LabelStore:
    """Read and check a complete label store (every shard the manifest promises, with the manifest's shapes)."""
    labels_dir = Path(labels_dir)
    manifest = read_manifest(labels_dir)
    if manifest.get("sequences_written") != manifest["sequences"]:
        raise CheckpointError(f"{labels_dir} is incomplete ({manifest.get('sequences_written')} of "
                              f"{manifest['sequences']} sequences); run smtrnn label again to finish it")
    size = manifest["memory"]["tokens"] * manifest["memory"]["width"]
    xs, ys, ms = [], [], []
    for shard in manifest["shards"]:
        if not _SHARD_NAME.fullmatch(str(shard.get("file"))):  # also keeps a crafted manifest inside the store
            raise CheckpointError(f"{labels_dir / MANIFEST} is corrupt: shard name {str(shard.get('file'))[:40]!r}")
        path = labels_dir / shard["file"]
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is missing or corrupt: {str(exc).splitlines()[0]}") from exc
        n, length = shard["sequences"], manifest["seq_len"]
        shapes = {"x": (n, length), "y": (n, length), "m": (n, length, size)}
        for key, shape in shapes.items():
            if key not in tensors or tuple(tensors[key].shape) != shape:
                got = tuple(tensors[key].shape) if key in tensors else "missing"
                raise CheckpointError(f"{path}: {key} has shape {got}, the manifest says {shape}")
        if tensors["m"].dtype != DTYPES[manifest["dtype"]]:
            raise CheckpointError(f"{path}: m is {tensors['m'].dtype}, the manifest says {manifest['dtype']}")
        xs.append(tensors["x"].long())
        ys.append(tensors["y"].long())
        ms.append(tensors["m"])
    return LabelStore(labels_dir, manifest, torch.cat(xs), torch.cat(ys), torch.cat(ms))
