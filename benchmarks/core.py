"""Core benchmark: SMT (the paper's joint schedule, the default; and the staged one), SMT→DMT and BPTT on the
same RNN cell, equal wall-clock, scored on the RNN alone; and supervised transitions per second of an SMT step vs a
BPTT step.

Quality runs go through the public CLI (`python -m smtrnn train/eval`). The runs of one (task, T, seed) run at the
same time, one thread each, so all see the same machine load; the budget is training time (evaluation excluded).
Writes benchmarks/results/core.json and core.md.

    python benchmarks/core.py                      # full study (about 30 minutes on 2 cores at the defaults)
    python benchmarks/core.py --budget 20 --seeds 0 --lengths 64 --tasks retrieval   # quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from harness import METHOD_ARGS, ROOT, quality_run, quality_table, save_report, summarize, throughput


def throughput_table(rows: list[dict]) -> list[str]:
    where = rows[0].get("device", "cpu")
    lines = [
        f"Supervised transitions per second (B·T per step, forward + backward, "
        f"{'2 CPU threads' if where == 'cpu' else where}):",
        "",
        "| T | batch | SMT full step | SMT RNN phase (teacher frozen) | BPTT | full / BPTT | RNN phase / BPTT |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in rows:
        lines.append(
            f"| {t['T']} | {t['batch']} | {t['smt_full_transitions_per_s']:.0f} | "
            f"{t['smt_rnn_phase_transitions_per_s']:.0f} | {t['bptt_transitions_per_s']:.0f} | "
            f"{t['ratio_smt_full_over_bptt']:.2f} | {t['ratio_smt_rnn_phase_over_bptt']:.2f} |"
        )
    return lines


def throughput_markdown(report: dict) -> str:
    """The throughput table alone, for a report of `throughput` rows without quality runs (throughput_gpu)."""
    return "\n".join(throughput_table(report["throughput"])) + "\n"


def markdown(report: dict) -> str:
    lines = [
        f"Budget {report['budget_s']:.0f} s of training per run, cell `{report['cell']}`, "
        f"{report['threads_per_run']} thread per run, all methods of a row group run at once; "
        f"{report['device']}, torch {report['torch']}.",
        "",
        *quality_table(report["summary"]),
    ]
    if report["throughput"]:
        lines += ["", *throughput_table(report["throughput"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="retrieval,delayed_recall")
    parser.add_argument("--lengths", default="64,256")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per run")
    parser.add_argument("--cell", default="mlp")
    parser.add_argument("--methods", default="smt,smt-staged,smt+dmt,bptt", help=f"from {', '.join(METHOD_ARGS)}")
    parser.add_argument("--threads", type=int, default=1, help="threads per training run (all methods run at once)")
    parser.add_argument("--throughput-lengths", default="256,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="core")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="smtrnn-bench-") as work:
        for task in args.tasks.split(","):
            for length in map(int, args.lengths.split(",")):
                for seed in map(int, args.seeds.split(",")):
                    rows += quality_run(
                        task, length, seed, args.budget, args.cell, Path(work), args.threads, args.methods.split(",")
                    )
    torch.set_num_threads(2)
    speed = [
        throughput(length, args.cell, 32, args.repeats)
        for length in map(int, filter(None, args.throughput_lengths.split(",")))
    ]
    report = {
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "budget_s": args.budget,
        "cell": args.cell,
        "threads_per_run": args.threads,
        "summary": summarize(rows),
        "runs": rows,
        "throughput": speed,
        "command": " ".join(sys.argv),
    }
    save_report(report, args.out, args.name, markdown)


if __name__ == "__main__":
    main()
