"""Re-evaluate finished run directories with today's `smtrnn eval` (e.g. for diagnostics added after a study ran) and
write one table: RNN alone, one-step, drift at labelled positions and relative to the teacher memories' spread.

    python benchmarks/reevaluate.py RUN_DIR ... --name dmt_drift --batches 4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness import ROOT, finish, run_cli, save_report


def markdown(report: dict) -> str:
    lines = [
        f"`smtrnn eval --batches {report['batches']}` of finished runs (RNN alone from m_∅; drift at the labelled "
        "positions, and that drift over the variance of teacher memories across sequences there):",
        "",
        "| run | RNN-alone acc | one-step acc | readout on teacher memories | drift (labelled) | "
        "drift / memory spread |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        if "drift_relative" in r:
            lines.append(
                f"| {r['run']} | {r['rnn_accuracy']:.3f} | {r['onestep_accuracy']:.3f} | "
                f"{r['readout_on_teacher_accuracy']:.3f} | {r['drift_labelled']:.3f} | "
                f"{r['drift_relative']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        result = json.loads(
            finish(run_cli(["eval", run, "--json", "--batches", str(args.batches), "--device", "cpu"], 1))
        )
        rows.append({"run": Path(run).name} | result)
        print(
            f"{Path(run).name}: rnn {result['rnn_accuracy']:.3f} drift_relative {result.get('drift_relative')}",
            flush=True,
        )
    save_report({"batches": args.batches, "command": " ".join(sys.argv), "runs": rows}, args.out, args.name, markdown)


if __name__ == "__main__":
    main()
