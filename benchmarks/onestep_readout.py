"""A/B of the one-step readout term (`smt.onestep_readout_weight`, `dmt.onestep_readout_weight`): SMT and SMT→DMT
with and without it, all variants side by side on one device for the same training budget, on the dense-label
tasks where plain SMT's RNN alone stays at chance (copy, delayed_recall). Writes benchmarks/results/NAME.json + md.

    python benchmarks/onestep_readout.py --device cuda --budget 60 --name onestep_readout_gpu
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness import ROOT, finish, run_cli, save_report

VARIANTS = {
    "smt": ["--method", "smt"],
    "smt + one-step readout": ["--method", "smt", "--set", "smt.onestep_readout_weight=1.0"],
    "smt+dmt": ["--method", "smt+dmt"],
    "smt+dmt + one-step readout": [
        "--method",
        "smt+dmt",
        "--set",
        "smt.onestep_readout_weight=1.0",
        "--set",
        "dmt.onestep_readout_weight=1.0",
    ],
}


def markdown(report: dict) -> str:
    lines = [
        f"T = {report['T']}, {report['budget_s']:.0f} s of training per run, all {len(report['runs'])} runs at "
        f"once on `{report['device']}`, seed {report['seed']}, `small` preset (MLP cell).",
        "",
        "| task | variant | RNN-alone acc | one-step acc | teacher acc | final drift | steps |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['task']} | {r['variant']} | {r['rnn_accuracy']:.3f} | {r['onestep_accuracy']:.3f} | "
        f"{r['teacher_accuracy']:.3f} | {r['drift_final']:.3f} | {r['steps']} |"
        for r in report["runs"]
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="copy,delayed_recall")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="onestep_readout")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="smtrnn-ab-") as work:
        procs = {}
        for task in args.tasks.split(","):
            for variant, flags in VARIANTS.items():
                out = Path(work) / f"{task}-{len(procs)}"
                procs[(task, variant)] = (
                    out,
                    run_cli(
                        [
                            "train",
                            "--task",
                            task,
                            *flags,
                            "--seq-len",
                            str(args.seq_len),
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
                            args.device,
                        ],
                        args.threads,
                    ),
                )
        for (task, variant), (out, proc) in procs.items():
            finish(proc)
            result = json.loads(
                finish(run_cli(["eval", str(out), "--json", "--batches", "16", "--device", args.device], args.threads))
            )
            steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]["step"]
            rows.append({"task": task, "variant": variant, "steps": steps} | result)
            print(
                f"{task} {variant}: rnn {result['rnn_accuracy']:.3f} one-step {result['onestep_accuracy']:.3f} "
                f"teacher {result['teacher_accuracy']:.3f} steps {steps}",
                flush=True,
            )
    report = {
        "device": args.device,
        "budget_s": args.budget,
        "T": args.seq_len,
        "seed": args.seed,
        "runs": rows,
        "command": " ".join(sys.argv),
    }
    save_report(report, args.out, args.name, markdown)


if __name__ == "__main__":
    main()
