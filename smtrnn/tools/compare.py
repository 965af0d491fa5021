"""`smtrnn compare`: the SMT-vs-BPTT study on one task, across sequence lengths, methods, cells and seeds.

Every combination trains for the same budget (wall-clock seconds of training, or steps), one run after another so
each has the whole machine, and is scored on the RNN alone from m_∅. A finished run leaves `result.json` in its
directory and is skipped when the study is run again; an interrupted one resumes from its last checkpoint. The study
writes `results.json` (every run, and a summary per (T, method, cell) with mean and spread over seeds),
`results.md`, and — with matplotlib — `score_vs_length.png`, `learning_curves.png` and `drift.png`.

Methods: the library's `smt`, `smt+dmt`, `bptt`, truncated `tbptt`, and the baselines a user would otherwise pick,
trained by BPTT whatever `--cells` says: `gru-fused` and `lstm-fused` (torch.nn.GRU / LSTM, one fused call per
sequence) and `mingru` (a linear-in-time recurrent network trained by parallel scan).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smtrnn.checkpoint import METRICS_FILE, has_checkpoint, holds_run, load_model, read_config
from smtrnn.config import RunConfig, apply_overrides, size_text, validate
from smtrnn.data.tasks import build_task, make_task
from smtrnn.errors import ConfigError
from smtrnn.evaluate import evaluate, evaluate_lengths, evaluation_bytes
from smtrnn.free_memory import available_memory
from smtrnn.trainer import Trainer, changed_fields

RESULT_FILE = "result.json"
TBPTT_TRUNCATION = 32

# compare method -> config overrides; "cell" in the overrides marks a baseline whose cell is fixed.
STUDY_METHODS: dict[str, dict] = {
    "smt": {"train.method": "smt"},
    "smt+dmt": {"train.method": "smt+dmt"},
    "smt+dmt+bptt": {"train.method": "smt+dmt+bptt"},
    "bptt": {"train.method": "bptt"},
    "tbptt": {"train.method": "bptt", "bptt.truncation": TBPTT_TRUNCATION},
    "gru-fused": {"train.method": "bptt", "rnn.cell": "gru-fused"},
    "lstm-fused": {"train.method": "bptt", "rnn.cell": "lstm-fused"},
    "mingru": {"train.method": "bptt", "rnn.cell": "mingru"},
}


def parse_list(text: str, name: str, choices=None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{name} is empty")
    unknown = [item for item in items if choices is not None and item not in choices]
    if unknown:
        raise ConfigError(f"{name}: unknown '{unknown[0]}'; choose from: {', '.join(choices)}")
    return items


@dataclass(frozen=True)
class RunSpec:
    """One run of the study."""

    length: int
    method: str
    cell: str
    seed: int

    @property
    def name(self) -> str:
        cell = "" if self.cell == self.method else f"-{self.cell}"  # a baseline's cell is its method
        return f"T{self.length}-{self.method}{cell}-s{self.seed}"


def plan(lengths: list[int], methods: list[str], cells: list[str], seeds: int) -> list[RunSpec]:
    """Every (T, method, cell, seed); a baseline runs once per (T, seed), with its own cell."""
    specs = []
    for length in lengths:
        for method in methods:
            own_cell = STUDY_METHODS[method].get("rnn.cell")
            for cell in [own_cell] if own_cell else cells:
                specs += [RunSpec(length, method, cell, seed) for seed in range(seeds)]
    return specs


def run_config(
    base: Callable[[], RunConfig], spec: RunSpec, budget_s: float, steps: int, eval_points: int
) -> RunConfig:
    """The base config (preset + user overrides) for one run: its length, method, cell, seed and budget."""
    cfg = base()
    overrides = {
        "task.seq_len": spec.length,
        "rnn.cell": spec.cell,
        "train.seed": spec.seed,
        "train.steps": steps,
        "train.max_seconds": budget_s,
    } | STUDY_METHODS[spec.method]
    apply_overrides(cfg, overrides)
    if budget_s and eval_points:
        cfg.train.eval_every_seconds = budget_s / eval_points
    return cfg


def learning_curve(run_dir: Path, key: str) -> list[tuple[float, float]]:
    """(training seconds, score) at every evaluation the run logged."""
    points = []
    for line in (run_dir / METRICS_FILE).read_text().splitlines():
        record = json.loads(line)
        if "eval" in record and key in record["eval"]:
            points.append((record["elapsed"], record["eval"][key]))
    return points


def run_one(
    cfg: RunConfig,
    spec: RunSpec,
    run_dir: Path,
    device,
    eval_batches: int,
    log=print,
    eval_lengths: tuple[int, ...] = (),
    trust_cell_code: bool = False,
    teacher_at_lengths: bool = False,
) -> dict:
    """Train (or resume, or skip when finished) one run and return its row; `eval_lengths` adds the RNN alone
    (streamed; the teacher too with `teacher_at_lengths`) scored at those lengths (row["lengths"],
    `evaluate.evaluate_lengths`), to a finished run too: its checkpoint must hold this command line's config, and a
    user cell there is imported only with `trust_cell_code`."""
    done = run_dir / RESULT_FILE
    if done.exists():
        row = json.loads(done.read_text())
        missing = [n for n in eval_lengths if str(n) not in row.get("lengths", {})]
        if missing and not has_checkpoint(run_dir):
            raise ConfigError(f"{run_dir} holds a result but no checkpoint to score at other lengths; move it aside")
        # the stored config is compared, never built: a config planted in a shared study opens nothing
        changed = changed_fields(read_config(run_dir, open_data=False)[0], cfg) if has_checkpoint(run_dir) else []
        if changed:
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise ConfigError(
                f"{run_dir} finished with another config ({shown} differ); move it aside or name this run otherwise"
            )
        log(f"{spec.name}: finished earlier, skipped")
        if missing:
            _, model = load_model(run_dir, device, trust_cell_code=trust_cell_code)
            task = make_task(cfg.task.name, **cfg.task.params)
            row["lengths"] = row.get("lengths", {}) | evaluate_lengths(
                model, task, missing, eval_batches, cfg.optim.batch_size, teacher=teacher_at_lengths
            )
            _write_row(done, row)
        return row
    log(f"{spec.name}: training ({'resuming' if has_checkpoint(run_dir) else 'new'})")
    trainer = Trainer(cfg, run_dir, device, resume=holds_run(run_dir), show_progress=False)
    trainer.run()
    result = evaluate(trainer.model, trainer.task, cfg.task.seq_len, eval_batches, cfg.optim.batch_size, curves=True)
    key = score_key(cfg.task.name)
    row = {
        "T": spec.length,
        "method": spec.method,
        "cell": spec.cell,
        "seed": spec.seed,
        "steps": trainer.step,
        "train_seconds": trainer.elapsed,
        "score": result[key],
        "curve": learning_curve(run_dir, key),
        "drift_curve": result["curves"].get("drift"),
    } | {k: v for k, v in result.items() if k != "curves"}
    if eval_lengths:
        row["lengths"] = evaluate_lengths(
            trainer.model,
            trainer.task,
            list(eval_lengths),
            eval_batches,
            cfg.optim.batch_size,
            teacher=teacher_at_lengths,
        )
    _write_row(done, row)
    log(f"{spec.name}: {key} {row['score']:.4f} after {row['steps']} steps")
    return row


def _write_row(done: Path, row: dict) -> None:
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(row) + "\n")
    tmp.replace(done)


def score_key(task_name: str) -> str:
    """Bits per token for text and pixels (lower is better), accuracy for the others (synthetic tasks, arrays)."""
    from smtrnn.data.tasks import REGISTRY

    return "rnn_bits_per_token" if REGISTRY[task_name].scored_in_bits else "rnn_accuracy"


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["T"], row["method"], row["cell"]), []).append(row)
    out = []
    for (length, method, cell), items in groups.items():  # the plan's order: T, then method, cell
        scores = [r["score"] for r in items]
        out.append(
            {
                "T": length,
                "method": method,
                "cell": cell,
                "seeds": len(items),
                "mean": statistics.mean(scores),
                "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "min": min(scores),
                "max": max(scores),
                "teacher": _mean([r.get("teacher_accuracy") for r in items]),
                "drift_final": _mean([r.get("drift_final") for r in items]),
                "steps": statistics.mean(r["steps"] for r in items),
                "at_length": {
                    n: _mean([r.get("lengths", {}).get(n, {}).get("rnn_accuracy") for r in items])
                    for n in items[0].get("lengths", {})
                },
            }
        )
    return out


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None


def markdown(report: dict) -> str:
    def fmt(v):
        return "–" if v is None else f"{v:.3f}"

    budget = f"{report['budget_s']:.0f} s of training" if report["budget_s"] else f"{report['steps']} steps"
    lines = [
        f"Task `{report['task']}`, preset `{report['preset']}`, {budget} per run, runs one after another; "
        f"score = {report['score']} of the RNN alone from m_∅ (mean ± std over seeds).",
        "",
        "| T | method | cell | seeds | score | min–max | teacher acc | final drift | steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["summary"]:
        lines.append(
            f"| {s['T']} | {s['method']} | {s['cell']} | {s['seeds']} | {s['mean']:.3f} ± {s['std']:.3f} | "
            f"{s['min']:.3f}–{s['max']:.3f} | {fmt(s['teacher'])} | {fmt(s['drift_final'])} | "
            f"{s['steps']:.0f} |"
        )
    longer = [str(n) for n in report.get("eval_lengths", [])]
    if longer:
        lines += [
            "",
            "The RNN alone at other lengths than it trained on (accuracy, mean over seeds):",
            "",
            "| trained at T | method | cell | " + " | ".join(f"T = {n}" for n in longer) + " |",
            "|---|---|---|" + "---|" * len(longer),
        ]
        for s in report["summary"]:
            cells = [fmt(s.get("at_length", {}).get(n)) for n in longer]
            lines.append(f"| {s['T']} | {s['method']} | {s['cell']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_plots(report: dict, out: Path) -> list[Path]:
    """score_vs_length.png, learning_curves.png, drift.png; [] without matplotlib."""
    from smtrnn.errors import SmtrnnError
    from smtrnn.tools.plots import pyplot

    try:
        plt = pyplot()
    except SmtrnnError:  # matplotlib is optional here: the JSON and markdown are the results
        return []
    written = []
    series: dict[tuple, list] = {}
    for s in report["summary"]:
        series.setdefault((s["method"], s["cell"]), []).append((s["T"], s["mean"], s["std"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for (method, cell), points in series.items():
        xs, ys, es = zip(*sorted(points))
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{method} ({cell})")
    ax.set(xscale="log", xlabel="sequence length T", ylabel=report["score"], title=f"{report['task']}: RNN alone")
    ax.legend(fontsize=7)
    written.append(_save(plt, fig, out / "score_vs_length.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in report["runs"]:
        if row["curve"]:
            xs, ys = zip(*row["curve"])
            ax.plot(xs, ys, alpha=0.7, label=f"T{row['T']} {row['method']} ({row['cell']}) s{row['seed']}")
    ax.set(xlabel="training seconds", ylabel=report["score"], title="learning curves (evaluation time excluded)")
    ax.legend(fontsize=6)
    written.append(_save(plt, fig, out / "learning_curves.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in report["runs"]:
        if row.get("drift_curve"):
            ax.plot(
                range(len(row["drift_curve"])),
                row["drift_curve"],
                label=f"T{row['T']} {row['method']} ({row['cell']}) s{row['seed']}",
            )
    ax.set(xlabel="position t", ylabel="drift δ_t", yscale="log", title="rollout drift against the teacher")
    if ax.lines:
        ax.legend(fontsize=6)
    written.append(_save(plt, fig, out / "drift.png"))
    return written


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run_study(
    base: Callable[[], RunConfig],
    task: str,
    preset: str,
    lengths: list[int],
    methods: list[str],
    cells: list[str],
    seeds: int,
    budget_s: float,
    steps: int,
    out: Path,
    device,
    eval_batches: int = 8,
    eval_points: int = 8,
    log=print,
    eval_lengths: tuple[int, ...] = (),
    trust_cell_code: bool = False,
    teacher_at_lengths: bool = False,
) -> dict:
    """Run (or finish) the study into `out` and write its report; returns the report. `eval_lengths`: every run's
    RNN alone is also scored at these sequence lengths (length generalization; the teacher too with
    `teacher_at_lengths`, where its memory estimate fits); a finished run loaded to be scored again whose cell is
    user code is refused unless `trust_cell_code`."""
    specs = plan(lengths, methods, cells, seeds)
    configs = [run_config(base, spec, budget_s, steps, eval_points) for spec in specs]
    for cfg in configs:  # every run's config (task, length, cell, method) is checked before the first one trains
        validate(cfg)
        held_out = build_task(cfg).held_out()
        for length in eval_lengths:
            held_out.check_seq_len(length)
            if not teacher_at_lengths:  # the RNN alone streams: O(1) memory per token
                continue
            need = evaluation_bytes(cfg, held_out.vocab_size, length, cfg.optim.batch_size)
            free = available_memory(device)
            if free is not None and need > free:
                raise ConfigError(
                    f"--teacher-at-lengths at T = {length} needs about {size_text(need)}; {size_text(free)} are "
                    "available (the RNN alone streams: drop the flag)"
                )
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        run_one(
            cfg,
            spec,
            out / "runs" / spec.name,
            device,
            eval_batches,
            log,
            tuple(eval_lengths),
            trust_cell_code,
            teacher_at_lengths,
        )
        for spec, cfg in zip(specs, configs)
    ]
    report = {
        "benchmark": {"script": "smtrnn/tools/compare.py", "table": "markdown"},  # what renders results.md
        "task": task,
        "preset": preset,
        "lengths": lengths,
        "eval_lengths": list(eval_lengths),
        "methods": methods,
        "cells": cells,
        "seeds": seeds,
        "budget_s": budget_s,
        "steps": steps,
        "score": score_key(task),
        "summary": summarize(rows),
        "runs": rows,
    }
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "results.md").write_text(markdown(report))
    report["plots"] = [p.name for p in write_plots(report, out)]
    return report
