"""A study's report as markdown (`smtrnn.tools.study`): one table renderer, and the screen's tables: every run,
the test split's mean ± std over seeds, the RNN alone against the evaluation length, a passkey's key by where it was
stated and by a lure before it, the test bits by position in the document, and the failure diagnostics."""

from __future__ import annotations

import statistics

from smtrnn.presets import RECIPE
from smtrnn.tools.study import BIT_STAGES, POSITION_KEY, seed_groups, settings, spread


def number(value: float | None) -> str:
    """A table cell: the value to 3 decimals, or a dash where there is none."""
    return "–" if value is None else f"{value:.3f}"


def table(header: list[str], rows: list[list]) -> list[str]:
    """Markdown lines of a table: its header, the rule under it, one line per row."""

    def line(cells: list) -> str:
        return "| " + " | ".join(map(str, cells)) + " |"

    return [line(header), "|" + "---|" * len(header), *map(line, rows)]


def length_score(scores: dict) -> float | None:
    """What a length's row reports: the task's answer accuracy where it has answers (passkey's key digits), else the
    accuracy over every target."""
    return scores.get("rnn_answer_accuracy", scores.get("rnn_accuracy"))


def markdown(report: dict) -> str:
    """The screen's report: every run, then the tables below that have rows."""
    runs = report["runs"]
    bits = any(r.get("rnn_bits_per_token") is not None for r in runs)  # screens before bits: as they were
    header = ["run", "method", "cell", "RNN alone", "teacher", "one-step", "drift/spread"]
    header += ["bits: teacher / readout on teacher / one-step / RNN alone"] * bits
    header += ["steps"]
    rows = []
    for r in runs:
        steps = f"{r['steps']} (best at {r['best_step']})" if r.get("best_step") else f"{r['steps']}"
        scores = [number(r[k]) for k in ("rnn_accuracy", "teacher_accuracy", "onestep_accuracy", "drift_relative")]
        rows.append(
            [r["name"], r["method"], r["cell"], *scores]
            + [" / ".join(number(r.get(f"{k}_bits_per_token")) for k in BIT_STAGES)] * bits
            + [steps]
        )
    lines = [
        f"Plan `{report['plan']}`: one seed per run, two runs at a time with 1 thread each; {report['device']}, "
        f"torch {report['torch']}. RNN alone = the RNN from m_∅ on held-out sequences; drift/spread below 1: "
        "the rollout stays nearer the teacher's memory than other sequences' memories are. Each run's arguments "
        "are its plan line, and its learning curve is in the JSON.",
        "",
        *table(header, rows),
        *seed_table(report),
        *length_table(report),
        *key_at_table(report),
        *lure_table(report),
        *position_table(report),
        *diagnostics_table(
            [(r["name"], r["rnn_accuracy"], r["diagnostics"]) for r in runs if r.get("diagnostics")],
            "runs with a teacher",
        ),
    ]
    if report["missing"]:
        lines += ["", "Not finished: " + ", ".join(report["missing"])]
    return "\n".join(lines) + "\n"


def headline_bits(row: dict) -> float | None:
    """A run's RNN-alone bits on the test split: over whole documents where the task has them, else on windows."""
    test = row.get("test") or {}
    return test.get("documents_rnn_bits_per_token") or test.get("rnn_bits_per_token")


def seed_table(report: dict) -> list[str]:
    """Markdown lines (a blank line first): per setting with seeds, the test-split bits as mean ± std over seeds."""
    groups = seed_groups([r for r in report["runs"] if r.get("test")])
    if not groups:
        return []
    rows = []
    for name, runs in groups.items():
        tests = [r["test"] for r in runs]
        teacher = [t.get("documents_teacher_bits_per_token") or t.get("teacher_bits_per_token") for t in tests]
        rows.append(
            [name, runs[0]["method"], runs[0]["cell"], len(runs), spread([headline_bits(r) for r in runs])]
            + [" / ".join(number(headline_bits(r)) for r in runs), spread(teacher)]
            + [spread([t.get("onestep_bits_per_token") for t in tests])]
            + [round(statistics.mean(r["steps"] for r in runs))]
        )
    header = ["setting", "method", "cell", "seeds", "RNN alone bits", "per seed", "teacher bits", "one-step bits"]
    return [
        "",
        "Test split (the best validation checkpoint of each run; RNN alone from m_∅ over whole test "
        "documents where the task has them, else on test windows): mean ± std over seeds.",
        "",
        *table([*header, "steps"], rows),
    ]


def preset_of(row: dict) -> str:
    """The preset a run's arguments name (`--preset NAME`), else `smtrnn train`'s default, the recipe."""
    args = row.get("args") or []
    return args[args.index("--preset") + 1] if "--preset" in args[:-1] else RECIPE


def seed_headline(report: dict) -> str:
    """NAME_headline.md where the runs were not scored at other lengths: per setting with seeds, the RNN alone's
    final score on held-out sequences (the answer accuracy where the task has answers, else the accuracy over every
    target), mean ± std over seeds and each seed's, beside the teacher's (steps and seconds: the report's table).
    The method column names the preset the setting's runs were built from."""
    rows = []
    for name, runs in seed_groups(report["runs"]).items():
        scores = [length_score(r) for r in runs]
        method = f"{runs[0]['method']} ({preset_of(runs[0])})"
        rows.append(
            [name, method, runs[0]["cell"], len(runs), spread(scores), " / ".join(map(number, scores))]
            + [spread([r.get("teacher_accuracy") for r in runs])]
        )
    header = ["setting", "method", "cell", "seeds", "RNN alone", "per seed", "teacher"]
    return "\n".join(table(header, rows)) + "\n"


def length_columns(report: dict) -> list[str]:
    """The evaluation lengths of the tables, in increasing order: those the report's study asked for (`eval_lengths`)
    where it names them, else every length any run was scored at (a run's other lengths stay in the JSON)."""
    return asked_lengths(report, {n for r in report["runs"] for n in r.get("lengths", {})})


def asked_lengths(report: dict, scored: set[str]) -> list[str]:
    """The lengths among `scored` that the report's study asked for (`eval_lengths`; all where it names none), in
    increasing order."""
    asked = report.get("eval_lengths")
    return sorted(scored & {str(n) for n in asked} if asked else scored, key=int)


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
    rows = []
    for name, runs in settings(report["runs"]).items():
        if not any(r.get("lengths") for r in runs):
            continue
        values = length_means(runs, columns)
        rows.append(
            [name, runs[0]["method"], runs[0]["cell"], len(runs), round(statistics.mean(r["steps"] for r in runs))]
            + [round(statistics.mean(r["train_seconds"] for r in runs))]
            + [spread(values[c]) for c in ["train", *columns]]
        )
    header = ["setting", "method", "cell", "seeds", "steps", "seconds", "at training T"]
    return [
        "",
        "The RNN alone from m_∅ against the evaluation length (streamed, no teacher; the answer accuracy where the "
        "task has answers, else the accuracy over every target), mean ± std over seeds:",
        "",
        *table(header + [f"T = {n}" for n in columns], rows),
    ]


def key_at_table(report: dict) -> list[str]:
    """Markdown lines (a blank line first): per setting scored with `--key-at`, the key's accuracy with its statement
    at byte P, asked at each length (mean ± std over seeds): falling along a row, the key is lost while held;
    falling down a column of later statements, it is not written after that much prose."""
    lengths = asked_lengths(report, {n for r in report["runs"] for at in r.get("key_at", {}).values() for n in at})
    rows = []
    for name, runs in settings(report["runs"]).items():
        positions = sorted({p for r in runs for p in r.get("key_at", {})}, key=int)
        for p in positions:
            scored = [r["key_at"][p] for r in runs if p in r.get("key_at", {})]
            cells = [spread([length_score(s[n]) for s in scored if s.get(n)]) for n in lengths]  # null: no room
            rows.append([name, runs[0]["method"], runs[0]["cell"], len(scored), p, *cells])
    if not rows:
        return []
    return [
        "",
        "The key with its statement placed P bytes into every row (`eval --key-at`), asked at the end of rows of T "
        "(the RNN alone from m_∅, its answer accuracy, mean ± std over seeds):",
        "",
        *table(["setting", "method", "cell", "seeds", "statement at", *(f"T = {n}" for n in lengths)], rows),
    ]


def lure_table(report: dict) -> list[str]:
    """Markdown lines (a blank line first): where evaluation split the key's rows by a lure (`Task.lured_rows`: a
    digit of the prose before the statement), per setting, statement (random, or placed at byte P by `--key-at`) and
    length: the share of rows with a lure and the exact key accuracy with and without one (mean ± std over seeds)."""
    rows = []
    for name, runs in settings(report["runs"]).items():
        scored = {"random": [r.get("lengths", {}) for r in runs]}
        for p in sorted({p for r in runs for p in r.get("key_at", {})}, key=int):
            scored[p] = [r["key_at"][p] for r in runs if p in r.get("key_at", {})]
        for where, by_length in scored.items():
            lengths = asked_lengths(report, {n for s in by_length for n, v in s.items() if v and "lured_rows" in v})
            for n in lengths:
                parts = [s[n] for s in by_length if s.get(n) and "lured_rows" in s[n]]
                cells = [spread([s[k] for s in parts]) for k in LURE_FIELDS]
                rows.append([name, runs[0]["method"], len(parts), where, n, *cells])
    if not rows:
        return []
    return [
        "",
        "The key's rows with and without a lure before the statement (a digit of the prose, which a memory could "
        "hold in the key's place), the RNN alone from m_∅, exact accuracy, mean ± std over seeds:",
        "",
        *table(["setting", "method", "seeds", "statement at", "T", "rows with a lure", "with", "without"], rows),
    ]


LURE_FIELDS = ("lured_rows", "rnn_answer_exact_lured", "rnn_answer_exact_unlured")


def key_at_headline(report: dict) -> str:
    """NAME_headline.md of a study scored with `--key-at`: the table of the key by where it was stated, then its
    rows with and without a lure where they were split."""
    return "\n".join([*key_at_table(report)[1:], *lure_table(report)]) + "\n"


def length_headline(report: dict) -> str:
    """NAME_headline.md: the table of the RNN alone against the evaluation length, on its own."""
    return "\n".join(length_table(report)[1:]) + "\n"


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
    rows = [[name, *(number(by_bucket.get(b)) for b in buckets)] for name, by_bucket in means.items()]
    return [
        "",
        "RNN alone from m_∅ over whole test documents, bits per token by position t in the document (mean over "
        "seeds; a bucket only where every seed has tokens there):",
        "",
        *table(["setting", *(f"t {b}" for b in buckets)], rows),
    ]


def diagnostics_table(rows: list[tuple[str, float, dict]], runs: str) -> list[str]:
    """Markdown lines (a blank line first) of the failure diagnostics (`smtrnn.diagnostics`) of (name, RNN-alone
    score, diagnostics) rows; none without rows. `runs` names them in the caption."""
    if not rows:
        return []
    cells = []
    for name, score, d in rows:
        probe, gap, growth = d.get("probe"), d["markov_gap"], d["growth"]
        finite = f"{d['growth_finite']['median']:.3f}, {d['growth_finite']['max']:.3f}" if "growth_finite" in d else "–"
        cells.append(
            [name, f"{score:.3f}", f"{gap['mean']:.3f}, {gap['worst']:.3f} at t={gap['worst_position']}"]
            + [f"{growth['median']:.3f}, {growth['max']:.3f}", finite]
            + [f"{probe['teacher']:.3f} / {probe['rollout']:.3f} ({probe['chance']:.3f})" if probe else "–"]
        )
    header = ["run", "RNN alone", "Markov gap (mean, worst position)", "growth per step (median, max)"]
    header += ["finite growth, RMS 0.2 over 32 steps (median, max)", "probe: teacher / rollout"]
    return [
        "",
        f"Diagnostics of the {runs} (`smtrnn.diagnostics`): Markov gap = one-step MSE of f on teacher "
        "memories over the memories' spread; growth = per-step amplification of a small perturbation along the "
        "teacher's trajectory (> 1 amplifies drift); probe = accuracy of a small fitted MLP probe for the symbol "
        "the task needs, from teacher memories / the RNN's rollout (chance in brackets).",
        "",
        *table(header, cells),
    ]
