"""The table renderers of retired studies: each stored report of a retired one-off script names one of these in
its field "benchmark", and its field "retired" names the last commit that had the script (run it from a checkout
of that commit). Only the tables live on here, so the stored results keep regenerating; the training code went
with the scripts.
"""

from __future__ import annotations


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
