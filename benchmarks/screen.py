"""A lever screen from a plan file: short `smtrnn train` runs, two at a time with one thread each (the study runner,
`smtrnn.tools.study`), then a table of what each run reached (RNN alone from m_∅, teacher, one-step accuracy,
drift) and its learning curve (`smtrnn.tools.study_report`).

A plan file has one run per line, `NAME ARGS...` (ARGS are `smtrnn train` arguments; `#` starts a comment); a line
`= ARGS...` puts ARGS before the arguments of every following run line, until the next `=` line. Runs live in
WORK/NAME; a finished run is skipped when the screen is started again, so an interrupted screen continues where it
stopped and `--report-only` rewrites the report from what is there; a finished run whose plan line changed is
refused. A run whose folder is gone (a fresh checkout: WORK is not committed) keeps its row of the earlier report, if
its plan line is unchanged, instead of training again.

    python benchmarks/screen.py benchmarks/plans/delayed_recall_64.txt --name screen_delayed_recall_64

Runs named NAME-sSEED are seeds of one setting: the report adds their mean and spread. With `--split test` each
finished run is also scored once on the test split (`smtrnn eval --split test`, kept as test.json in its folder;
the best validation checkpoint where the run kept one) and those numbers are the ones the seed table gives: choose
settings on the validation numbers, report the test numbers. For data tasks the report also gives each setting's
test bits of the RNN alone by position in the document (does more context keep helping?). `--plot` draws validation
bits against training time (NAME.png) and those test bits by position (NAME_positions.png).

`--eval-lengths 1024,4096,16384,65536` scores every finished run's RNN alone from m_∅ at those lengths too (`smtrnn
eval --seq-len`: streamed, O(1) memory per token, no teacher), two runs at a time after the training, kept as
lengths.json in its folder; the report adds a table of the RNN alone against the evaluation length (the task's answer
accuracy where it has answers, as passkey's key), also alone as NAME_headline.md, and, with `--plot`, NAME_lengths.png.
Without it, NAME_headline.md is each seeded setting's final score of the RNN alone (mean ± std and each seed's).
With `--key-at 64,2048` as well, passkey runs are also scored with the key's statement placed 64 and 2048 bytes in,
asked at each of those lengths (`smtrnn eval --key-at`, kept as key_at.json): where it is lost, held or unwritten;
that table is then NAME_headline.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from harness import ROOT, save_report
from smtrnn.errors import SmtrnnError
from smtrnn.tools.study import Study, read_plan, reported, seed_groups
from smtrnn.tools.study_report import (
    key_at_headline,
    length_columns,
    length_headline,
    markdown,
    position_groups,
    seed_headline,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", help="the plan file: NAME ARGS... per line")
    parser.add_argument("--name", required=True, help="the report's name in --out")
    parser.add_argument("--work", default=str(ROOT / "runs" / "screen"), help="where the runs live")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="threads per run")
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished runs")
    parser.add_argument(
        "--split",
        default="valid",
        choices=("valid", "test"),
        help="test: also score every finished run on the test split, for the final numbers",
    )
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also write NAME.png: validation bits against time (and NAME_positions.png: test bits by position)",
    )
    parser.add_argument(
        "--eval-lengths",
        metavar="T[,T...]",
        help="also score every finished run's RNN alone at these lengths (streamed, no teacher), e.g. 4096,65536",
    )
    parser.add_argument("--length-batches", type=int, default=4, help="batches per evaluation length")
    parser.add_argument(
        "--key-at",
        metavar="P[,P...]",
        help="passkey runs: also score the key with its statement placed P bytes in, at each --eval-lengths length",
    )
    args = parser.parse_args()
    out = Path(args.out)
    study = Study(Path(args.work), args.parallel, args.threads)
    lengths = [int(n) for n in args.eval_lengths.split(",")] if args.eval_lengths else None
    try:
        runs = read_plan(args.plan)
        study.check_finished(runs)
        kept = {  # a run whose folder is gone keeps its row of the earlier report
            name: row | {"kept_from_report": True}
            for name, row in reported(out / f"{args.name}.json").items()
            if not study.finished(name) and row["args"] == dict(runs).get(name)
        }
        if not args.report_only:
            study.train([(name, run_args) for name, run_args in runs if name not in kept])
            if lengths:
                study.score_lengths([name for name, _ in runs], lengths, args.length_batches)
                if args.key_at:
                    positions = [int(p) for p in args.key_at.split(",")]
                    study.score_key_at([name for name, _ in runs], positions, lengths, args.length_batches)
        rows = [study.row(name, run_args, args.split) or kept.get(name) for name, run_args in runs]
    except SmtrnnError as exc:
        sys.exit(f"screen: {exc}")
    report = {
        "plan": Path(args.plan).name,
        "device": f"cpu ({platform.machine()})",
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
        "eval_lengths": lengths,
        "runs": [r for r in rows if r],
        "missing": [name for (name, _), r in zip(runs, rows) if r is None],
    }
    # NAME_headline.md, for the documents that quote it: the key by where it was stated, else the lengths table,
    # else the seeds' scores where seeds ran
    headline = key_at_headline if args.key_at and any(r.get("key_at") for r in report["runs"]) else None
    headline = headline or (length_headline if length_columns(report) else None)
    headline = headline or (seed_headline if seed_groups(report["runs"]) else None)
    save_report(report, out, args.name, markdown, headline)
    if args.plot:
        from smtrnn.tools import plots

        plots.plot_bits(report, out / f"{args.name}.png")
        if position_groups(report):
            plots.plot_positions(report, out / f"{args.name}_positions.png")
        if length_columns(report):
            plots.plot_lengths(report, out / f"{args.name}_lengths.png")


if __name__ == "__main__":
    main()
