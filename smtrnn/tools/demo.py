"""The README's main job: SMT→DMT and BPTT train the same RNN cell for the same wall-clock on an embedded synthetic
long-range task, then the RNN alone is scored from m_∅ and the results are printed as a table."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from smtrnn.presets import RECIPE
from smtrnn.settings import make_config
from smtrnn.trainer import Trainer

COLUMNS = (
    "method",
    "steps",
    "seconds",
    "rnn_accuracy",
    "rnn_bits_per_token",
    "teacher_accuracy",
    "onestep_accuracy",
    "drift_final",
)


def run_demo(
    task: str, seq_len: int, budget: float, out: Path | None, device: torch.device, seed: int = 0, preset: str = RECIPE
) -> list[dict]:
    """Both methods from the same preset (default RECIPE, the long-range recipe) for `budget` training seconds."""
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="smtrnn-demo-"))
    out.mkdir(parents=True, exist_ok=True)  # an unusable path is refused before anything is printed or trained
    rows = []
    for method in ("smt+dmt", "bptt"):
        fields = {
            "task.seq_len": seq_len,
            "train.method": method,
            "train.seed": seed,
            "train.steps": 1_000_000,
            "train.max_seconds": budget,
        }
        cfg = make_config(preset, task, fields=fields)
        trainer = Trainer(cfg, out / method.replace("+", "-"), device)
        print(
            f"{method}: training for {budget:g} s ({task}, T = {seq_len}, preset {preset})", file=sys.stderr, flush=True
        )  # a non-interactive run (no progress bar) is not silent for minutes
        result = trainer.run()
        print(
            f"{method}: RNN alone {result['rnn_accuracy']:.3f} after {trainer.step} steps", file=sys.stderr, flush=True
        )
        rows.append({"method": method, "steps": trainer.step, "seconds": trainer.elapsed} | result)
    print(f"\n{task}, T = {seq_len}, preset {preset}, {budget:g} s of training per method on {device}; runs in {out}\n")
    print(format_table(rows))
    return rows


def format_table(rows: list[dict]) -> str:
    def cell(value) -> str:
        if value is None:
            return "–"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)
