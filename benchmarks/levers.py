"""Levers against drift where SMT→DMT loses to BPTT: variants of SMT→DMT on the dense-memory tasks (copy,
delayed_recall), each against the paper-default SMT→DMT and BPTT of the same cell and budget, scored on the RNN alone
from m_∅, with the diagnostics that say why (teacher and one-step accuracy, drift at labelled positions relative to
the spread of teacher memories, effective rank of the memories).

Runs go through the public CLI, two at a time, one thread each (see benchmarks/core.py); the report is rewritten
after every pair. Writes benchmarks/results/levers.json and levers.md.

    python benchmarks/levers.py                                        # about 35 minutes on 2 cores
    python benchmarks/levers.py --tasks delayed_recall --budget 20 --variants paper,bptt    # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from harness import ROOT, finish, run_cli, write_report

# name -> CLI arguments of the training run (the small preset, cell mlp unless the variant names another)
VARIANTS = {
    "paper": ["--method", "smt+dmt"],
    "uniformity 0.03": ["--method", "smt+dmt", "--set", "smt.uniformity_weight=0.03"],
    "uniformity 0.3": ["--method", "smt+dmt", "--set", "smt.uniformity_weight=0.3"],
    "dynamics 1.0": ["--method", "smt+dmt", "--set", "smt.dynamics_weight=1.0"],
    "DMT half + 4-step grad": [
        "--method",
        "smt+dmt",
        "--set",
        "dmt.fraction=0.5",
        "--set",
        "dmt.grad_through_rollout_steps=4",
    ],
    "staged": ["--method", "smt+dmt", "--preset", "staged"],
    # a predictive-state horizon that covers the tasks' dependencies (lag 16; copy: 32 steps from a symbol to its
    # output) instead of the small preset's Tf = 4, jointly and with the staged schedule
    "Tf=40": ["--method", "smt+dmt", "--set", "teacher.future_len=40"],
    "Tf=40 staged": ["--method", "smt+dmt", "--preset", "staged", "--set", "teacher.future_len=40"],
    # ... and with an update that can fit the longer-lived memories: a wider MLP cell (hidden 1024, not 256)
    "Tf=40 wide cell": ["--method", "smt+dmt", "--set", "teacher.future_len=40", "--set", "rnn.hidden=1024"],
    "Tf=20 wide cell": ["--method", "smt+dmt", "--set", "teacher.future_len=20", "--set", "rnn.hidden=1024"],
    # ... with half the budget on DMT (once the teacher is ready), or with the paper's cell over 8 slots of 16
    "Tf=20 DMT half": ["--method", "smt+dmt", "--set", "teacher.future_len=20", "--set", "dmt.fraction=0.5"],
    "Tf=20 transformer cell K=8": [
        "--method",
        "smt+dmt",
        "--set",
        "teacher.future_len=20",
        "--cell",
        "transformer",
        "--memory-tokens",
        "8",
    ],
    # the paper's cell: a Transformer over K memory slots and the input token (Z = 128 as 4 tokens of 32)
    "transformer cell K=4": ["--method", "smt+dmt", "--cell", "transformer", "--memory-tokens", "4"],
    "bptt": ["--method", "bptt"],
}


def run_pair(jobs: list[tuple[str, str, Path]], args, work: Path) -> list[dict]:
    """Train the (task, variant) jobs side by side, then evaluate each; one row per job."""
    procs = []
    for task, variant, out in jobs:
        argv = [
            "train",
            "--task",
            task,
            "--seq-len",
            str(args.seq_len),
            "--cell",
            "mlp",
            *VARIANTS[variant],
            "--steps",
            "1000000",
            "--budget",
            str(args.budget),
            "--seed",
            str(args.seed),
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
        ]
        procs.append(run_cli(argv, 1))
    rows = []
    for (task, variant, out), proc in zip(jobs, procs):
        finish(proc)
        result = json.loads(finish(run_cli(["eval", str(out), "--json", "--batches", "16", "--device", "cpu"], 2)))
        last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
        keep = (
            "rnn_accuracy",
            "teacher_accuracy",
            "onestep_accuracy",
            "drift_labelled",
            "drift_relative",
            "memory_effective_rank",
            "rnn_effective_rank",
        )
        rows.append(
            {"task": task, "T": args.seq_len, "variant": variant, "args": VARIANTS[variant], "steps": last["step"]}
            | {k: result[k] for k in keep if k in result}
        )
        print(f"{task} {variant}: rnn {result['rnn_accuracy']:.3f}", flush=True)
    return rows


def markdown(report: dict) -> str:
    def num(row, key):
        return f"{row[key]:.3f}" if isinstance(row.get(key), (int, float)) else "–"

    lines = [
        f"T = {report['T']}, {report['budget_s']:.0f} s of training per run, seed {report['seed']}, "
        f"two runs at a time, 1 thread each; {report['device']}, torch {report['torch']}. Drift/spread: drift at "
        f"labelled positions over the spread of teacher memories between sequences there (below 1: the rollout "
        f"stays nearer its own sequence's memory than sequences are to each other).",
        "",
        "| task | variant | cell | RNN-alone acc | teacher acc | one-step acc | drift/spread | "
        "teacher memory eff. rank | steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["runs"]:
        cell = row["args"][row["args"].index("--cell") + 1] if "--cell" in row["args"] else "mlp"
        lines.append(
            f"| {row['task']} | {row['variant']} | {cell} | {num(row, 'rnn_accuracy')} | "
            f"{num(row, 'teacher_accuracy')} | {num(row, 'onestep_accuracy')} | {num(row, 'drift_relative')} "
            f"| {num(row, 'memory_effective_rank')} | {row['steps']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="delayed_recall,copy")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="levers")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    report = {
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "T": args.seq_len,
        "budget_s": args.budget,
        "seed": args.seed,
        "runs": [],
        "command": " ".join(sys.argv),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smtrnn-levers-") as work:
        jobs = [
            (task, variant, Path(work) / f"{task}-{i}")
            for task in args.tasks.split(",")
            for i, variant in enumerate(variants)
        ]
        for start in range(0, len(jobs), 2):
            report["runs"] += run_pair(jobs[start : start + 2], args, Path(work))
            write_report(report, out, args.name, markdown)
    print(markdown(report))


if __name__ == "__main__":
    main()
