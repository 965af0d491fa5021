"""The harness every benchmark script shares: step timing, the small model the speed studies time, the throughput
measurement, and writing a report (NAME.json, naming the script and function that render its table, + NAME.md).
Running the CLI and studies of many runs: `smtrnn.tools.study`. Benchmarks import it as `harness` (their own folder
is on sys.path when they run) and smtrnn as the installed package.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from smtrnn.bptt import bptt_loss
from smtrnn.data.tasks import make_task
from smtrnn.errors import ConfigError
from smtrnn.model import Model
from smtrnn.presets import small
from smtrnn.settings import parse_budget
from smtrnn.smt import smt_loss
from smtrnn.tools.study import report_json

ROOT = Path(__file__).resolve().parents[1]  # the checkout: results go under it; smtrnn is the installed package


def budget(text: str) -> float:
    """A benchmark's --budget, read as every smtrnn command reads one (`settings.parse_budget`): 90, 90s, 10m, 1.5h."""
    try:
        return parse_budget(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


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


def provenance(markdown_fn: Callable[[dict], str]) -> dict:
    """A report's "benchmark" field: the script that made it and the name of its function that renders NAME.md
    from NAME.json, so the tests regenerate the stored table (a retired report names only the last commit that had
    its script, "retired", and keeps NAME.md as its frozen table)."""
    script = Path(inspect.getfile(markdown_fn)).resolve().relative_to(ROOT).as_posix()
    return {"script": script, "table": markdown_fn.__name__}


def write_report(
    report: dict,
    out: str | Path,
    name: str,
    markdown_fn: Callable[[dict], str],
    headline_fn: Callable[[dict], str] | None = None,
) -> dict:
    """NAME.json (the report with its "benchmark" field first, one line per run: `study.report_json`) and NAME.md
    from markdown_fn, in out (and NAME_headline.md from headline_fn, named in the field too); returns the report as
    written."""
    field = provenance(markdown_fn) | ({"headline_table": headline_fn.__name__} if headline_fn else {})
    report = {"benchmark": field} | report
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(report_json(report))
    (out / f"{name}.md").write_text(markdown_fn(report))
    if headline_fn:
        (out / f"{name}_headline.md").write_text(headline_fn(report))
    return report


def save_report(report: dict, out: str | Path, name: str, markdown_fn: Callable[[dict], str], headline_fn=None) -> None:
    """`write_report`, and the markdown printed too."""
    print(markdown_fn(write_report(report, out, name, markdown_fn, headline_fn)))


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
