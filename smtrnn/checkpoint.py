"""Checkpoints as plain data: a run directory holds

    config.json          the full RunConfig, the vocabulary size and the step (readable, editable)
    model.safetensors    the weights
    trainer_state.pt     optimizer state, step, elapsed time and RNG states: tensors and plain containers only,
                         read back with `torch.load(weights_only=True)`, so no code is ever unpickled
    metrics.jsonl        the training log

Every file is written to a temporary name, flushed to disk and renamed, so a crash mid-save leaves the previous
checkpoint whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from smtrnn.config import RunConfig, validate
from smtrnn.errors import CheckpointError, ConfigError
from smtrnn.model import Model
from smtrnn.tasks import make_task

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.jsonl"
FORMAT = "smtrnn-checkpoint-1"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def has_checkpoint(run_dir: str | Path) -> bool:
    return (Path(run_dir) / WEIGHTS_FILE).exists() or (Path(run_dir) / CONFIG_FILE).exists()


def save_checkpoint(run_dir: str | Path, cfg: RunConfig, model: Model, trainer_state: dict[str, Any]) -> None:
    """Write weights, trainer state and config (config last: a run directory is complete once it exists)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    _atomic_write(run_dir / WEIGHTS_FILE, lambda p: save_file(weights, str(p), metadata={"format": FORMAT}))
    _atomic_write(run_dir / STATE_FILE, lambda p: torch.save(trainer_state, p))
    meta = {"format": FORMAT, "vocab_size": model.vocab_size, "step": trainer_state["step"], "config": cfg.to_dict()}
    _atomic_write(run_dir / CONFIG_FILE, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))


def read_config(run_dir: str | Path) -> tuple[RunConfig, dict[str, Any]]:
    """Parse and validate a run directory's config.json -> (config, metadata)."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{run_dir} holds no checkpoint ({CONFIG_FILE} missing)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path} is not an smtrnn checkpoint config")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path}: 'config' must be a mapping")
    vocab = meta.get("vocab_size")
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1:
        raise CheckpointError(f"{path}: 'vocab_size' must be a positive integer, got {vocab!r}")
    try:
        cfg = RunConfig.from_dict(meta["config"])
        validate(cfg)
    except (ConfigError, ValueError) as exc:
        raise CheckpointError(f"{path} holds an invalid config: {exc}") from exc
    task_vocab = make_task(cfg.task.name, **cfg.task.params).vocab_size
    if task_vocab != vocab:
        raise CheckpointError(f"{path}: vocab_size {vocab} does not match task '{cfg.task.name}' ({task_vocab})")
    return cfg, meta


def load_weights(run_dir: str | Path, model: Model) -> None:
    """Load model.safetensors into `model`; a missing, corrupt or mismatched file is a CheckpointError."""
    path = Path(run_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} holds no weights ({WEIGHTS_FILE} missing)")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt: {str(exc).splitlines()[0]}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, tensor in weights.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(f"{path} does not match its config: {name} has shape {tuple(tensor.shape)}, "
                                  f"expected {tuple(expected[name].shape)}")
    model.load_state_dict(weights)


def load_trainer_state(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} holds no trainer state ({STATE_FILE} missing)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code; any failure is a corrupt file to the user
        raise CheckpointError(f"{path} is corrupt or unsafe: {str(exc).splitlines()[0]}") from exc


def load_model(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[RunConfig, Model]:
    """Rebuild the model a run directory describes and load its weights."""
    cfg, meta = read_config(run_dir)
    model = Model(cfg, int(meta["vocab_size"]))
    load_weights(run_dir, model)
    return cfg, model.to(device)
