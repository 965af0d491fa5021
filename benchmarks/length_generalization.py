"""Length generalization: train at T = 64, score at 64, 128, 256 and 512.

For `stack`, `parity` and `retrieval`: SMT→DMT (the long-range recipe, `contractive`), its Transformer teacher, BPTT on
the same cell and memory, and the fused `nn.GRU` (BPTT), each trained for the same wall-clock at T = 64 through
`smtrnn compare --eval-lengths`, then the RNN alone (from m_∅) and the teacher scored on held-out sequences of every
length. One `smtrnn compare` per task, two tasks at a time with one thread each; the studies live in WORK/TASK
(resumable: a finished run is only scored again at lengths it lacks).

    python benchmarks/length_generalization.py                         # 120 s per run, 1 seed (about 15 min)
    python benchmarks/length_generalization.py --budget 5 --work /tmp/lg --out /tmp/lg-results   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from harness import ROOT, save_report

TASKS = ("stack", "parity", "retrieval")
METHODS = ("smt+dmt", "bptt", "gru-fused")
TRAIN_LENGTH = 64
EVAL_LENGTHS = (128, 256, 512)


def compare_argv(task: str, args: argparse.Namespace, work: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "smtrnn",
        "compare",
        "--task",
        task,
        "--lengths",
        str(TRAIN_LENGTH),
        "--methods",
        ",".join(METHODS),
        "--seeds",
        str(args.seeds),
        "--budget",
        str(args.budget),
        "--preset",
        args.preset,
        "--eval-lengths",
        ",".join(map(str, EVAL_LENGTHS)),
        "--eval-batches",
        "4",
        "--device",
        "cpu",
        "--out",
        str(work / task),
    ]


def collect(work: Path, args: argparse.Namespace) -> dict:
    rows = []
    for task in TASKS:
        study = work / task / "results.json"
        if not study.exists():
            continue
        for run in json.loads(study.read_text())["runs"]:
            at = {str(TRAIN_LENGTH): {"rnn": run["rnn_accuracy"], "teacher": run.get("teacher_accuracy")}}
            at |= {
                n: {"rnn": v["rnn_accuracy"], "teacher": v.get("teacher_accuracy")} for n, v in run["lengths"].items()
            }
            rows.append(
                {
                    "task": task,
                    "method": run["method"],
                    "cell": run["cell"],
                    "seed": run["seed"],
                    "steps": run["steps"],
                    "train_seconds": run["train_seconds"],
                    "accuracy": at,
                }
            )
    import torch

    return {
        "train_length": TRAIN_LENGTH,
        "lengths": [TRAIN_LENGTH, *EVAL_LENGTHS],
        "budget_s": args.budget,
        "seeds": args.seeds,
        "preset": args.preset,
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "runs": rows,
    }


def markdown(report: dict) -> str:
    lengths = [str(n) for n in report["lengths"]]
    lines = [
        f"Trained at T = {report['train_length']} for {report['budget_s']:g} s each (preset `{report['preset']}`, "
        f"{report['seeds']} seed(s), one thread per run), scored on held-out sequences at every length: accuracy "
        "of the RNN alone from m_∅, and of SMT→DMT's Transformer teacher. "
        f"{report['device']}, torch {report['torch']}.",
        "",
        "| task | model | steps | " + " | ".join(f"T = {n}" for n in lengths) + " |",
        "|---|---|---|" + "---|" * len(lengths),
    ]

    def cells(run, who):
        return " | ".join("–" if run["accuracy"][n][who] is None else f"{run['accuracy'][n][who]:.3f}" for n in lengths)

    for run in report["runs"]:
        name = run["method"] + (f" s{run['seed']}" if report["seeds"] > 1 else "")
        lines.append(f"| {run['task']} | {name}: RNN alone | {run['steps']} | {cells(run, 'rnn')} |")
        if run["accuracy"][lengths[0]]["teacher"] is not None:
            lines.append(f"| {run['task']} | {name}: its teacher | {run['steps']} | {cells(run, 'teacher')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per run")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--preset", default="contractive")
    parser.add_argument("--parallel", type=int, default=2, help="tasks at a time (one thread each)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "length_generalization"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    pending, running = list(TASKS), []
    while pending or running:
        while pending and len(running) < args.parallel:
            task = pending.pop(0)
            running.append((task, subprocess.Popen(compare_argv(task, args, work), env=env, stdout=subprocess.PIPE)))
        task, proc = running.pop(0)
        proc.wait()
        if proc.returncode:
            sys.exit(f"length_generalization: the {task} study failed (exit {proc.returncode})")
    save_report(collect(work, args), out, "length_generalization", markdown)


if __name__ == "__main__":
    main()
