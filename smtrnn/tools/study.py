"""A study: named `smtrnn train` runs from a plan, trained `parallel` at a time as subprocesses of `threads` threads
each, then measured and summarized per setting over seeds. `smtrnn compare` writes its grid as a plan;
benchmarks/screen.py reads one from a file. Tables: `smtrnn.tools.study_report`; figures: `smtrnn.tools.plots`.

A plan has one run per line, `NAME ARGS...` (ARGS are `smtrnn train` arguments, shell-quoted; `#` starts a comment).
A line `= ARGS...` sets a base put before the arguments of every following run line, until the next `=` line (a
bare `=` clears it): the lines

    = --task copy --seq-len 64 --budget 240
    copy-smt --method smt+dmt
    copy-bptt --method bptt

are the runs `copy-smt --task copy --seq-len 64 --budget 240 --method smt+dmt` and `copy-bptt ... --method bptt`.

Runs live in WORK/NAME. A finished run (RESULT_FILE: what `smtrnn train` printed) is skipped when the study is run
again, an interrupted one resumes, and a finished run whose expanded plan line differs from the one it trained with
(ARGS_FILE) is refused before anything starts. Runs named NAME-sSEED are seeds of the setting NAME. What is measured
after training is measured once and kept in the run's folder: LENGTHS_FILE (the RNN alone at other lengths),
KEY_AT_FILE (a passkey's key stated at given bytes), TEST_FILE (the test split), DIAGNOSTICS_FILE (the failure
diagnostics of a run with a teacher).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import smtrnn
from smtrnn.checkpoint import CONFIG_FILE, METRICS_FILE, checkpoint_dir, holds_run
from smtrnn.config import TEACHER_METHODS
from smtrnn.data.tasks import all_tasks
from smtrnn.errors import ConfigError, SmtrnnError

Plan = list[tuple[str, list[str]]]  # (run name, `smtrnn train` arguments), in order

RESULT_FILE = "result.json"  # a finished run's final evaluation, as `smtrnn train` printed it
ARGS_FILE = "plan_args.json"  # a finished run's `smtrnn train` arguments, as its expanded plan line gave them
LENGTHS_FILE = "lengths.json"  # the RNN alone at other lengths, {str(T): scores}
KEY_AT_FILE = "key_at.json"  # passkey: the key stated at byte P, asked at length T, {str(P): {str(T): scores}}
TEST_FILE = "test.json"  # the test-split evaluation
DIAGNOSTICS_FILE = "diagnostics.json"
BIT_STAGES = ("teacher", "readout_on_teacher", "onestep", "rnn")  # from the teacher's bits to the RNN alone's
POSITION_KEY = "documents_rnn_bits_by_position"  # the RNN alone's test bits by position t in the document
SEED = re.compile(r"-s(\d+)$")  # NAME-sSEED: one seed of the setting NAME


def parse_plan(text: str, source: str = "plan") -> Plan:
    """The runs of a plan's text, base lines expanded; a repeated name is refused."""
    runs, base, seen = [], [], set()
    for line_number, line in enumerate(text.splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "=":
            base = words[1:]
            continue
        if words[0] in seen:
            raise ConfigError(f"{source}:{line_number}: run name '{words[0]}' appears twice")
        seen.add(words[0])
        runs.append((words[0], base + words[1:]))
    return runs


def read_plan(path: str | Path) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no plan file {path}")
    return parse_plan(path.read_text(), str(path))


def common_prefix(arg_lists: list[list[str]]) -> list[str]:
    """The arguments every run starts with, short of a last flag whose value differs between runs."""
    if not arg_lists:
        return []
    prefix = arg_lists[0]
    for args in arg_lists[1:]:
        n = 0
        while n < min(len(prefix), len(args)) and prefix[n] == args[n]:
            n += 1
        prefix = prefix[:n]
    while prefix and prefix[-1].startswith("--"):
        prefix = prefix[:-1]
    return prefix


def plan_text(runs: Plan, comment: str = "") -> str:
    """A plan file of `runs`: a base line of what they all start with, then one line per run; `comment` first."""
    base = common_prefix([args for _, args in runs])
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [shlex.join(["=", *base])] if base else []
    lines += [shlex.join([name, *args[len(base) :]]) for name, args in runs]
    return "\n".join(lines) + "\n"


def run_cli(args: list[str], threads: int | None) -> subprocess.Popen:
    """`python -m smtrnn ARGS` with `threads` threads (None: torch's default) on this smtrnn; its stdout and stderr
    go to temporary files (a pipe that fills would stall it), read by `output`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(smtrnn.__file__).parents[1]), env.get("PYTHONPATH")]))
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    streams = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "smtrnn", *args], env=env, stdout=streams[0], stderr=streams[1])
    proc.streams = streams
    return proc


def output(proc: subprocess.Popen) -> tuple[str, str]:
    """A finished `run_cli` process's stdout and stderr."""
    proc.wait()
    texts = []
    for stream in proc.streams:
        stream.seek(0)
        texts.append(stream.read())
        stream.close()
    return texts[0], texts[1]


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def finish(proc: subprocess.Popen) -> str:
    """The stdout of a `run_cli` process that must succeed; a failure raises its last line of stderr."""
    out, err = output(proc)
    if proc.returncode:
        raise SmtrnnError(f"smtrnn {' '.join(proc.args[3:5])} failed (exit {proc.returncode}): {last_line(err)}")
    return out


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.exists() else default


@dataclass
class Study:
    """Where the runs live and how they run: `parallel` subprocesses at a time, `threads` threads each (None: torch's
    default), on `device`; `log` gets one line per event."""

    work: Path
    parallel: int = 2
    threads: int | None = 1
    device: str = "cpu"
    log: Callable[[str], None] = print
    trust_cell_code: bool = False

    def _pool(self, jobs: list[tuple[str, list[str], str]], done: Callable[[str, subprocess.Popen], None]) -> None:
        """Run each (name, smtrnn arguments, line to log) job, `parallel` at a time; `done(name, process)` as each
        ends."""
        pending, running = list(jobs), []
        while pending or running:
            while pending and len(running) < self.parallel:
                name, args, line = pending.pop(0)
                self.log(line)
                running.append((name, run_cli(args, self.threads)))
            time.sleep(0.2)
            for item in [item for item in running if item[1].poll() is not None]:
                running.remove(item)
                done(*item)

    def check_finished(self, runs: Plan) -> None:
        """Refuse a finished run whose expanded plan line has changed since it trained: its results would be reported
        under arguments it never ran with. Runs finished before studies kept their arguments are trusted."""
        for name, args in runs:
            kept = read_json(self.work / name / ARGS_FILE)
            if kept is not None and kept != args:
                raise ConfigError(
                    f"{self.work / name} finished with other arguments than its plan line; move it aside or "
                    "rename the run"
                )

    def finished(self, name: str) -> bool:
        return (self.work / name / RESULT_FILE).exists()

    def train(self, runs: Plan) -> None:
        """Train every unfinished run (resuming one that left a trace); a run that fails is logged and left out."""
        self.check_finished(runs)
        jobs = []
        for name, args in runs:
            folder = self.work / name
            if self.finished(name):
                self.log(f"{name}: finished earlier, skipped")
                continue
            resume = holds_run(folder)
            command = ["train", *args, "--out", str(folder), "--quiet", "--device", self.device]
            jobs.append((name, command + ["--resume"] * resume, f"start {name}" + " (resuming)" * resume))
        planned = dict(runs)

        def done(name: str, proc: subprocess.Popen) -> None:
            out, err = output(proc)
            if proc.returncode == 0 and out.strip():  # `smtrnn train` printed its final evaluation: finished
                (self.work / name / ARGS_FILE).write_text(json.dumps(planned[name]) + "\n")
                (self.work / name / RESULT_FILE).write_text(out)
            cause = f" ({last_line(err)})" if proc.returncode and err.strip() else ""
            self.log(f"end {name}: exit {proc.returncode}{cause}")

        self._pool(jobs, done)

    def score_lengths(self, names: list[str], lengths: list[int], batches: int, teacher: bool = False) -> None:
        """Score each finished run's RNN alone (and its teacher with `teacher`) at `lengths`, `smtrnn eval
        --seq-len`, into its LENGTHS_FILE; lengths already kept are not scored again. A failure raises its line."""
        flags = ["--teacher-at-lengths"] * teacher

        def missing(kept: dict) -> list[int]:
            return [n for n in lengths if str(n) not in kept]

        def command(todo: list[int]) -> list[str]:
            return ["--seq-len", ",".join(map(str, todo)), *flags]

        self._score(names, LENGTHS_FILE, "lengths", missing, command, batches, "at")

    def score_key_at(self, names: list[str], positions: list[int], lengths: list[int], batches: int) -> None:
        """Score each finished run whose task states a key (passkey) with the statement placed at each of
        `positions` and the key asked at each of `lengths`, `smtrnn eval --key-at --key-lengths` (the RNN alone), into
        its KEY_AT_FILE (null where a length has no room for the statement); positions kept at every length are not
        scored again, runs of other tasks are left out, and a failure (a position no length has room for) raises."""
        at = ",".join(map(str, lengths))
        names = [name for name in filter(self.finished, names) if self.states_a_key(name)]

        def missing(kept: dict) -> list[int]:
            return [p for p in positions if not all(str(n) in kept.get(str(p), {}) for n in lengths)]

        def command(todo: list[int]) -> list[str]:
            return ["--key-at", ",".join(map(str, todo)), "--key-lengths", at]

        self._score(names, KEY_AT_FILE, "key_at", missing, command, batches, "with the key stated at")

    def states_a_key(self, name: str) -> bool:
        """Whether a finished run's task places a key's statement where it is told (`statement_at`: passkey)."""
        task = all_tasks().get(self.record(name)["config"]["task"]["name"])
        return task is not None and "statement_at" in {field.name for field in dataclasses.fields(task)}

    def _score(self, names, file: str, key: str, missing, command, batches: int, what: str) -> None:
        """Each finished run's `smtrnn eval --json` with the flags `command(missing(kept))`, two at a time; the
        result's `key` merged into the run's `file`; a run with nothing missing is not evaluated."""
        jobs = []
        for name in filter(self.finished, names):
            todo = missing(read_json(self.work / name / file, {}))
            if todo:
                flags = ["eval", str(self.work / name), "--json", "--no-diagnostics", "--device", self.device]
                flags += ["--batches", str(batches), *command(todo), "--max-tokens", "1"]
                flags += ["--trust-cell-code"] * self.trust_cell_code
                jobs.append((name, flags, f"score {name} {what} {','.join(map(str, todo))}"))
        failed = []

        def done(name: str, proc: subprocess.Popen) -> None:
            try:
                scored = json.loads(finish(proc))[key]
            except SmtrnnError as exc:
                failed.append(f"{name}: {exc}")
                return
            path = self.work / name / file
            kept = read_json(path, {})  # one level deep: a position's lengths (key_at) join those kept
            path.write_text(json.dumps(kept | {k: kept.get(k, {}) | v for k, v in scored.items()}) + "\n")
            self.log(f"scored {name}")

        self._pool(jobs, done)
        if failed:
            raise SmtrnnError(failed[0] + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))

    def evaluate(self, name: str, *flags: str) -> dict:
        """`smtrnn eval RUN --json FLAGS` of one run, on one process of this study's threads."""
        command = ["eval", str(self.work / name), "--json", "--device", self.device, *flags]
        return json.loads(finish(run_cli(command + ["--trust-cell-code"] * self.trust_cell_code, self.threads)))

    def diagnostics(self, name: str) -> dict:
        """The failure diagnostics (`smtrnn.diagnostics`: Markov gap, growth, probe) of a run with a teacher."""
        path = self.work / name / DIAGNOSTICS_FILE
        if not path.exists():
            path.write_text(json.dumps(self.evaluate(name)["diagnostics"]) + "\n")
        return read_json(path)

    def test_scores(self, name: str) -> dict:
        """The run's scores on the test split: the stages of the bits on test windows and, for data tasks, the RNN
        alone (and the teacher) over whole test documents from m_∅, with the bits by position in the document."""
        path = self.work / name / TEST_FILE
        if POSITION_KEY not in read_json(path, {}):  # missing, or measured before it kept positions
            result = self.evaluate(name, "--split", "test", "--no-diagnostics")
            documents = result.get("held_out_documents") or {}
            keys = ("checkpoint", "rnn_accuracy", "teacher_accuracy", "onestep_accuracy")
            scores = {k: result.get(k) for k in (*keys, *(f"{stage}_bits_per_token" for stage in BIT_STAGES))}
            keys = ("rnn_bits_per_token", "teacher_bits_per_token", "tokens", "documents")
            scores |= {
                f"documents_{k}": documents.get(k) for k in (*keys, "rnn_bits_by_position", "teacher_bits_by_position")
            }
            path.write_text(json.dumps(scores) + "\n")
        return read_json(path)

    def record(self, name: str) -> dict | None:
        """A finished run as logged: its config, its evaluations during training and its final one (the best
        checkpoint's where train.keep_best kept one: logged last), steps and seconds; None if unfinished."""
        folder = self.work / name
        if not self.finished(name):
            return None
        records = [json.loads(line) for line in (folder / METRICS_FILE).read_text().splitlines()]
        best = [r["best"]["step"] for r in records if "best" in r]
        return {
            "config": json.loads((checkpoint_dir(folder) / CONFIG_FILE).read_text())["config"],
            "evals": [r for r in records if "eval" in r and "best" not in r],
            "final": [r for r in records if "eval" in r][-1]["eval"],
            "steps": records[-1]["step"],
            "train_seconds": records[-1]["elapsed"],
            "best_step": best[-1] if best else None,
            "lengths": read_json(folder / LENGTHS_FILE),
            "key_at": read_json(folder / KEY_AT_FILE),
        }

    def row(self, name: str, args: list[str], split: str = "valid", diagnostics: bool = True) -> dict | None:
        """A finished run's row of the screen's report: its final evaluation, its curves of (seconds, RNN-alone
        accuracy / bits) and, with a teacher, its teacher's curve and (with `diagnostics`) its failure diagnostics;
        with split "test" its test scores."""
        run = self.record(name)
        if run is None:
            return None
        final, evals, method = run["final"], run["evals"], run["config"]["train"]["method"]
        keys = ("rnn_accuracy", "teacher_accuracy", "onestep_accuracy", "drift_labelled", "drift_relative")
        keys += tuple(f"{stage}_bits_per_token" for stage in ("rnn", "teacher", "onestep", "readout_on_teacher"))
        teacher = method in TEACHER_METHODS
        return (
            {"name": name, "args": args, "steps": run["steps"], "train_seconds": run["train_seconds"]}
            | ({"best_step": run["best_step"]} if run["best_step"] is not None else {})
            | {"cell": run["config"]["rnn"]["cell"], "method": method}
            | {k: final.get(k) for k in keys}
            | {
                "curve": [(round(r["elapsed"], 1), r["eval"]["rnn_accuracy"]) for r in evals],
                "bits_curve": [(round(r["elapsed"], 1), r["eval"].get("rnn_bits_per_token")) for r in evals],
            }
            | ({"test": self.test_scores(name)} if split == "test" else {})
            | ({"lengths": run["lengths"]} if run["lengths"] is not None else {})
            | ({"key_at": run["key_at"]} if run["key_at"] is not None else {})
            | ({"rnn_answer_accuracy": final["rnn_answer_accuracy"]} if "rnn_answer_accuracy" in final else {})
            | (
                {"teacher_curve": [(round(r["elapsed"], 1), r["eval"]["teacher_accuracy"]) for r in evals]}
                if teacher
                else {}
            )
            | ({"diagnostics": self.diagnostics(name)} if teacher and diagnostics else {})
        )


def reported(path: Path) -> dict[str, dict]:
    """The runs of the report at `path` (written by an earlier invocation) by name; none if it does not exist. A
    study keeps such a row for a run whose folder is gone from its run store (a fresh checkout: the store is not
    committed) instead of training it again."""
    return {row["name"]: row for row in read_json(path, {"runs": []})["runs"]}


def setting(name: str) -> str:
    """The setting a run is a seed of: NAME of NAME-sSEED, else the run's own name."""
    return SEED.sub("", name)


def seed_groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The rows named NAME-sSEED grouped by NAME, in plan order; other rows are left out."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if SEED.search(row["name"]):
            groups.setdefault(setting(row["name"]), []).append(row)
    return groups


def settings(rows: list[dict]) -> dict[str, list[dict]]:
    """Every setting's rows: the seed groups first, then each run without a seed alone."""
    return seed_groups(rows) | {r["name"]: [r] for r in rows if not SEED.search(r["name"])}


def summary(values: list[float | None]) -> dict | None:
    """mean, std (sample; 0 for one), min, max and count of the values that are there; None without any."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.mean(values), "std": std, "min": min(values), "max": max(values), "seeds": len(values)}


def mean(values: list[float | None]) -> float | None:
    """The mean of the values that are there; None without any."""
    return (summary(values) or {}).get("mean")


def spread(values: list[float | None]) -> str:
    """mean ± std (sample) of the values that are there, or a dash."""
    s = summary(values)
    return "–" if s is None else f"{s['mean']:.3f} ± {s['std']:.3f}"


def _rows_json(value) -> str | None:
    """A list or mapping of records, one record a line (indented for a report's top level); None for anything
    else."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "[\n" + ",\n".join(f"    {json.dumps(v)}" for v in value) + "\n  ]"
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return "{\n" + ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()) + "\n  }"
    return None


def report_json(report: dict) -> str:
    """A report as JSON text: each top-level field on its own lines, and each record of a list or mapping of records
    (every run of "runs") on one line, so a diff shows one line per run."""
    fields = [
        f"  {json.dumps(k)}: " + (_rows_json(v) or json.dumps(v, indent=2).replace("\n", "\n  "))
        for k, v in report.items()
    ]
    return "{\n" + ",\n".join(fields) + "\n}\n"
