"""`smtrnn compare`: the SMT-vs-BPTT study on one task, across sequence lengths, methods, cells and seeds.

The grid is written as a plan, `plan.txt` in the study's folder (one `smtrnn train` line per run, the arguments they
share on its base line: `smtrnn.tools.study`), and run by the study runner: every run trains for the same budget
(wall-clock seconds of training, or steps), one after another so each has the whole machine (`--parallel` runs at
a time otherwise), and is scored on the RNN alone from m_∅. Runs live in `runs/NAME`; a finished run is skipped when
the study is run again, an interrupted one resumes from its last checkpoint, and a finished run whose plan line
changed (another base config, budget or evaluation) is refused. The study writes `results.json` (every run, and a
summary per (T, method, cell) with mean and spread over seeds), `results.md`, and — with matplotlib —
`score_vs_length.png`, `learning_curves.png` and `drift.png`.

Methods: the library's `smt`, `smt+dmt`, `bptt`, truncated `tbptt`, and the baselines a user would otherwise pick,
trained by BPTT whatever `--cells` says: `gru-fused` and `lstm-fused` (torch.nn.GRU / LSTM, one fused call per
sequence) and `mingru` (a linear-in-time recurrent network trained by parallel scan).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from smtrnn.config import RunConfig, size_text, validate
from smtrnn.data.tasks import REGISTRY, build_task
from smtrnn.errors import ConfigError, SmtrnnError
from smtrnn.evaluate import evaluation_bytes
from smtrnn.free_memory import available_memory
from smtrnn.tools.study import Plan, Study, mean, plan_text, report_json, setting, summary
from smtrnn.tools.study_report import table
from smtrnn.trainer import resolve_device

TBPTT_TRUNCATION = 32

# compare method -> config overrides; "rnn.cell" in the overrides marks a baseline whose cell is fixed.
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

    def train_args(self) -> list[str]:
        """What this run adds to the study's base arguments: its length, method (and the method's overrides), cell
        and seed."""
        overrides = STUDY_METHODS[self.method]
        sets = [f"{field}={value}" for field, value in overrides.items() if field not in ("train.method", "rnn.cell")]
        args = ["--seq-len", str(self.length), "--method", overrides["train.method"], "--cell", self.cell]
        return args + ["--seed", str(self.seed)] + [word for s in sets for word in ("--set", s)]


def plan(lengths: list[int], methods: list[str], cells: list[str], seeds: int) -> list[RunSpec]:
    """Every (T, method, cell, seed); a baseline runs once per (T, seed), with its own cell."""
    specs = []
    for length in lengths:
        for method in methods:
            own_cell = STUDY_METHODS[method].get("rnn.cell")
            for cell in [own_cell] if own_cell else cells:
                specs += [RunSpec(length, method, cell, seed) for seed in range(seeds)]
    return specs


def base_args(
    task: str,
    preset: str,
    budget_s: float,
    steps: int | None,
    eval_batches: int,
    extra: list[str] = (),
    eval_points: int = 8,
) -> list[str]:
    """The `smtrnn train` arguments every run of the study shares: task, preset, `extra` (the user's --data, --config
    and --set), the budget, evaluations every budget / `eval_points` seconds of `eval_batches` batches each."""
    args = ["--task", task, "--preset", preset, *extra]
    args += ["--budget", format(budget_s, ".12g")] * bool(budget_s) + ["--steps", str(steps)] * bool(steps)
    if budget_s and eval_points:
        args += ["--set", f"train.eval_every_seconds={budget_s / eval_points!r}"]
    if not budget_s:  # steps alone end the run: no budget a config file or preset names
        args += ["--set", "train.max_seconds=0"]
    return args + ["--set", f"train.eval_batches={eval_batches}"]


def score_key(task_name: str) -> str:
    """Bits per token for text and pixels (lower is better), accuracy for the others (synthetic tasks, arrays)."""
    return "rnn_bits_per_token" if REGISTRY[task_name].scored_in_bits else "rnn_accuracy"


def check_runs(configs: list[RunConfig], eval_lengths: list[int], teacher_at_lengths: bool, device) -> None:
    """Every run's config (task, length, cell, method), and every evaluation length, before the first run trains."""
    for cfg in configs:
        validate(cfg)
        held_out = build_task(cfg).held_out()
        for length in eval_lengths:
            held_out.check_seq_len(length)
            if not teacher_at_lengths:  # the RNN alone streams: O(1) memory per token
                continue
            need = evaluation_bytes(cfg, held_out.vocab_size, length, cfg.optim.batch_size)
            free = available_memory(resolve_device(device))
            if free is not None and need > free:
                raise ConfigError(
                    f"--teacher-at-lengths at T = {length} needs about {size_text(need)}; {size_text(free)} are "
                    "available (the RNN alone streams: drop the flag)"
                )


def row(spec: RunSpec, study: Study, key: str) -> dict | None:
    """One finished run's row: its grid cell, steps, seconds, score, learning curve, final evaluation and the RNN
    alone at other lengths."""
    run = study.record(spec.name)
    if run is None:
        return None
    curve = [(r["elapsed"], r["eval"][key]) for r in run["evals"] if key in r["eval"]]
    return (
        {"name": spec.name, "T": spec.length, "method": spec.method, "cell": spec.cell, "seed": spec.seed}
        | {"steps": run["steps"], "train_seconds": run["train_seconds"], "score": run["final"][key], "curve": curve}
        | run["final"]
        | ({"lengths": run["lengths"]} if run["lengths"] else {})
    )


def summarize(rows: list[dict]) -> list[dict]:
    """Per (T, method, cell), in the plan's order: the score's mean, std, min and max over seeds, and the means of
    the teacher's accuracy, the final drift, the steps and the RNN alone at each other length."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(setting(r["name"]), []).append(r)
    out = []
    for items in groups.values():
        first, scores = items[0], summary([r["score"] for r in items])
        out.append(
            {"T": first["T"], "method": first["method"], "cell": first["cell"], "seeds": len(items)}
            | {k: scores[k] for k in ("mean", "std", "min", "max")}
            | {"teacher": mean([r.get("teacher_accuracy") for r in items])}
            | {"drift_final": mean([r.get("drift_final") for r in items]), "steps": mean([r["steps"] for r in items])}
            | {
                "at_length": {
                    n: mean([r.get("lengths", {}).get(n, {}).get("rnn_accuracy") for r in items])
                    for n in first.get("lengths", {})
                }
            }
        )
    return out


def markdown(report: dict) -> str:
    def fmt(v):
        return "–" if v is None else f"{v:.3f}"

    budget = f"{report['budget_s']:.0f} s of training" if report["budget_s"] else f"{report['steps']} steps"
    parallel = report.get("parallel", 1)
    at_once = f"{parallel} runs at a time" if parallel > 1 else "runs one after another"
    header = ["T", "method", "cell", "seeds", "score", "min–max", "teacher acc", "final drift", "steps"]
    rows = [
        [s["T"], s["method"], s["cell"], s["seeds"], f"{s['mean']:.3f} ± {s['std']:.3f}"]
        + [f"{s['min']:.3f}–{s['max']:.3f}", fmt(s["teacher"]), fmt(s["drift_final"]), f"{s['steps']:.0f}"]
        for s in report["summary"]
    ]
    lines = [
        f"Task `{report['task']}`, preset `{report['preset']}`, {budget} per run, {at_once}; "
        f"score = {report['score']} of the RNN alone from m_∅ (mean ± std over seeds).",
        "",
        *table(header, rows),
    ]
    longer = [str(n) for n in report.get("eval_lengths", [])]
    if longer:
        rows = [
            [s["T"], s["method"], s["cell"], *(fmt(s.get("at_length", {}).get(n)) for n in longer)]
            for s in report["summary"]
        ]
        lines += [
            "",
            "The RNN alone at other lengths than it trained on (accuracy, mean over seeds):",
            "",
            *table(["trained at T", "method", "cell", *(f"T = {n}" for n in longer)], rows),
        ]
    return "\n".join(lines) + "\n"


def run_study(
    specs: list[RunSpec],
    base: list[str],
    build: Callable[[list[str]], RunConfig],
    study: Study,
    out: Path,
    about: dict,
    eval_batches: int = 8,
    eval_lengths: list[int] = (),
    teacher_at_lengths: bool = False,
) -> dict:
    """Run (or finish) the study into `out` and write its report; returns the report. `base`: the train arguments
    every run shares; `build(args)` is the config a run's arguments make (checked for every run before the first
    trains); `about`: the report's fields that describe the study (task, preset, lengths, ..., budget_s, steps).
    `eval_lengths`: every run's RNN alone is also scored at these sequence lengths (the teacher too with
    `teacher_at_lengths`, where its memory estimate fits)."""
    runs: Plan = [(spec.name, base + spec.train_args()) for spec in specs]
    study.check_finished(runs)
    check_runs([build(args) for _, args in runs], list(eval_lengths), teacher_at_lengths, study.device)
    out.mkdir(parents=True, exist_ok=True)
    comment = "smtrnn compare's runs, in runs/NAME: the same command reruns them (or screen.py with --work runs)"
    (out / "plan.txt").write_text(plan_text(runs, comment))
    study.train(runs)
    if eval_lengths:
        study.score_lengths([name for name, _ in runs], list(eval_lengths), eval_batches, teacher_at_lengths)
    key = score_key(about["task"])
    rows = [row(spec, study, key) for spec in specs]
    missing = [spec.name for spec, r in zip(specs, rows) if r is None]
    if missing:
        raise SmtrnnError(f"{len(missing)} runs did not finish ({', '.join(missing)}); the log says why")
    report = {"benchmark": {"script": "smtrnn/tools/compare.py", "table": "markdown"}} | about  # renders results.md
    report |= {"eval_lengths": list(eval_lengths), "score": key, "parallel": study.parallel, "plan": "plan.txt"}
    report |= {"summary": summarize(rows), "runs": rows}
    (out / "results.json").write_text(report_json(report))
    (out / "results.md").write_text(markdown(report))
    try:
        from smtrnn.tools.plots import plot_comparison

        report["plots"] = [p.name for p in plot_comparison(report, out)]
    except SmtrnnError:  # matplotlib is optional here: the JSON and markdown are the results
        report["plots"] = []
    return report
