"""Data benchmark: SMT→DMT vs BPTT on real data, same cell, same wall-clock — bits per byte on the embedded text
corpus (this Python's standard-library source) and bits per pixel on scikit-learn's 8×8 digits, scored over whole
held-out documents / images by the RNN alone from m_∅, beside the SMT run's own teacher. Sample grids (held-out
digits, lower halves completed by the RNN, unconditional samples) and text continuations are saved next to the JSON.

Runs go through the public CLI, the methods of one dataset side by side, one thread each (see benchmarks/core.py).
Writes benchmarks/results/data.json and data.md.

    python benchmarks/data.py                         # about 20 minutes on 2 cores
    python benchmarks/data.py --preset long --name data_long   # the long-range recipe
    python benchmarks/data.py --budget 30 --datasets pixels --max-tokens 2000   # quick look

Every run also evaluates held-out bits 8 times during training (sampled windows of the validation split), so the
report shows held-out bits against training time and whether a method overfits (its held-out bits end more than
0.05 above their best).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from harness import ROOT, finish, quality_run, run_cli, write_report

# dataset -> (task, T, unit)
DATASETS = {"text": ("text", 256, "byte"), "pixels": ("pixels", 64, "pixel")}
METHODS = ["smt+dmt", "bptt"]
TEXT_PROMPT = "def main():\n    "


def markdown(report: dict) -> str:
    budget = f"Preset `{report['preset']}`, budget" if "preset" in report else "Budget"  # older reports: small
    lines = [
        f"{budget} {report['budget_s']:.0f} s of training per run, cell `{report['cell']}`, methods of a dataset "
        f"side by side, 1 thread each; held-out scores over whole documents / images (text: the first "
        f"{report['max_tokens']} held-out bytes); {report['device']}, torch {report['torch']}.",
        "",
        "| data | T | method | RNN alone (bits/unit) | teacher (bits/unit) | RNN / teacher | RNN-alone acc | steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["runs"]:
        held = row["held_out_documents"]
        teacher = held.get("teacher_bits_per_token")
        ratio = f"{held['rnn_bits_per_token'] / teacher:.3f}" if teacher else "–"
        lines.append(
            f"| {row['dataset']} ({held['tokens']} {row['unit']}s) | {row['T']} | {row['method']} | "
            f"{held['rnn_bits_per_token']:.3f} | {f'{teacher:.3f}' if teacher else '–'} | {ratio} | "
            f"{held['rnn_accuracy']:.3f} | {row['steps']} |"
        )
    curves = [row for row in report["runs"] if row.get("held_out_curve")]
    if curves:
        points = len(curves[0]["held_out_curve"])
        lines += [
            "",
            "Held-out bits/unit against training time (sampled validation windows of T; BPTT's training "
            "bits are its last logged training CE):",
            "",
            "| data | method | "
            + " | ".join(f"≈{(i + 1) * report['budget_s'] / points:.0f} s" for i in range(points))
            + " | best → end | overfits | BPTT train bits |",
            "|---|---|" + "---|" * (len(curves[0]["held_out_curve"]) + 3),
        ]
        for row in curves:
            values = [v for _, v in row["held_out_curve"]]
            train = row.get("train_bits")
            lines.append(
                f"| {row['dataset']} | {row['method']} | "
                + " | ".join(f"{v:.3f}" for v in values)
                + f" | {min(values):.3f} → {values[-1]:.3f} | {'yes' if row['overfits'] else 'no'} | "
                f"{f'{train:.3f}' if train is not None else '–'} |"
            )
    samples = [row for row in report["runs"] if "text_sample" in row]
    if samples:
        lines += ["", f"Text continuations of `{TEXT_PROMPT!r}` (greedy, 120 bytes):", ""]
        lines += [f"- {row['method']}: `{row['text_sample']!r}`" for row in samples]
    grids = [row for row in report["runs"] if "png" in row]
    if grids:
        lines += [
            "",
            "Digit grids (rows: held-out images, lower halves completed by the RNN, unconditional "
            "samples): " + ", ".join(f"`{row['png']}` ({row['method']})" for row in grids),
        ]
    return "\n".join(lines) + "\n"


def held_out_curve(run_dir: Path, method: str) -> dict:
    """From a run's metrics.jsonl: held-out bits at each evaluation during training, whether they end more than
    0.05 above their best (overfitting), and for BPTT its training bits (mean of the last 10 logged training CEs)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["elapsed"], r["eval"]["rnn_bits_per_token"]) for r in records if r.get("eval")]
    out = {"held_out_curve": curve, "overfits": bool(curve) and curve[-1][1] > min(v for _, v in curve) + 0.05}
    if method == "bptt":
        train = [r["readout"] for r in records if "readout" in r and "eval" not in r][-10:]
        out["train_bits"] = sum(train) / len(train) / math.log(2) if train else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="text,pixels")
    parser.add_argument("--budget", type=float, default=480.0, help="training seconds per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell", default="mlp")
    parser.add_argument("--preset", default="small", help="the preset of every run (small, long, ...)")
    parser.add_argument("--max-tokens", type=int, default=100_000, help="held-out text bytes scored")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="data")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    report = {
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "budget_s": args.budget,
        "cell": args.cell,
        "preset": args.preset,
        "max_tokens": args.max_tokens,
        "runs": [],
        "command": " ".join(sys.argv),
    }
    train_args = ["--preset", args.preset, "--set", f"train.eval_every_seconds={args.budget / 8}"]
    with tempfile.TemporaryDirectory(prefix="smtrnn-data-") as work:
        for dataset in args.datasets.split(","):
            task, length, unit = DATASETS[dataset]
            scored = args.max_tokens if task == "text" else 0  # every held-out image
            rows = quality_run(
                task,
                length,
                args.seed,
                args.budget,
                args.cell,
                Path(work),
                1,
                METHODS,
                eval_args=["--max-tokens", str(scored)],
                train_args=train_args,
            )
            for row in rows:
                run_dir = Path(work) / f"{task}-T{length}-s{args.seed}-{row['method']}"
                row |= {"dataset": dataset, "unit": unit} | held_out_curve(run_dir, row["method"])
                if task == "text":
                    text = finish(
                        run_cli(
                            ["sample", str(run_dir), "--text", TEXT_PROMPT, "--length", "120", "--device", "cpu"], 2
                        )
                    )
                    row["text_sample"] = text[len(TEXT_PROMPT) :].rstrip("\n")
                else:
                    png = f"{args.name}_digits_{row['method'].replace('+', '_')}.png"
                    finish(run_cli(["sample", str(run_dir), "--png", str(Path(work) / png), "--device", "cpu"], 2))
                    shutil.copy(Path(work) / png, out / png)
                    row["png"] = png
            report["runs"] += rows
            write_report(report, out, args.name, markdown)
    print(markdown(report))


if __name__ == "__main__":
    main()
