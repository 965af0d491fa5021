"""A lever screen from a plan file: short single-seed `smtrnn train` runs, two at a time with one thread each, then a
table of what each run reached (RNN alone from m_∅, teacher, one-step accuracy, drift) and its learning curve.

A plan file has one run per line, `NAME ARGS...` (ARGS are `smtrnn train` arguments; `#` starts a comment). Runs
live in WORK/NAME; a finished run (result.json) is skipped when the screen is started again, so an interrupted
screen continues where it stopped and `--report-only` rewrites the report from what is there. A run whose folder
is gone (a fresh checkout: WORK is not committed) keeps its row of the earlier report, if its plan line is unchanged,
instead of training again.

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
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from harness import ROOT, diagnostics_table, finish, number, reported, run_cli, save_report
from smtrnn.checkpoint import CONFIG_FILE, checkpoint_dir
from smtrnn.config import TEACHER_METHODS

ARGS_FILE = "plan_args.json"  # a finished run's `smtrnn train` arguments, as its plan line gave them
DIAGNOSTICS_FILE = "diagnostics.json"
BIT_STAGES = ("teacher", "readout_on_teacher", "onestep", "rnn")  # from the teacher's bits to the RNN alone's
TEST_FILE = "test.json"  # a finished run's test-split evaluation, measured once
LENGTHS_FILE = "lengths.json"  # a finished run's RNN alone at other lengths, {str(T): scores}, measured once
POSITION_KEY = "documents_rnn_bits_by_position"  # the RNN alone's test bits by position t in the document
SEED = re.compile(r"-s(\d+)$")  # NAME-sSEED: one seed of the setting NAME


def read_plan(path: Path) -> list[tuple[str, list[str]]]:
    """The plan's runs as (name, train arguments), in order; a repeated name is refused."""
    runs, seen = [], set()
    for line_number, line in enumerate(path.read_text().splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] in seen:
            sys.exit(f"screen: {path}:{line_number}: run name '{words[0]}' appears twice")
        seen.add(words[0])
        runs.append((words[0], words[1:]))
    return runs


def check_finished(runs: list[tuple[str, list[str]]], work: Path) -> None:
    """Refuse (exit with one line) a finished run whose plan line has changed since it trained: its results would be
    reported under arguments it never ran with. Runs finished before the screens kept their arguments are trusted."""
    for name, args in runs:
        kept = work / name / ARGS_FILE
        if kept.exists() and json.loads(kept.read_text()) != args:
            sys.exit(
                f"screen: {work / name} finished with other arguments than its plan line; move it aside or "
                "rename the run"
            )


def train_all(runs: list[tuple[str, list[str]]], work: Path, parallel: int) -> None:
    pending = [(name, args) for name, args in runs if not (work / name / "result.json").exists()]
    running = []
    while pending or running:
        while pending and len(running) < parallel:
            name, args = pending.pop(0)
            print(f"start {name}", flush=True)
            running.append(
                (
                    name,
                    run_cli(
                        [
                            "train",
                            *args,
                            "--out",
                            str(work / name),
                            "--quiet",
                            "--device",
                            "cpu",
                            *(["--resume"] if (work / name).exists() else []),
                        ],
                        threads=1,
                    ),
                )
            )
        time.sleep(2)
        for item in list(running):
            name, proc = item
            if proc.poll() is not None:
                running.remove(item)
                out, err = proc.communicate()
                if proc.returncode == 0:  # `smtrnn train` prints the final evaluation: the run is finished
                    (work / name / ARGS_FILE).write_text(json.dumps(dict(runs)[name]) + "\n")
                    (work / name / "result.json").write_text(out)
                err = err.strip().splitlines()
                print(
                    f"end {name}: exit {proc.returncode}" + (f" ({err[-1]})" if proc.returncode and err else ""),
                    flush=True,
                )


def score_lengths(names: list[str], work: Path, lengths: list[int], batches: int, parallel: int) -> None:
    """Score each finished run's RNN alone at `lengths` (`smtrnn eval --seq-len`, one thread, `parallel` at a time)
    and keep the scores in its LENGTHS_FILE; lengths already kept are not scored again."""
    pending = []
    for name in names:
        folder = work / name
        if not (folder / "result.json").exists():
            continue
        kept = json.loads((folder / LENGTHS_FILE).read_text()) if (folder / LENGTHS_FILE).exists() else {}
        missing = [n for n in lengths if str(n) not in kept]
        if missing:
            pending.append((name, missing))
    running = []
    while pending or running:
        while pending and len(running) < parallel:
            name, missing = pending.pop(0)
            print(f"score {name} at {','.join(map(str, missing))}", flush=True)
            command = ["eval", str(work / name), "--json", "--no-diagnostics", "--device", "cpu"]
            command += ["--batches", str(batches), "--seq-len", ",".join(map(str, missing)), "--max-tokens", "1"]
            running.append((name, time.time(), run_cli(command, threads=1)))
        time.sleep(1)
        for item in list(running):
            name, started, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            scored = json.loads(finish(proc))["lengths"]
            folder = work / name
            kept = json.loads((folder / LENGTHS_FILE).read_text()) if (folder / LENGTHS_FILE).exists() else {}
            (folder / LENGTHS_FILE).write_text(json.dumps(kept | scored) + "\n")
            print(f"scored {name} in {time.time() - started:.0f} s", flush=True)


def length_score(scores: dict) -> float | None:
    """What a length's row reports: the task's answer accuracy where it has answers (passkey's key digits), else the
    accuracy over every target."""
    return scores.get("rnn_answer_accuracy", scores.get("rnn_accuracy"))


def run_diagnostics(folder: Path) -> dict:
    """The failure diagnostics (`smtrnn.diagnostics`: Markov gap, growth, probe) of a finished run with a teacher,
    from `smtrnn eval` on one thread; measured once and kept in the run's folder."""
    kept = folder / DIAGNOSTICS_FILE
    if not kept.exists():
        result = json.loads(finish(run_cli(["eval", str(folder), "--json", "--device", "cpu"], threads=1)))
        kept.write_text(json.dumps(result["diagnostics"]) + "\n")
    return json.loads(kept.read_text())


def test_scores(folder: Path) -> dict:
    """The run's scores on the test split: the stages of the bits on test windows and, for data tasks, the RNN
    alone (and the teacher) over whole test documents from m_∅, with the bits by position in the document (the
    teacher's by position in its window); measured once on one thread and kept."""
    kept = folder / TEST_FILE
    if not kept.exists() or POSITION_KEY not in json.loads(kept.read_text()):  # measured before it kept positions
        result = json.loads(
            finish(
                run_cli(
                    ["eval", str(folder), "--json", "--split", "test", "--no-diagnostics", "--device", "cpu"], threads=1
                )
            )
        )
        documents = result.get("held_out_documents") or {}
        scores = {
            k: result.get(k)
            for k in (
                "checkpoint",
                "rnn_accuracy",
                "teacher_accuracy",
                "onestep_accuracy",
                *(f"{stage}_bits_per_token" for stage in BIT_STAGES),
            )
        }
        scores |= {
            f"documents_{k}": documents.get(k)
            for k in (
                "rnn_bits_per_token",
                "teacher_bits_per_token",
                "tokens",
                "documents",
                "rnn_bits_by_position",
                "teacher_bits_by_position",
            )
        }
        kept.write_text(json.dumps(scores) + "\n")
    return json.loads(kept.read_text())


def summarize_run(name: str, args: list[str], folder: Path, split: str = "valid") -> dict | None:
    """One finished run: its final evaluation, its curve of (seconds, RNN-alone accuracy) and, with a teacher, its
    teacher's curve and its failure diagnostics."""
    if not (folder / "result.json").exists():
        return None
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval" in r and "best" not in r]  # the curve: the evaluations as they came
    final = [r for r in records if "eval" in r][-1]["eval"]  # train.keep_best: the best checkpoint's, logged last
    keys = (
        "rnn_accuracy",
        "teacher_accuracy",
        "onestep_accuracy",
        "drift_labelled",
        "drift_relative",
        "rnn_bits_per_token",
        "teacher_bits_per_token",
        "onestep_bits_per_token",
        "readout_on_teacher_bits_per_token",
    )
    config = json.loads((checkpoint_dir(folder) / CONFIG_FILE).read_text())["config"]
    method = config["train"]["method"]
    best = [r["best"]["step"] for r in records if "best" in r]
    return (
        {
            "name": name,
            "args": args,
            "steps": records[-1]["step"],
            "train_seconds": records[-1]["elapsed"],
            **({"best_step": best[-1]} if best else {}),
            "cell": config["rnn"]["cell"],
            "method": method,
        }
        | {k: final.get(k) for k in keys}
        | {
            "curve": [(round(r["elapsed"], 1), r["eval"]["rnn_accuracy"]) for r in evals],
            "bits_curve": [(round(r["elapsed"], 1), r["eval"].get("rnn_bits_per_token")) for r in evals],
        }
        | ({"test": test_scores(folder)} if split == "test" else {})
        | ({"lengths": json.loads((folder / LENGTHS_FILE).read_text())} if (folder / LENGTHS_FILE).exists() else {})
        | ({"rnn_answer_accuracy": final["rnn_answer_accuracy"]} if "rnn_answer_accuracy" in final else {})
        | (
            {
                "teacher_curve": [(round(r["elapsed"], 1), r["eval"]["teacher_accuracy"]) for r in evals],
                "diagnostics": run_diagnostics(folder),
            }
            if method in TEACHER_METHODS
            else {}
        )
    )


def common_prefix(arg_lists: list[list[str]]) -> list[str]:
    """The arguments every run starts with."""
    if not arg_lists:
        return []
    prefix = arg_lists[0]
    for args in arg_lists[1:]:
        n = 0
        while n < min(len(prefix), len(args)) and prefix[n] == args[n]:
            n += 1
        prefix = prefix[:n]
    while prefix and prefix[-1].startswith("--"):  # a flag whose value differs between runs stays with its value
        prefix = prefix[:-1]
    return prefix


def markdown(report: dict) -> str:
    lines = [
        f"Plan `{report['plan']}`: one seed per run, two runs at a time with 1 thread each; {report['device']}, "
        f"torch {report['torch']}. RNN alone = the RNN from m_∅ on held-out sequences; drift/spread below 1: "
        "the rollout stays nearer the teacher's memory than other sequences' memories are.",
        "",
        "| run | method | cell | RNN alone | teacher | one-step | drift/spread | steps | RNN alone during training "
        "(s: acc) | arguments |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    bits = any(r.get("rnn_bits_per_token") is not None for r in report["runs"])  # screens before bits: as they were
    if bits:
        lines[-2] = lines[-2].replace(
            "| drift/spread |", "| drift/spread | bits: teacher / readout on teacher / one-step / RNN alone |"
        )
        lines[-1] += "---|"
    common = common_prefix([r["args"] for r in report["runs"]])
    if common:
        lines[0] += f" Every run: `{' '.join(common)}`; the table gives the rest."
    for r in report["runs"]:
        r = r | {"args": r["args"][len(common) :]}
        curve = ", ".join(f"{t:.0f}: {a:.2f}" for t, a in r["curve"])
        steps = f"{r['steps']} (best at {r['best_step']})" if r.get("best_step") else f"{r['steps']}"
        lines.append(
            f"| {r['name']} | {r['method']} | {r['cell']} | {number(r['rnn_accuracy'])} | "
            f"{number(r['teacher_accuracy'])} | {number(r['onestep_accuracy'])} | {number(r['drift_relative'])} | "
            + (f"{' / '.join(number(r.get(f'{k}_bits_per_token')) for k in BIT_STAGES)} | " if bits else "")
            + f"{steps} | {curve} | `{' '.join(r['args'])}` |"
        )
    lines += seed_table(report)
    lines += length_table(report)
    lines += position_table(report)
    lines += diagnostics_table(
        [(r["name"], r["rnn_accuracy"], r["diagnostics"]) for r in report["runs"] if r.get("diagnostics")],
        "runs with a teacher",
    )
    if report["missing"]:
        lines += ["", "Not finished: " + ", ".join(report["missing"])]
    return "\n".join(lines) + "\n"


def headline_bits(row: dict) -> float | None:
    """A run's RNN-alone bits on the test split: over whole documents where the task has them, else on windows."""
    test = row.get("test") or {}
    return test.get("documents_rnn_bits_per_token") or test.get("rnn_bits_per_token")


def seed_groups(runs: list[dict]) -> dict[str, list[dict]]:
    """The runs named NAME-sSEED grouped by NAME, in plan order; other runs are left out."""
    groups: dict[str, list[dict]] = {}
    for row in runs:
        if SEED.search(row["name"]):
            groups.setdefault(SEED.sub("", row["name"]), []).append(row)
    return groups


def spread(values: list[float | None]) -> str:
    """mean ± std (sample) of the values that are there, or a dash."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def seed_table(report: dict) -> list[str]:
    """Markdown lines (a blank line first): per setting with seeds, the test-split bits as mean ± std over seeds."""
    groups = seed_groups([r for r in report["runs"] if r.get("test")])
    if not groups:
        return []
    lines = [
        "",
        "Test split (the best validation checkpoint of each run; RNN alone from m_∅ over whole test "
        "documents where the task has them, else on test windows): mean ± std over seeds.",
        "",
        "| setting | method | cell | seeds | RNN alone bits | per seed | teacher bits | one-step bits | steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in groups.items():
        tests = [r["test"] for r in rows]
        teacher = [t.get("documents_teacher_bits_per_token") or t.get("teacher_bits_per_token") for t in tests]
        lines.append(
            f"| {name} | {rows[0]['method']} | {rows[0]['cell']} | {len(rows)} | "
            f"{spread([headline_bits(r) for r in rows])} | "
            f"{' / '.join(number(headline_bits(r)) for r in rows)} | {spread(teacher)} | "
            f"{spread([t.get('onestep_bits_per_token') for t in tests])} | "
            f"{round(statistics.mean(r['steps'] for r in rows))} |"
        )
    return lines


def length_columns(report: dict) -> list[str]:
    """The evaluation lengths any run was scored at, in increasing order."""
    return sorted({n for r in report["runs"] for n in r.get("lengths", {})}, key=int)


def length_means(rows: list[dict], columns: list[str]) -> dict[str, list[float]]:
    """{column: the seeds' scores there}; "train" is each run's own final evaluation at its training length."""
    values = {"train": [length_score(r) for r in rows if length_score(r) is not None]}
    for n in columns:
        values[n] = [length_score(r["lengths"][n]) for r in rows if n in r.get("lengths", {})]
    return values


def length_table(report: dict) -> list[str]:
    """Markdown lines (a blank line first): per setting, the RNN alone at its training length and at each evaluation
    length (mean ± std over seeds where there are several), and the steps and seconds it trained."""
    columns = length_columns(report)
    if not columns:
        return []
    groups = seed_groups(report["runs"]) | {r["name"]: [r] for r in report["runs"] if not SEED.search(r["name"])}
    lines = [
        "",
        "The RNN alone from m_∅ against the evaluation length (streamed, no teacher; the answer accuracy where the "
        "task has answers, else the accuracy over every target), mean ± std over seeds:",
        "",
        "| setting | method | cell | seeds | steps | seconds | at training T | "
        + " | ".join(f"T = {n}" for n in columns)
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(columns),
    ]
    for name, rows in groups.items():
        if not any(r.get("lengths") for r in rows):
            continue
        values = length_means(rows, columns)
        lines.append(
            f"| {name} | {rows[0]['method']} | {rows[0]['cell']} | {len(rows)} | "
            f"{round(statistics.mean(r['steps'] for r in rows))} | "
            f"{round(statistics.mean(r['train_seconds'] for r in rows))} | "
            + " | ".join(spread(values[c]) for c in ["train", *columns])
            + " |"
        )
    return lines


def length_headline(report: dict) -> str:
    """NAME_headline.md: the table of the RNN alone against the evaluation length, on its own."""
    return "\n".join(length_table(report)[1:]) + "\n"


def plot_lengths(report: dict, path: Path) -> None:
    """The RNN alone against the evaluation length (log axis), the mean over seeds, one line per setting."""
    columns = length_columns(report)
    fig, ax = new_axes()
    groups = seed_groups(report["runs"]) | {r["name"]: [r] for r in report["runs"] if not SEED.search(r["name"])}
    for i, (name, rows) in enumerate(groups.items()):
        values = length_means(rows, columns)
        points = [(int(c), statistics.mean(values[c])) for c in columns if values[c]]
        if points:  # ten colours, then the next line style: every setting tells apart from the others
            ax.plot(*zip(*points), marker="o", color=f"C{i % 10}", linestyle=("-", "--", ":")[i // 10 % 3], label=name)
    ax.set_xscale("log", base=2)
    save_figure(fig, ax, "evaluation length T (trained shorter)", "RNN alone from m_∅, accuracy", path)


def position_means(rows: list[dict]) -> dict[str, float]:
    """{bucket of t: the seeds' mean test bits of the RNN alone there}, over the buckets every seed has."""
    seeds = [r["test"][POSITION_KEY] for r in rows]
    return {b: statistics.mean(s[b] for s in seeds) for b in seeds[0] if all(b in s for s in seeds)}


def position_groups(report: dict) -> dict[str, list[dict]]:
    """The seed groups whose every run has test bits by position in the document."""
    groups = seed_groups([r for r in report["runs"] if r.get("test")])
    return {name: rows for name, rows in groups.items() if all((r["test"] or {}).get(POSITION_KEY) for r in rows)}


def position_table(report: dict) -> list[str]:
    """Markdown lines (a blank line first): per setting, the RNN alone's test bits by position t in the document
    (power-of-two buckets, mean over seeds): does more context keep helping, and for which method?"""
    groups = position_groups(report)
    if not groups:
        return []
    means = {name: position_means(rows) for name, rows in groups.items()}
    buckets = list(max(means.values(), key=len))
    lines = [
        "",
        "RNN alone from m_∅ over whole test documents, bits per token by position t in the document (mean over "
        "seeds; a bucket only where every seed has tokens there):",
        "",
        "| setting | " + " | ".join(f"t {b}" for b in buckets) + " |",
        "|---|" + "---|" * len(buckets),
    ]
    for name, by_bucket in means.items():
        lines.append(f"| {name} | " + " | ".join(number(by_bucket.get(b)) for b in buckets) + " |")
    return lines


def new_axes():
    """A figure and its axes for one of the screen's plots, drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))


def save_figure(fig, ax, xlabel: str, ylabel: str, path: Path) -> None:
    """Label the axes, add the legend and write the figure to `path`."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_positions(report: dict, path: Path) -> None:
    """Test bits of the RNN alone by position in the document (mean over seeds), one line per setting."""
    fig, ax = new_axes()
    for name, rows in position_groups(report).items():
        by_bucket = position_means(rows)
        ax.plot(range(len(by_bucket)), list(by_bucket.values()), marker="o", label=name)
        ax.set_xticks(range(len(by_bucket)), list(by_bucket), rotation=45, fontsize=7)
    save_figure(fig, ax, "position t in the test document (bucket)", "RNN alone, test bits per token", path)


def plot_bits(report: dict, path: Path) -> None:
    """Validation bits of the RNN alone against training seconds, one line per run, one colour per setting."""
    fig, ax = new_axes()
    colours: dict[str, str] = {}
    for row in report["runs"]:
        points = [(t, b) for t, b in row.get("bits_curve", []) if b is not None]
        if not points:
            continue
        setting = SEED.sub("", row["name"])
        first = setting not in colours  # one legend entry per setting
        colour = colours.setdefault(setting, f"C{len(colours) % 10}")
        ax.plot(*zip(*points), color=colour, alpha=0.8, label=setting if first else None)
    save_figure(fig, ax, "training seconds", "RNN alone, validation bits per token", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", help="the plan file: NAME ARGS... per line")
    parser.add_argument("--name", required=True, help="the report's name in --out")
    parser.add_argument("--work", default=str(ROOT / "runs" / "screen"), help="where the runs live")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
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
    args = parser.parse_args()
    plan, work = Path(args.plan), Path(args.work)
    if not plan.is_file():
        sys.exit(f"screen: no plan file {plan}")
    runs = read_plan(plan)
    check_finished(runs, work)
    earlier = reported(Path(args.out) / f"{args.name}.json")
    kept = {
        name: row | {"kept_from_report": True}
        for name, row in earlier.items()
        if not (work / name / "result.json").exists() and row["args"] == dict(runs).get(name)
    }
    if not args.report_only:
        train_all([(name, run_args) for name, run_args in runs if name not in kept], work, args.parallel)
        if args.eval_lengths:
            lengths = [int(n) for n in args.eval_lengths.split(",")]
            score_lengths([name for name, _ in runs], work, lengths, args.length_batches, args.parallel)
    rows = [summarize_run(name, run_args, work / name, args.split) or kept.get(name) for name, run_args in runs]
    report = {
        "plan": plan.name,
        "device": f"cpu ({platform.machine()})",
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
        "runs": [r for r in rows if r],
        "missing": [name for (name, _), r in zip(runs, rows) if r is None],
    }
    save_report(report, args.out, args.name, markdown)
    if length_columns(report):  # the length table alone as NAME_headline.md, for the documents that quote it
        path = Path(args.out) / f"{args.name}.json"
        written = json.loads(path.read_text())
        written["benchmark"]["headline_table"] = length_headline.__name__
        path.write_text(json.dumps(written, indent=2) + "\n")
        (Path(args.out) / f"{args.name}_headline.md").write_text(length_headline(written))
    if args.plot:
        plot_bits(report, Path(args.out) / f"{args.name}.png")
        if position_groups(report):
            plot_positions(report, Path(args.out) / f"{args.name}_positions.png")
        if length_columns(report):
            plot_lengths(report, Path(args.out) / f"{args.name}_lengths.png")


if __name__ == "__main__":
    main()
