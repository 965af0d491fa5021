"""Label a whole dataset once, fit several RNNs to it: `smtrnn label --data` on real data.

For each dataset (the embedded text corpus, scikit-learn's 8×8 digits): a joint SMT run (teacher and MLP RNN
together) for the budget; its teacher then labels every position of the training split (`smtrnn label --data`,
timed); RNNs of two cells are fit to those labels alone (method labels) for the same budget. Reported: labelling
throughput and disk size, and held-out bits per unit of the RNN alone from m_∅ over whole documents / images for the
joint run and each labels run, beside the teacher's. Runs go through the public CLI, two at a time, one thread each.
Writes benchmarks/results/dataset_labels.json and dataset_labels.md.

    python benchmarks/dataset_labels.py                                      # about 25 minutes on 2 cores
    python benchmarks/dataset_labels.py --budget 20 --datasets pixels        # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness import ROOT, budget, save_report
from smtrnn.tools.study import finish, run_cli

# dataset -> (task, T, unit)
DATASETS = {"text": ("text", 256, "byte"), "pixels": ("pixels", 64, "pixel")}


def train_args(out: Path, budget: float, seed: int, *method: str) -> list[str]:
    return [
        "train",
        *method,
        "--steps",
        "1000000",
        "--budget",
        str(budget),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--quiet",
        "--device",
        "cpu",
    ]


def scored(out: Path, max_tokens: int) -> dict:
    """The RNN alone (and the teacher, where the run has one) over whole held-out documents / images."""
    report = json.loads(
        finish(
            run_cli(
                ["eval", str(out), "--json", "--batches", "4", "--device", "cpu", "--max-tokens", str(max_tokens)], 2
            )
        )
    )
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    return {"steps": last["step"], "train_seconds": last["elapsed"]} | report["held_out_documents"]


def in_pairs(jobs: list[tuple[str, list[str]]]) -> None:
    """Run CLI jobs two at a time (one thread each)."""
    for i in range(0, len(jobs), 2):
        procs = [(name, run_cli(args, 1)) for name, args in jobs[i : i + 2]]
        for name, proc in procs:
            finish(proc)
            print(f"done: {name}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="text,pixels")
    parser.add_argument("--cells", default="mlp,gru", help="cells fit to the labels")
    parser.add_argument("--budget", type=budget, default=300.0, help="training time per run: 300, 5m")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=100_000, help="held-out text bytes scored")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="dataset_labels")
    args = parser.parse_args()
    datasets, cells = args.datasets.split(","), args.cells.split(",")
    report = {
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "budget_s": args.budget,
        "max_tokens": args.max_tokens,
        "datasets": [],
        "command": " ".join(sys.argv),
    }
    with tempfile.TemporaryDirectory(prefix="smtrnn-dataset-labels-") as work:
        work = Path(work)
        in_pairs(
            [
                (
                    f"{d}: joint smt",
                    train_args(
                        work / f"{d}-smt",
                        args.budget,
                        args.seed,
                        "--task",
                        DATASETS[d][0],
                        "--seq-len",
                        str(DATASETS[d][1]),
                        "--cell",
                        "mlp",
                        "--method",
                        "smt",
                    ),
                )
                for d in datasets
            ]
        )
        for dataset in datasets:
            task, length, unit = DATASETS[dataset]
            start = time.perf_counter()
            summary = json.loads(
                finish(
                    run_cli(
                        [
                            "label",
                            "--teacher",
                            str(work / f"{dataset}-smt"),
                            "--data",
                            "--out",
                            str(work / f"{dataset}-labels"),
                            "--quiet",
                            "--device",
                            "cpu",
                            "--batch-size",
                            "32",
                        ],
                        2,
                    )
                )
            )
            seconds = time.perf_counter() - start
            tokens = summary["shapes"]["x"][0] * summary["shapes"]["x"][1]
            disk = sum(p.stat().st_size for p in (work / f"{dataset}-labels").glob("shard-*.safetensors"))
            report["datasets"].append(
                {
                    "dataset": dataset,
                    "task": task,
                    "T": length,
                    "unit": unit,
                    "data": summary["data"],
                    "windows": summary["shapes"]["x"][0],
                    "tokens_labelled": tokens,
                    "label_seconds": seconds,
                    "label_tokens_per_s": tokens / seconds,
                    "disk_bytes": disk,
                    "disk_bytes_per_million_tokens": disk / tokens * 1e6,
                    "runs": [],
                }
            )
            print(f"{dataset}: labelled {tokens} tokens in {seconds:.0f} s", flush=True)
        in_pairs(
            [
                (
                    f"{d}: labels {cell}",
                    train_args(
                        work / f"{d}-labels-{cell}",
                        args.budget,
                        args.seed,
                        "--method",
                        "labels",
                        "--labels",
                        str(work / f"{d}-labels"),
                        "--cell",
                        cell,
                    ),
                )
                for d in datasets
                for cell in cells
            ]
        )
        for entry in report["datasets"]:
            d, max_tokens = entry["dataset"], args.max_tokens if entry["task"] == "text" else 0
            entry["runs"].append({"method": "joint smt", "cell": "mlp"} | scored(work / f"{d}-smt", max_tokens))
            for cell in cells:
                entry["runs"].append(
                    {"method": "labels", "cell": cell} | scored(work / f"{d}-labels-{cell}", max_tokens)
                )
    save_report(report, args.out, args.name, markdown)


def markdown(report: dict) -> str:
    lines = [
        f"Budget {report['budget_s']:.0f} s of training per run, two runs at a time, 1 thread each; the teacher is "
        f"the joint SMT run's; held-out scores over whole documents / images by the RNN alone from m_∅ (text: the "
        f"first {report['max_tokens']} held-out bytes); {report['device']}, torch {report['torch']}.",
        "",
        "| data | T | tokens labelled | label time (s) | tokens/s | MB per M tokens | RNN | cell | "
        "RNN bits/unit | teacher bits/unit | steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["datasets"]:
        for i, run in enumerate(entry["runs"]):
            head = (
                f"| {entry['dataset']} | {entry['T']} | {entry['tokens_labelled']} | {entry['label_seconds']:.0f} | "
                f"{entry['label_tokens_per_s']:.0f} | {entry['disk_bytes_per_million_tokens'] / 1e6:.0f} |"
                if i == 0
                else "| | | | | | |"
            )
            teacher = run.get("teacher_bits_per_token")
            lines.append(
                f"{head} {run['method']} | {run['cell']} | {run['rnn_bits_per_token']:.3f} | "
                f"{f'{teacher:.3f}' if teacher else '–'} | {run['steps']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
