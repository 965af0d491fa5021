"""`train.keep_best`: fair to a method that overfits. A run on data with a validation split keeps the checkpoint
whose RNN alone scored the fewest bits per token on the validation split at a periodic evaluation, and that
checkpoint, not the last, is the one the run reports and `smtrnn eval` scores (every method alike, BPTT included).

The choice is recorded in `RUN/best.json` ({"checkpoint": "step-N", "step", "rnn_bits_per_token"}), written
atomically after the checkpoint it names is committed; pruning keeps that checkpoint (`checkpoint.save_checkpoint`'s
`protect`). The test split is never read for it: settings and checkpoints are chosen on validation only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smtrnn.checkpoint import CHECKPOINTS_DIR, CONFIG_FILE, STEP_DIR, step_folder
from smtrnn.errors import CheckpointError
from smtrnn.files import atomic_write, read_json, regular_file

BEST_FILE = "best.json"
SCORE = "rnn_bits_per_token"  # what "best" means: the RNN alone's validation bits, lower is better


def read_best(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's best-checkpoint record, or None when it keeps none; a damaged record is a CheckpointError."""
    path = Path(run_dir) / BEST_FILE
    if not regular_file(path):
        return None
    record = read_json(path)
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("checkpoint"), str)
        or not STEP_DIR.fullmatch(record["checkpoint"])
        or not isinstance(record.get(SCORE), (int, float))
    ):
        raise CheckpointError(f"{path} is corrupt: it must name a {CHECKPOINTS_DIR}/step-N folder and its {SCORE}")
    return record


def mark_best(run_dir: str | Path, folder: Path, step: int, score: float) -> None:
    """Record the committed checkpoint `folder` as the run's best, at validation `score`."""
    record = {"checkpoint": folder.name, "step": step, SCORE: score}
    atomic_write(Path(run_dir) / BEST_FILE, lambda p: p.write_text(json.dumps(record) + "\n"))


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder of the run's best checkpoint (a checkpoint folder loads like a run directory), or None."""
    record = read_best(run_dir)
    if record is None:
        return None
    folder = step_folder(Path(run_dir), record["checkpoint"])
    if not regular_file(folder / CONFIG_FILE):
        raise CheckpointError(
            f"{Path(run_dir) / BEST_FILE} names {CHECKPOINTS_DIR}/{record['checkpoint']}, which is missing"
        )
    return folder
