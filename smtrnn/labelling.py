"""Label once: write a trained teacher's memories into a label store (`smtrnn label`). The store's format and its
reading live in `smtrnn.data.labels`; writing needs the trained run (`smtrnn.checkpoint`), so it lives here, above
the data package.

Two sources of sequences:
- `write_labels` (source "sampled"): N sequences of the teacher run's own task (training split), drawn shard by shard
  from a generator seeded by the label seed and the shard's index, so a store is reproducible and a shard can be
  rewritten alone. Works for every task, synthetic ones included.
- `write_dataset_labels` (source "dataset", `smtrnn label --data`): every position of a text or pixels split — its
  own data or another file of the same vocabulary — cut into windows of T (`Task.windows`); the manifest names the
  data by path, size and sha256.

Writing is resumable: a call into a directory the same arguments began skips the shards the manifest lists (whole,
their sha256 unchanged) and writes the rest; any other store there is refused naming the field that differs, and so
is a folder that holds anything but a store. Every file is written to a temporary name and renamed into place;
memories that are not finite are never written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from smtrnn.checkpoint import WEIGHTS_FILE, checkpoint_dir, load_model, read_config
from smtrnn.config import TEACHER_METHODS, RunConfig, shown, size_text
from smtrnn.data.identity import absolute_source
from smtrnn.data.labels import (
    DTYPES,
    FORMAT,
    IDENTITY,
    LABEL_SPLITS,
    MANIFEST,
    SHARD_NAME,
    VERSION,
    file_sha256,
    read_manifest,
    store_bytes,
)
from smtrnn.data.real import DATA_TASKS, forget_loaded
from smtrnn.data.tasks import Task, make_task
from smtrnn.errors import CheckpointError, ConfigError, DataError
from smtrnn.files import atomic_write, safetensors_file

SEED_STRIDE = 1_000_003  # shard i of label seed s draws from seed s·stride + i: distinct streams for i < stride


def teacher_hash(run_dir: str | Path) -> str:
    """sha256 of the run's task, memory and teacher config and of its teacher's tensors (names, dtypes, shapes,
    bytes): labels depend on nothing else, so retraining only the RNN keeps the hash."""
    cfg, _ = read_config(run_dir)
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
        return task.sample(count, cfg.task.seq_len, torch.Generator().manual_seed(seed * SEED_STRIDE + index))

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
        cfg.task.params = cfg.task.params | {"path": absolute_source(data)}
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
        "cell_code": read_config(run_dir)[1].get("cell_code"),
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


def _require_store_folder(out_dir: Path) -> None:
    """Refuse an --out that holds anything but a label store (a run, someone's files): a store is written only into
    a new or empty folder or its own."""
    if not out_dir.is_dir():
        return
    foreign = [
        p.name
        for p in out_dir.iterdir()
        if p.name != MANIFEST and not SHARD_NAME.fullmatch(p.name) and not p.name.endswith(".tmp")
    ]
    if foreign:
        raise CheckpointError(
            f"--out {out_dir} holds {foreign[0]!r}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}, "
            "not a label store: choose a new or empty folder"
        )


def _require_same(ours: dict, theirs: dict, what: str, hint: str) -> None:
    for name in IDENTITY:
        if ours.get(name) != theirs.get(name):
            mine, other = (_short(ours.get(name)), _short(theirs.get(name)))
            raise CheckpointError(f"{what}: {name} is {mine}, this call's is {other}; {hint}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text[:40] + "…" if len(text) > 40 else text
