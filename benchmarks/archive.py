"""The table renderers of retired studies: each stored report of a retired one-off script names one of these in
its field "benchmark", and its field "retired" names the last commit that had the script (run it from a checkout
of that commit). Only the tables live on here, so the stored results keep regenerating; the training code went
with the scripts. Where a study was a list of `smtrnn train` runs, benchmarks/plans/STUDY.txt trains them again
with benchmarks/screen.py.
"""

from __future__ import annotations

from harness import diagnostics_table, number

DATA_TEXT_PROMPT = "def main():\n    "  # the prompt of data.py's text continuations


def quality_table(summary: list[dict]) -> list[str]:
    """The markdown table of a retired quality study's summary rows: RNN alone, teacher, one-step, drift, steps."""

    def fmt(v):
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    lines = [
        "| task | T | method | seeds | RNN-alone acc (mean) | min–max | teacher acc | one-step acc | "
        "final drift | steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['task']} | {s['T']} | {s['method']} | {s['seeds']} | {fmt(s['rnn_accuracy_mean'])} | "
            f"{fmt(s['rnn_accuracy_min'])}–{fmt(s['rnn_accuracy_max'])} | {fmt(s['teacher_accuracy_mean'])} | "
            f"{fmt(s['onestep_accuracy_mean'])} | {fmt(s['drift_final_mean'])} | {s['steps_mean']:.0f} |"
        )
    return lines


def core_throughput_table(rows: list[dict]) -> list[str]:
    where = rows[0].get("device", "cpu")
    lines = [
        f"Supervised transitions per second (B·T per step, forward + backward, "
        f"{'2 CPU threads' if where == 'cpu' else where}):",
        "",
        "| T | batch | SMT full step | SMT RNN phase (teacher frozen) | BPTT | full / BPTT | RNN phase / BPTT |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in rows:
        lines.append(
            f"| {t['T']} | {t['batch']} | {t['smt_full_transitions_per_s']:.0f} | "
            f"{t['smt_rnn_phase_transitions_per_s']:.0f} | {t['bptt_transitions_per_s']:.0f} | "
            f"{t['ratio_smt_full_over_bptt']:.2f} | {t['ratio_smt_rnn_phase_over_bptt']:.2f} |"
        )
    return lines


def core_throughput_markdown(report: dict) -> str:
    """throughput_gpu.md: the throughput table alone, for a report of `harness.throughput` rows without quality runs
    (benchmarks/core.py's table; the rows are timings, not training runs: no plan)."""
    return "\n".join(core_throughput_table(report["throughput"])) + "\n"


def core_markdown(report: dict) -> str:
    """core.md, core_staged.md: SMT (joint and staged), SMT→DMT and BPTT on the same cell and wall-clock
    (benchmarks/core.py; its runs: plans/core.txt, plans/core_staged.txt), then SMT's and BPTT's step throughput
    (`harness.throughput`, timings: no plan)."""
    lines = [
        f"Budget {report['budget_s']:.0f} s of training per run, cell `{report['cell']}`, "
        f"{report['threads_per_run']} thread per run, all methods of a row group run at once; "
        f"{report['device']}, torch {report['torch']}.",
        "",
        *quality_table(report["summary"]),
    ]
    if report["throughput"]:
        lines += ["", *core_throughput_table(report["throughput"])]
    return "\n".join(lines) + "\n"


def data_markdown(report: dict) -> str:
    """data.md, data_contractive.md: SMT→DMT against BPTT on the embedded text and the 8×8 digits
    (benchmarks/data.py; its runs: plans/data.txt, plans/data_contractive.txt). Its scores over whole held-out
    documents (`smtrnn eval --max-tokens`), text continuations and digit grids (`smtrnn sample`) were read from each
    run by the script, not by screen.py."""
    budget = f"Preset `{report['preset']}`, budget" if "preset" in report else "Budget"  # older reports: small
    lines = [
        f"{budget} {report['budget_s']:.0f} s of training per run, cell `{report['cell']}`, methods of a dataset "
        f"side by side, 1 thread each; held-out scores over whole documents / images (text: the first "
        f"{report['max_tokens']} held-out bytes); {report['device']}, torch {report['torch']}.",
        "",
        "| data | T | method | RNN alone (bits/unit) | teacher (bits/unit) | RNN / teacher | RNN-alone acc | steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["runs"]:
        held = row["held_out_documents"]
        teacher = held.get("teacher_bits_per_token")
        ratio = f"{held['rnn_bits_per_token'] / teacher:.3f}" if teacher else "–"
        lines.append(
            f"| {row['dataset']} ({held['tokens']} {row['unit']}s) | {row['T']} | {row['method']} | "
            f"{held['rnn_bits_per_token']:.3f} | {f'{teacher:.3f}' if teacher else '–'} | {ratio} | "
            f"{held['rnn_accuracy']:.3f} | {row['steps']} |"
        )
    curves = [row for row in report["runs"] if row.get("held_out_curve")]
    if curves:
        points = len(curves[0]["held_out_curve"])
        lines += [
            "",
            "Held-out bits/unit against training time (sampled validation windows of T; BPTT's training "
            "bits are its last logged training CE):",
            "",
            "| data | method | "
            + " | ".join(f"≈{(i + 1) * report['budget_s'] / points:.0f} s" for i in range(points))
            + " | best → end | overfits | BPTT train bits |",
            "|---|---|" + "---|" * (len(curves[0]["held_out_curve"]) + 3),
        ]
        for row in curves:
            values = [v for _, v in row["held_out_curve"]]
            train = row.get("train_bits")
            lines.append(
                f"| {row['dataset']} | {row['method']} | "
                + " | ".join(f"{v:.3f}" for v in values)
                + f" | {min(values):.3f} → {values[-1]:.3f} | {'yes' if row['overfits'] else 'no'} | "
                f"{f'{train:.3f}' if train is not None else '–'} |"
            )
    samples = [row for row in report["runs"] if "text_sample" in row]
    if samples:
        lines += ["", f"Text continuations of `{DATA_TEXT_PROMPT!r}` (greedy, 120 bytes):", ""]
        lines += [f"- {row['method']}: `{row['text_sample']!r}`" for row in samples]
    grids = [row for row in report["runs"] if "png" in row]
    if grids:
        lines += [
            "",
            "Digit grids (rows: held-out images, lower halves completed by the RNN, unconditional "
            "samples): " + ", ".join(f"`{row['png']}` ({row['method']})" for row in grids),
        ]
    return "\n".join(lines) + "\n"


def dmt_markdown(report: dict) -> str:
    """dmt.md, dmt_gpu.md: SMT, SMT→DMT and BPTT over tasks × lengths × seeds with drift curves (benchmarks/dmt.py;
    its runs: plans/dmt.txt), then the optimizer-step time of time-parallel DMT against the paper's sequential DMT.
    That step cost (all of dmt_gpu) is a timing, not training runs: no plan; it is run from a checkout of the
    commit in "retired"."""
    budgets = ", ".join(f"T = {t}: {s:.0f} s" for t, s in report["budgets_s"].items())
    lines = []
    if report["summary"]:
        lines = [
            f"Training budget per run ({budgets}), cell `{report['cell']}`, {report['threads_per_run']} thread "
            f"per run, the {len(report['methods'])} methods of a (task, T, seed) run at once; "
            f"{report['device']}, torch {report['torch']}.",
            "",
            *quality_table(report["summary"]),
        ]
    if report["drift"]:
        lines += [
            "",
            "Drift δ_t = mean (m̂_t − m_t)² of the RNN's own rollout against the teacher, mean per position "
            "bucket (0 = on the teacher, ≈ 2 = unrelated):",
            "",
        ]
        for d in report["drift"]:
            cells = " ".join(f"{b}: {v:.3f}" for b, v in d["drift"].items())
            lines.append(f"- {d['task']} T = {d['T']} {d['method']}: {cells}")
    if report["throughput"]:
        where = report["device"] if report["throughput"][0].get("device", "cpu") != "cpu" else "2 threads"
        lines += [
            *([""] if lines else [f"torch {report['torch']}.", ""]),
            f"DMT optimizer-step time, forward + backward, {where} (sequential: graph kept through the "
            "rollout, MSE every `label_every` steps):",
            "",
            "| T | batch | time-parallel step (s) | sequential step (s) | speed-up |",
            "|---|---|---|---|---|",
        ]
        for t in report["throughput"]:
            lines.append(
                f"| {t['T']} | {t['batch']} | {t['time_parallel_step_s']:.3f} | {t['sequential_step_s']:.3f} "
                f"| {t['ratio_time_parallel_over_sequential']:.2f}× |"
            )
    return "\n".join(lines) + "\n"


def length_generalization_markdown(report: dict) -> str:
    """length_generalization.md: trained at T = 64, the RNN alone (and SMT→DMT's teacher) scored at 64–512
    (benchmarks/length_generalization.py, through `smtrnn compare --eval-lengths`; its runs:
    plans/length_generalization.txt). The scores past T = 64 are `smtrnn eval RUN --seq-len 128,256,512` of each
    finished run, which screen.py does not do."""
    lengths = [str(n) for n in report["lengths"]]
    lines = [
        f"Trained at T = {report['train_length']} for {report['budget_s']:g} s each (preset `{report['preset']}`, "
        f"{report['seeds']} seed(s), one thread per run), scored on held-out sequences at every length: accuracy "
        "of the RNN alone from m_∅, and of SMT→DMT's Transformer teacher. "
        f"{report['device']}, torch {report['torch']}.",
        "",
        "| task | model | steps | " + " | ".join(f"T = {n}" for n in lengths) + " |",
        "|---|---|---|" + "---|" * len(lengths),
    ]

    def cells(run, who):
        return " | ".join("–" if run["accuracy"][n][who] is None else f"{run['accuracy'][n][who]:.3f}" for n in lengths)

    for run in report["runs"]:
        name = run["method"] + (f" s{run['seed']}" if report["seeds"] > 1 else "")
        lines.append(f"| {run['task']} | {name}: RNN alone | {run['steps']} | {cells(run, 'rnn')} |")
        if run["accuracy"][lengths[0]]["teacher"] is not None:
            lines.append(f"| {run['task']} | {name}: its teacher | {run['steps']} | {cells(run, 'teacher')} |")
    return "\n".join(lines) + "\n"


def levers_markdown(report: dict) -> str:
    """levers*.md: SMT→DMT variants against the paper default and BPTT on copy and delayed_recall
    (benchmarks/levers.py)."""

    def num(row, key):
        return f"{row[key]:.3f}" if isinstance(row.get(key), (int, float)) else "–"

    lines = [
        f"T = {report['T']}, {report['budget_s']:.0f} s of training per run, seed {report['seed']}, "
        f"two runs at a time, 1 thread each; {report['device']}, torch {report['torch']}. Drift/spread: drift at "
        f"labelled positions over the spread of teacher memories between sequences there (below 1: the rollout "
        f"stays nearer its own sequence's memory than sequences are to each other).",
        "",
        "| task | variant | cell | RNN-alone acc | teacher acc | one-step acc | drift/spread | "
        "teacher memory eff. rank | steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["runs"]:
        cell = row["args"][row["args"].index("--cell") + 1] if "--cell" in row["args"] else "mlp"
        lines.append(
            f"| {row['task']} | {row['variant']} | {cell} | {num(row, 'rnn_accuracy')} | "
            f"{num(row, 'teacher_accuracy')} | {num(row, 'onestep_accuracy')} | {num(row, 'drift_relative')} "
            f"| {num(row, 'memory_effective_rank')} | {row['steps']} |"
        )
    return "\n".join(lines) + "\n"


def onestep_readout_markdown(report: dict) -> str:
    """onestep_readout_gpu.md: SMT and SMT→DMT with and without the one-step readout term
    (benchmarks/onestep_readout.py)."""
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


def reevaluate_markdown(report: dict) -> str:
    """dmt_drift.md: finished runs re-evaluated for the drift diagnostics added after they ran
    (benchmarks/reevaluate.py)."""
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


LONG_RANGE_GROUPS = ("retrieval-256", "retrieval-1024", "delayed_recall-256", "copy-256")  # the confirmation groups
LONG_RANGE_RECIPE = "contractive"  # the preset long_range.py ran SMT→DMT with in its confirmation groups
LONG_RANGE_LENGTHS = (512, 1024)  # the retrieval-256 runs were also scored at these lengths


def long_range_markdown(report: dict) -> str:
    """long_range.md: SMT→DMT against BPTT on the same cell and wall-clock and the fused GRU and minGRU, on retrieval
    (T = 256, 1024), delayed_recall and copy (T = 256), with the other recipe, the group variants, the lever screens
    and the budget series (benchmarks/long_range.py; its runs: plans/long_range.txt, plans/long_range_levers.txt,
    whose run names are the report's). Rows are (group, method, preset, variant, budget) over seeds; "best during
    training" is the best of each run's 8 timed evaluations and its final score. The script scored each finished run
    on 8 batches of 32 (`smtrnn eval RUN`; `smtrnn train` ends on train.eval_batches), the retrieval-256 runs also at
    T = 512, 1024 (`smtrnn eval RUN --batches 4 --seq-len 512,1024`), which screen.py does not do; it also drew
    long_range_curves.png and long_range_diagnostics.png."""
    lines = [
        f"RNN alone from m_∅, accuracy on held-out sequences ({report['eval_sequences']} per run); the same "
        f"training wall-clock per method, two runs at a time with 1 thread each; {report['device']}, torch "
        f"{report['torch']}. SMT→DMT and BPTT use the same cell and memory (`long`; SMT→DMT "
        "runs the adopted recipe, `contractive`, or `long` without the contraction where a row says so; "
        "delayed_recall has the linear memory lever and three times the learning rate, both methods); the fused GRU "
        "and minGRU use `small` (hidden 128). Teacher and final drift are for SMT→DMT runs.",
        "",
        "Best during training = mean over seeds of the best of the 8 evaluations during training and the final "
        "one (what keeping the best checkpoint would give).",
        "",
        "| group | method | preset / variant | budget | seeds | RNN alone (mean ± std) | per seed | best during "
        "training | teacher | final drift | steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["summary"]:
        name = f"{s['preset']} / {s['variant']}" if s["variant"] else s["preset"]
        lines.append(
            f"| {s['group']} | {s['method']} | {name} | {s['budget_s']:.0f} s | {s['seeds']} | "
            f"{s['mean']:.3f} ± {s['std']:.3f} | {' / '.join(f'{v:.3f}' for v in s['scores'])} | "
            f"{s['best_during']:.3f} | {number(s['teacher'])} | {number(s['drift_final'])} | {s['steps']:.0f} |"
        )
    longer = [r for r in report["runs"] if r.get("generalization")]
    if longer:
        lines += [
            "",
            "Trained at T = 256, scored at longer T (4 batches of 32; RNN alone / teacher):",
            "",
            "| run | " + " | ".join(f"T = {n}" for n in LONG_RANGE_LENGTHS) + " |",
            "|---|" + "---|" * len(LONG_RANGE_LENGTHS),
        ]
        for r in longer:
            cells = []
            for n in LONG_RANGE_LENGTHS:
                g = r["generalization"][str(n)]
                cells.append(f"{g['rnn']:.3f}" + (f" / {g['teacher']:.3f}" if g["teacher"] is not None else ""))
            lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += diagnostics_table(
        [(r["name"], r["score"], r["diagnostics"]) for r in report["runs"] if r.get("diagnostics")], "SMT→DMT runs"
    )
    return "\n".join(lines) + "\n"


def long_range_headline(report: dict) -> str:
    """long_range_headline.md: the confirmation groups only (plans/long_range.txt), SMT→DMT with the adopted recipe:
    RNN alone per method, mean ± std over seeds and the per-seed scores."""
    lines = [
        "| task, T (budget) | method | seeds | RNN alone | per seed | best during training |",
        "|---|---|---|---|---|---|",
    ]
    order = ["smt+dmt", "bptt", "gru-fused", "mingru"]
    rows = sorted(
        (
            s
            for s in report["summary"]
            if s["group"] in LONG_RANGE_GROUPS
            and not s["variant"]
            and (s["method"] != "smt+dmt" or s["preset"] == LONG_RANGE_RECIPE)
        ),
        key=lambda s: (LONG_RANGE_GROUPS.index(s["group"]), order.index(s["method"])),
    )
    for s in rows:
        name = s["method"] + (f" ({s['preset']})" if s["method"] == "smt+dmt" else "")
        lines.append(
            f"| {s['group']} ({s['budget_s']:.0f} s) | {name} | {s['seeds']} | {s['mean']:.3f} ± "
            f"{s['std']:.3f} | {' / '.join(f'{v:.3f}' for v in s['scores'])} | {s['best_during']:.3f} |"
        )
    return "\n".join(lines) + "\n"
