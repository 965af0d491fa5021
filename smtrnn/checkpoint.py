"""Checkpoints as plain data. A run directory holds

    checkpoints/step-00000100/   the last `train.keep_checkpoints` checkpoints, three files each:
        config.json          the full RunConfig, the vocabulary size and the step (readable); for a user's cell
                             also its source file and sha256 (`cell_code`, `smtrnn.user_cell`)
        model.safetensors    the weights
        trainer_state.pt     optimizer state, step, elapsed time, RNG states and skipped-step count: tensors and
                             plain containers only, read back with `torch.load(weights_only=True)`, so no code is
                             ever unpickled
    latest               one line naming the newest complete folder in checkpoints/
    metrics.jsonl        the training log

A save is crash-safe as a whole, not file by file: the three files are written and fsync'ed into
checkpoints/step-N.tmp/, the folder is renamed to step-N, and only then is `latest` replaced (a temporary file,
fsync, rename): that rename is the commit. A crash before it leaves the previous checkpoint in force.

Readers (`read_config`, `load_weights`, `load_trainer_state`, `load_model`) resolve the checkpoint themselves
(`checkpoint_dir`): checkpoints/<latest> of a run directory, or a checkpoint folder itself (step-N, or any folder
holding the three files), so one checkpoint loads like a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from smtrnn.config import RunConfig, validate
from smtrnn.data.identity import absolute_source, check_same_data
from smtrnn.data.tasks import all_tasks, make_task
from smtrnn.errors import CheckpointError, ConfigError
from smtrnn.files import (
    TMP,
    atomic_write,
    fsync_dir,
    read_json,
    regular_file,
    safetensors_file,
    torch_file,
    write_bytes,
    write_synced,
)
from smtrnn.model import Model
from smtrnn.user_cell import require_trusted_cell

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
FORMAT = "smtrnn-checkpoint-1"
STEP_DIR = re.compile(r"step-(\d{1,12})")  # a checkpoint folder's name


def check_run_layout(run_dir: Path) -> None:
    """Refuse a run directory whose entries are of the wrong kind (checkpoints/ not a folder; latest or
    metrics.jsonl not a regular file) before a run does any work or writes anything: found only at the first save,
    a refused resume would leave log records no checkpoint backs."""
    for name in (LATEST_FILE, METRICS_FILE):
        regular_file(run_dir / name)
    root = run_dir / CHECKPOINTS_DIR
    if os.path.lexists(root) and not root.is_dir():
        raise CheckpointError(f"{root} is not a folder (a run keeps its checkpoints there)")


def _step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _read_latest(run_dir: Path) -> str | None:
    """The folder name `latest` holds, or None when there is no `latest` (no checkpoint yet, or a checkpoint
    folder)."""
    path = run_dir / LATEST_FILE
    if not regular_file(path):
        return None
    try:
        name = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is unreadable: {exc}") from exc
    if not STEP_DIR.fullmatch(name):  # also keeps a crafted pointer from naming a path outside the run
        raise CheckpointError(f"{path} is corrupt: it must name a {CHECKPOINTS_DIR}/step-N folder, got {name[:40]!r}")
    return name


def checkpoint_dir(run_dir: str | Path) -> Path:
    """The folder whose config.json, model.safetensors and trainer_state.pt are the run's newest checkpoint:
    checkpoints/<latest>, or `run_dir` itself where it is a checkpoint folder (no `latest`, a config.json)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} is a file, not a run directory")
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    name = _read_latest(run_dir)
    if name is None:
        return run_dir  # a checkpoint folder, or a run with no checkpoint yet (the readers say which file is missing)
    folder = step_folder(run_dir, name)
    if not regular_file(folder / CONFIG_FILE):
        raise CheckpointError(f"{run_dir / LATEST_FILE} names {CHECKPOINTS_DIR}/{name}, which is missing or incomplete")
    return folder


def step_folder(run_dir: Path, name: str) -> Path:
    """run_dir/checkpoints/NAME, refused where it (or checkpoints/) is a link: a run's checkpoints are its own
    folders, never another run's scored as this one's."""
    for path in (run_dir / CHECKPOINTS_DIR, run_dir / CHECKPOINTS_DIR / name):
        if path.is_symlink():
            raise CheckpointError(f"{path} is a link to {os.readlink(path)}: a run's checkpoints are its own folders")
    return run_dir / CHECKPOINTS_DIR / name


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether training committed a checkpoint here (`latest` exists)."""
    return (Path(run_dir) / LATEST_FILE).exists()


def holds_run(run_dir: str | Path) -> bool:
    """Whether a directory holds any trace of a training run: a checkpoint, a metrics log, a checkpoints folder or a
    `latest` pointer (a run killed before its first checkpoint leaves only its log). Training into such a directory
    must resume it, never start over it."""
    run_dir = Path(run_dir)
    return has_checkpoint(run_dir) or any((run_dir / name).exists() for name in (METRICS_FILE, CHECKPOINTS_DIR))


def save_checkpoint(
    run_dir: str | Path,
    cfg: RunConfig,
    model: Model,
    trainer_state: dict[str, Any],
    keep: int = 3,
    protect: str | None = None,
    data: dict | None = None,
) -> Path:
    """Save weights, trainer state and config as checkpoints/step-N, commit it as `latest` and delete all but the
    newest `keep` checkpoints and the one named `protect` (the best, `smtrnn.best`); `data` is the fingerprint of
    the run's data (`identity.fingerprint`), kept in config.json; returns the checkpoint's folder."""
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    step = int(trainer_state["step"])
    name = _step_dir_name(step)
    folder = root / name
    try:
        latest = _read_latest(run_dir)
    except CheckpointError:
        latest = None  # a damaged pointer is replaced below
    if latest == name and (folder / CONFIG_FILE).is_file():  # saved at this step already: nothing trained since
        return folder
    _clear_abandoned(root, step, latest)
    tmp = root / (name + TMP)
    tmp.mkdir()
    weights = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    meta = {"format": FORMAT, "vocab_size": model.vocab_size, "step": step, "config": cfg.to_dict()}
    code = getattr(model.rnn.cell, "code", None)  # a user's cell: its source file and sha256 (`UserCell.code`)
    if code is not None:
        meta["cell_code"] = code
    if data is not None:
        meta["data"] = data
    write_synced(tmp / WEIGHTS_FILE, safetensors_file(weights, FORMAT))
    write_synced(tmp / STATE_FILE, torch_file(trainer_state))
    write_synced(tmp / CONFIG_FILE, lambda p: write_bytes(p, (json.dumps(meta, indent=2) + "\n").encode()))
    fsync_dir(tmp)
    os.replace(tmp, folder)
    fsync_dir(root)
    atomic_write(run_dir / LATEST_FILE, lambda p: p.write_text(name + "\n"))  # the commit
    _prune(root, keep, (name, protect))
    return folder


def _step_dirs(root: Path) -> dict[int, Path]:
    found = {}
    for path in root.iterdir():
        match = STEP_DIR.fullmatch(path.name)
        if match and path.is_dir():
            found[int(match.group(1))] = path
    return found


def _remove(folder: Path) -> None:
    """Rename, then delete: a deletion cut short leaves a *.tmp folder, never a partial step-N."""
    doomed = folder.with_name(folder.name + TMP)
    try:
        os.replace(folder, doomed)
    except OSError:  # tidying up only: never fail a save over it
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _clear_abandoned(root: Path, step: int, latest: str | None) -> None:
    """Delete what interrupted saves left: *.tmp folders, and checkpoints at or past `step` that were never
    committed (a run resumed from `latest` has abandoned them)."""
    for path in root.iterdir():
        if path.name.endswith(TMP) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.endswith(TMP):
            path.unlink(missing_ok=True)
    for number, path in _step_dirs(root).items():
        if number >= step and path.name != latest:
            _remove(path)


def _prune(root: Path, keep: int, kept: tuple[str | None, ...]) -> None:
    steps = sorted(_step_dirs(root).items())
    for _, path in steps[: max(len(steps) - keep, 0)]:
        if path.name not in kept:
            _remove(path)


def trim_metrics(run_dir: str | Path, step: int) -> None:
    """Drop the log records past `step`, and a last line cut short: what a run killed after its last checkpoint
    wrote. A resumed run then logs those steps again, as if it had never stopped."""
    path = Path(run_dir) / METRICS_FILE
    if not regular_file(path):
        return
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path} is corrupt: not UTF-8 text (byte {exc.start})") from exc
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # a line cut short, or damaged
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line)
    if kept != lines:
        atomic_write(path, lambda p: p.write_text("".join(line + "\n" for line in kept)))


def read_config(run_dir: str | Path, *, trust_cell_code: bool | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """Parse and validate the config.json of a run directory's newest checkpoint -> (config, metadata), opening
    nothing the config names (the vocabulary is the checkpoint's own). Given `trust_cell_code`, a cell that is user
    code is refused unless trusted (`user_cell.require_trusted_cell`)."""
    folder = checkpoint_dir(run_dir)
    path = folder / CONFIG_FILE
    if not regular_file(path):
        raise CheckpointError(f"{folder} holds no checkpoint ({CONFIG_FILE} missing)")
    meta = read_json(path)
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
    if trust_cell_code is not None:
        require_trusted_cell(cfg, meta.get("cell_code"), run_dir, trust_cell_code)
    return cfg, meta


def open_run_data(run_dir: str | Path, cfg: RunConfig, meta: dict[str, Any], data: str | None = None) -> RunConfig:
    """Check that the data a run's config names is what it trained on -> the config, pointed at `data` where given
    (the same data moved): the fingerprint recorded at training (`identity.check_same_data`), then the task built and
    its vocabulary checked against the checkpoint's."""
    path = checkpoint_dir(run_dir) / CONFIG_FILE
    if data is not None:
        if "path" not in {field.name for field in dataclasses.fields(all_tasks()[cfg.task.name])}:
            raise CheckpointError(f"--data: {run_dir} is a '{cfg.task.name}' run, which reads no data")
        cfg.task.params = cfg.task.params | {"path": absolute_source(data)}
    check_same_data(meta.get("data"), cfg.task.params.get("path"))
    try:
        task_vocab = make_task(cfg.task.name, **cfg.task.params).vocab_size
    except (ConfigError, ValueError) as exc:
        raise CheckpointError(f"{path} holds an invalid config: {exc}") from exc
    if task_vocab != meta["vocab_size"]:
        raise CheckpointError(
            f"{path}: vocab_size {meta['vocab_size']} does not match task '{cfg.task.name}' ({task_vocab})"
        )
    return cfg


def load_weights(run_dir: str | Path, model: Model) -> None:
    """Load the newest checkpoint's model.safetensors into `model`; a missing, corrupt or mismatched file is a
    CheckpointError."""
    folder = checkpoint_dir(run_dir)
    path = folder / WEIGHTS_FILE
    if not regular_file(path):
        raise CheckpointError(f"{folder} holds no weights ({WEIGHTS_FILE} missing)")
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
            raise CheckpointError(
                f"{path} does not match its config: {name} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[name].shape)}"
            )
    broken = [name for name, tensor in weights.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        raise CheckpointError(
            f"{path} holds non-finite weights ({len(broken)} tensors, first {broken[0]}): the checkpoint is damaged"
        )
    model.load_state_dict(weights)


def load_trainer_state(run_dir: str | Path) -> dict[str, Any]:
    """The newest checkpoint's trainer state, unpickled with `weights_only=True`: a file that carries code (or
    anything but tensors and plain containers) is refused before any of it runs."""
    folder = checkpoint_dir(run_dir)
    path = folder / STATE_FILE
    if not regular_file(path):
        raise CheckpointError(f"{folder} holds no trainer state ({STATE_FILE} missing)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message suggests weights_only=False: never to be followed here
        raise CheckpointError(
            f"{path} is corrupt or unsafe: not a file of tensors and plain containers (damaged, "
            "or pickled code); refused unread"
        ) from exc
    except Exception as exc:  # any other failure is a corrupt file to the user
        raise CheckpointError(f"{path} is corrupt or unsafe: {str(exc).splitlines()[0]}") from exc


def load_model(
    run_dir: str | Path,
    device: torch.device | str = "cpu",
    *,
    trust_cell_code: bool = False,
    open_data: bool = True,
    data: str | None = None,
) -> tuple[RunConfig, Model]:
    """Rebuild the model a run directory describes and load its weights. A run whose cell is a user's code (a
    MODULE:CLASS or FILE.py:CLASS, which importing runs) is refused unless `trust_cell_code`
    (`user_cell.require_trusted_cell`), before anything else is opened; without `open_data` the run's data is never
    read (the vocabulary is the checkpoint's); `data` points the run at its data moved (`open_run_data`)."""
    cfg, meta = read_config(run_dir, trust_cell_code=trust_cell_code)
    if open_data:
        cfg = open_run_data(run_dir, cfg, meta, data)
    model = Model.for_run(cfg, int(meta["vocab_size"]))
    load_weights(run_dir, model)
    problem = model.damage()
    if problem:
        raise CheckpointError(f"{run_dir}: {problem}: the checkpoint is damaged")
    return cfg, model.to(device)
