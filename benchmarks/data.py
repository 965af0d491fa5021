"""Data benchmark: SMT→DMT vs BPTT on real data, same cell, same wall-clock — bits per byte on the embedded text
corpus (this Python's standard-library source) and bits per pixel on scikit-learn's 8×8 digits, scored over whole
held-out documents / images by the RNN alone from m_∅, beside the SMT run's own teacher. Sample grids (held-out
digits, lower halves completed by the RNN, unconditional samples) and text continuations are saved next to the JSON.

Runs go through the public CLI, the methods of one dataset side by side, one thread each (see benchmarks/core.py).
Writes benchmarks/results/data.json and data.md.

    python benchmarks/data.py                         # about 20 minutes on 2 cores
    python benchmarks/data.py --budget 30 --datasets pixels --max-tokens 2000   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from core import ROOT, finish, quality_run, run_cli  # noqa: E402  (benchmarks/ is on sys.path when run)

# dataset -> (task, T, unit)
DATASETS = {"text": ("text", 256, "byte"), "pixels": ("pixels", 64, "pixel")}
METHODS = ["smt+dmt", "bptt"]
TEXT_PROMPT = "def main():\n    "


def markdown(report: dict) -> str:
    lines = [f"Budget {report['budget_s']:.0f} s of training per run, cell `{report['cell']}`, methods of a dataset "
             f"side by side, 1 thread each; held-out scores over whole documents / images (text: the first "
             f"{report['max_tokens']} held-out bytes); {report['device']}, torch {report['torch']}.", "",
             "| data | T | method | RNN alone (bits/unit) | teacher (bits/unit) | RNN / teacher | RNN-alone acc | "
             "steps |", "|---|---|---|---|---|---|---|---|"]
    for row in report["runs"]:
        held = row["held_out_documents"]
        teacher = held.get("teacher_bits_per_token")
        ratio = f"{held['rnn_bits_per_token'] / teacher:.3f}" if teacher else "–"
        lines.append(f"| {row['dataset']} ({held['tokens']} {row['unit']}s) | {row['T']} | {row['method']} | "
                     f"{held['rnn_bits_per_token']:.3f} | {f'{teacher:.3f}' if teacher else '–'} | {ratio} | "
                     f"{held['rnn_accuracy']:.3f} | {row['steps']} |")
    samples = [row for row in report["runs"] if "text_sample" in row]
    if samples:
        lines += ["", f"Text continuations of `{TEXT_PROMPT!r}` (greedy, 120 bytes):", ""]
        lines += [f"- {row['method']}: `{row['text_sample']!r}`" for row in samples]
    grids = [row for row in report["runs"] if "png" in row]
    if grids:
        lines += ["", "Digit grids (rows: held-out images, lower halves completed by the RNN, unconditional "
                  "samples): " + ", ".join(f"`{row['png']}` ({row['method']})" for row in grids)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="text,pixels")
    parser.add_argument("--budget", type=float, default=480.0, help="training seconds per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell", default="mlp")
    parser.add_argument("--max-tokens", type=int, default=100_000, help="held-out text bytes scored")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="data")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    report = {"benchmark": "data", "device": f"cpu ({platform.processor() or platform.machine()}, "
                                              f"{os.cpu_count()} cores)",
              "torch": torch.__version__, "python": platform.python_version(), "budget_s": args.budget,
              "cell": args.cell, "max_tokens": args.max_tokens, "runs": [], "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory(prefix="smtrnn-data-") as work:
        for dataset in args.datasets.split(","):
            task, length, unit = DATASETS[dataset]
            scored = args.max_tokens if task == "text" else 0  # every held-out image
            rows = quality_run(task, length, args.seed, args.budget, args.cell, Path(work), 1, METHODS,
                               eval_args=["--max-tokens", str(scored)])
            for row in rows:
                run_dir = Path(work) / f"{task}-T{length}-s{args.seed}-{row['method']}"
                row |= {"dataset": dataset, "unit": unit}
                if task == "text":
                    text = finish(run_cli(["sample", str(run_dir), "--text", TEXT_PROMPT, "--length", "120",
                                           "--device", "cpu"], 2))
                    row["text_sample"] = text[len(TEXT_PROMPT):].rstrip("\n")
                else:
                    png = f"{args.name}_digits_{row['method'].replace('+', '_')}.png"
                    finish(run_cli(["sample", str(run_dir), "--png", str(Path(work) / png), "--device", "cpu"], 2))
                    shutil.copy(Path(work) / png, out / png)
                    row["png"] = png
            report["runs"] += rows
            (out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
            (out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
