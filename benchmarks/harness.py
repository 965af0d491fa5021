"""The harness every benchmark script shares: running the CLI one thread per process, step timing, the small model
the speed studies time, the throughput measurement, and writing a report (NAME.json, naming the script and function
that render its table, + NAME.md). Benchmarks import it as `harness` (their own folder is on sys.path when they run)
and smtrnn as the installed package.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from smtrnn.bptt import bptt_loss
from smtrnn.data.tasks import make_task
from smtrnn.model import Model
from smtrnn.presets import small
from smtrnn.smt import smt_loss

ROOT = Path(__file__).resolve().parents[1]  # the checkout: results go under it; smtrnn is the installed package


def run_cli(args: list[str], threads: int) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "smtrnn", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{proc.args} failed ({proc.returncode}): {err.strip().splitlines()[-1:]}")
    return out


def step_time(fn, repeats: int) -> float:
    """Median seconds of fn() after one warm-up call; waits for the GPU where there is one."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def small_model(cell: str, length: int, batch: int, device: str = "cpu"):
    """The `small` preset's model on retrieval with one fixed batch: (cfg, model, x, y) for step timings."""
    torch.manual_seed(0)
    cfg = small("retrieval")
    cfg.rnn.cell = cell
    task = make_task("retrieval")
    x, y = (t.to(device) for t in task.sample(batch, length, torch.Generator().manual_seed(0)))
    return cfg, Model.for_run(cfg, task.vocab_size).to(device), x, y


def number(value: float | None) -> str:
    """A table cell: the value to 3 decimals, or a dash where there is none."""
    return "–" if value is None else f"{value:.3f}"


def diagnostics_table(rows: list[tuple[str, float, dict]], runs: str) -> list[str]:
    """Markdown lines (a blank line first) of the failure diagnostics (`smtrnn.diagnostics`) of (name, RNN-alone
    score, diagnostics) rows; none without rows. `runs` names them in the caption."""
    if not rows:
        return []
    lines = [
        "",
        f"Diagnostics of the {runs} (`smtrnn.diagnostics`): Markov gap = one-step MSE of f on teacher "
        "memories over the memories' spread; growth = per-step amplification of a small perturbation along the "
        "teacher's trajectory (> 1 amplifies drift); probe = accuracy of a small fitted MLP probe for the symbol "
        "the task needs, from teacher memories / the RNN's rollout (chance in brackets).",
        "",
        "| run | RNN alone | Markov gap (mean, worst position) | growth per step (median, max) | "
        "finite growth, RMS 0.2 over 32 steps (median, max) | probe: teacher / rollout |",
        "|---|---|---|---|---|---|",
    ]
    for name, score, d in rows:
        probe = d.get("probe")
        finite = f"{d['growth_finite']['median']:.3f}, {d['growth_finite']['max']:.3f}" if "growth_finite" in d else "–"
        probe_text = f"{probe['teacher']:.3f} / {probe['rollout']:.3f} ({probe['chance']:.3f})" if probe else "–"
        lines.append(
            f"| {name} | {score:.3f} | {d['markov_gap']['mean']:.3f}, {d['markov_gap']['worst']:.3f} at "
            f"t={d['markov_gap']['worst_position']} | {d['growth']['median']:.3f}, {d['growth']['max']:.3f} "
            f"| {finite} | {probe_text} |"
        )
    return lines


def reported(path: Path) -> dict[str, dict]:
    """The runs of the report at `path` (written by an earlier invocation) by name; none if it does not exist. A
    study keeps such a row for a run whose folder is gone from its run store (a fresh checkout: the store is not
    committed) instead of training it again."""
    if not path.exists():
        return {}
    return {row["name"]: row for row in json.loads(path.read_text())["runs"]}


def provenance(markdown_fn: Callable[[dict], str]) -> dict:
    """A report's "benchmark" field: the script that made it and the name of its function that renders NAME.md
    from NAME.json, so the tests regenerate the stored table (a retired report names only the last commit that had
    its script, "retired", and keeps NAME.md as its frozen table)."""
    script = Path(inspect.getfile(markdown_fn)).resolve().relative_to(ROOT).as_posix()
    return {"script": script, "table": markdown_fn.__name__}


def write_report(report: dict, out: str | Path, name: str, markdown_fn: Callable[[dict], str]) -> dict:
    """NAME.json (the report with its "benchmark" field first) and NAME.md from markdown_fn, in out; returns the
    report as written."""
    report = {"benchmark": provenance(markdown_fn)} | report
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown_fn(report))
    return report


def save_report(report: dict, out: str | Path, name: str, markdown_fn: Callable[[dict], str]) -> None:
    """`write_report`, and the markdown printed too."""
    print(markdown_fn(write_report(report, out, name, markdown_fn)))


def throughput(length: int, cell: str, batch: int, repeats: int, device: str = "cpu") -> dict:
    """Supervised transitions per second (B·T per optimizer step, forward + backward) for SMT and BPTT."""
    cfg, model, x, y = small_model(cell, length, batch, device)

    def smt_joint():
        smt_loss(model, x, y, cfg.smt, rnn_active=True)[0].backward()

    # the staged schedule's RNN phase (rnn_active=True below skips its warm-up, whose length then does not matter)
    frozen = dataclasses.replace(cfg.smt, schedule="staged", teacher_alone=0.5)

    def smt_rnn_phase():
        smt_loss(model, x, y, frozen, rnn_active=True)[0].backward()

    def bptt():
        bptt_loss(model, x, y, cfg.bptt)[0].backward()

    times = {
        name: step_time(fn, repeats)
        for name, fn in (("smt_full", smt_joint), ("smt_rnn_phase", smt_rnn_phase), ("bptt", bptt))
    }
    per_s = {f"{name}_transitions_per_s": batch * length / t for name, t in times.items()}
    return (
        {"T": length, "batch": batch, "cell": cell, "device": device}
        | {f"{k}_step_s": v for k, v in times.items()}
        | per_s
        | {
            "ratio_smt_full_over_bptt": per_s["smt_full_transitions_per_s"] / per_s["bptt_transitions_per_s"],
            "ratio_smt_rnn_phase_over_bptt": per_s["smt_rnn_phase_transitions_per_s"] / per_s["bptt_transitions_per_s"],
        }
    )
