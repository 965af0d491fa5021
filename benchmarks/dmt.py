"""DMT benchmark: SMT, SMT→DMT and BPTT on the same RNN cell and the same wall-clock, scored on the RNN alone from
m_∅, over tasks × lengths × seeds; drift curves; and the step throughput of time-parallel DMT against the paper's
sequential-graph DMT.

Quality runs go through the public CLI, the three methods of one (task, T, seed) at the same time, one thread
each (see benchmarks/core.py). The report is rewritten after every group, so an interrupted study keeps what it
measured. Writes benchmarks/results/dmt.json and dmt.md.

    python benchmarks/dmt.py                                     # full study (about 90 minutes on 2 cores)
    python benchmarks/dmt.py --tasks retrieval --lengths 64 --seeds 0 --budgets 64:20 --throughput-lengths 256
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from harness import ROOT, quality_run, quality_table, small_model, step_time, summarize, write_report
from smtrnn.dmt import dmt_loss
from smtrnn.reference import dmt_sequential_loss

METHODS = ["smt", "smt+dmt", "bptt"]


def parse_budgets(text: str) -> dict[int, float]:
    """'64:120,256:240' -> {64: 120.0, 256: 240.0}"""
    pairs = (item.split(":") for item in text.split(","))
    return {int(length): float(seconds) for length, seconds in pairs}


def dmt_throughput(length: int, cell: str, batch: int, repeats: int, device: str = "cpu") -> dict:
    """Optimizer-step time (forward + backward) of time-parallel DMT vs the sequential-graph variant, same model."""
    cfg, model, x, y = small_model(cell, length, batch, device)
    model.teacher.requires_grad_(False)  # DMT trains the RNN only

    times = {
        "time_parallel": step_time(lambda: dmt_loss(model, x, y, cfg.dmt)[0].backward(), repeats),
        "sequential": step_time(lambda: dmt_sequential_loss(model, x, y, cfg.dmt)[0].backward(), repeats),
    }
    return (
        {"T": length, "batch": batch, "cell": cell, "device": device, "label_every": cfg.dmt.label_every}
        | {f"{name}_step_s": t for name, t in times.items()}
        | {f"{name}_transitions_per_s": batch * length / t for name, t in times.items()}
        | {"ratio_time_parallel_over_sequential": times["sequential"] / times["time_parallel"]}
    )


def drift_rows(rows: list[dict]) -> list[dict]:
    """Mean drift per position bucket, per (task, T, method), over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if "drift" in row:
            groups.setdefault((row["task"], row["T"], row["method"]), []).append(row["drift"])
    out = []
    for (task, length, method), curves in groups.items():
        buckets = list(curves[0])
        out.append(
            {
                "task": task,
                "T": length,
                "method": method,
                "drift": {b: sum(c[b] for c in curves) / len(curves) for b in buckets},
            }
        )
    return out


def markdown(report: dict) -> str:
    budgets = ", ".join(f"T = {t}: {s:.0f} s" for t, s in report["budgets_s"].items())
    lines = []
    if report["summary"]:
        lines = [
            f"Training budget per run ({budgets}), cell `{report['cell']}`, {report['threads_per_run']} thread "
            f"per run, the {len(report['methods'])} methods of a (task, T, seed) run at once; "
            f"{report['device']}, torch {report['torch']}.",
            "",
            *quality_table(report["summary"]),
        ]
    if report["drift"]:
        lines += [
            "",
            "Drift δ_t = mean (m̂_t − m_t)² of the RNN's own rollout against the teacher, mean per position "
            "bucket (0 = on the teacher, ≈ 2 = unrelated):",
            "",
        ]
        for d in report["drift"]:
            cells = " ".join(f"{b}: {v:.3f}" for b, v in d["drift"].items())
            lines.append(f"- {d['task']} T = {d['T']} {d['method']}: {cells}")
    if report["throughput"]:
        where = report["device"] if report["throughput"][0].get("device", "cpu") != "cpu" else "2 threads"
        lines += [
            *([""] if lines else [f"torch {report['torch']}.", ""]),
            f"DMT optimizer-step time, forward + backward, {where} (sequential: graph kept through the "
            "rollout, MSE every `label_every` steps):",
            "",
            "| T | batch | time-parallel step (s) | sequential step (s) | speed-up |",
            "|---|---|---|---|---|",
        ]
        for t in report["throughput"]:
            lines.append(
                f"| {t['T']} | {t['batch']} | {t['time_parallel_step_s']:.3f} | {t['sequential_step_s']:.3f} "
                f"| {t['ratio_time_parallel_over_sequential']:.2f}× |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="retrieval,copy,delayed_recall")
    parser.add_argument("--lengths", default="64,256,1024")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--budgets", default="64:120,256:240,1024:360", help="T:seconds of training per run")
    parser.add_argument("--cell", default="mlp")
    parser.add_argument("--threads", type=int, default=1, help="threads per training run (all methods run at once)")
    parser.add_argument("--throughput-lengths", default="256,1024")
    parser.add_argument("--throughput-batches", default="32,256")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="dmt")
    parser.add_argument("--device", default="cpu", help="device of the throughput measurement (quality runs: cpu)")
    parser.add_argument("--skip-quality", action="store_true", help="throughput only")
    args = parser.parse_args()
    budgets = parse_budgets(args.budgets)
    lengths = [int(t) for t in args.lengths.split(",")]
    missing = [t for t in lengths if t not in budgets]
    if missing:
        parser.error(f"--budgets has no entry for T = {missing[0]}")

    report = {
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "budgets_s": {t: budgets[t] for t in lengths},
        "cell": args.cell,
        "threads_per_run": args.threads,
        "methods": METHODS,
        "summary": [],
        "drift": [],
        "runs": [],
        "throughput": [],
        "command": " ".join(sys.argv),
    }
    out = Path(args.out)
    torch.set_num_threads(2)
    if args.device != "cpu":
        report["device"] = f"{args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else ''})"
    report["throughput"] = [
        dmt_throughput(t, args.cell, batch, args.repeats, args.device)
        for t in map(int, filter(None, args.throughput_lengths.split(",")))
        for batch in map(int, args.throughput_batches.split(","))
    ]
    write_report(report, out, args.name, markdown)
    if args.skip_quality:
        lengths = []
    with tempfile.TemporaryDirectory(prefix="smtrnn-dmt-") as work:
        for length in lengths:  # short lengths first: an interrupted study still covers them
            for task in args.tasks.split(","):
                for seed in map(int, args.seeds.split(",")):
                    report["runs"] += quality_run(
                        task, length, seed, budgets[length], args.cell, Path(work), args.threads, METHODS
                    )
                    report["summary"], report["drift"] = summarize(report["runs"]), drift_rows(report["runs"])
                    write_report(report, out, args.name, markdown)
    print(markdown(report))


if __name__ == "__main__":
    main()
