"""PNG figures of the SMT diagnostics (`smtrnn eval RUN --plots DIR`). Needs matplotlib (`pip install
'smtrnn[plots]'`); nothing else in the package imports it.

From the curves of `evaluate(..., curves=True)` and `gradient_curves`:
- drift.png: δ_t of the RNN's own rollout against the teacher's memories, against t;
- collapse.png: normalized singular spectra of teacher and RNN memories (a collapsed memory is one spike), with
  effective rank and uniformity;
- accuracy.png: accuracy per position bucket — RNN alone (rollout), one-step on teacher memories, teacher;
- gradients.png: ‖∂L/∂m_t‖ against t for SMT and BPTT on this RNN;
- context.png (text, pixels): bits per token by position in the held-out document, RNN alone (whole documents)
  and teacher (within its windows of T): whether more context keeps helping;
- markov_gap.png, growth.png, probe.png: the failure diagnostics of `smtrnn.diagnostics` (SMT runs).

And a study's figures (`smtrnn.tools.study`), from its report: validation bits against training time, test bits by
position in the document, the RNN alone against the evaluation length; `smtrnn compare`'s score against the training
length, learning curves and drift by position.
"""

from __future__ import annotations

from pathlib import Path

from smtrnn.errors import SmtrnnError
from smtrnn.tools.study import setting, settings
from smtrnn.tools.study_report import length_columns, length_means, position_groups, position_means


def require_matplotlib() -> None:
    """Raise a one-line SmtrnnError when matplotlib is not installed."""
    pyplot()


def pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise SmtrnnError("--plots needs matplotlib: pip install 'smtrnn[plots]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(result: dict, gradients: dict, out_dir: str | Path, title: str) -> list[Path]:
    """Write the diagnostic PNGs into out_dir (created if needed) -> their paths. `result` must hold "curves"."""
    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves, written = result["curves"], []

    def save(fig, name: str) -> None:
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    if "drift" in curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(range(len(curves["drift"])), curves["drift"])
        ax.set(
            xlabel="position t",
            ylabel="drift δ_t = mean (m̂_t − m_t)²",
            yscale="log",
            title=f"rollout drift (final {result['drift_final']:.3g}; ≈ 2 = unrelated)",
        )
        save(fig, "drift.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, spectrum in curves["singular_values"].items():
        rank = result["memory_effective_rank"] if name == "teacher" else result["rnn_effective_rank"]
        ax.plot(range(1, len(spectrum) + 1), spectrum, label=f"{name} memories (effective rank {rank:.1f})")
    uniform = f", teacher uniformity {result['memory_uniformity']:.2f}" if "memory_uniformity" in result else ""
    ax.set(
        xlabel="singular value index",
        ylabel="normalized singular value",
        yscale="log",
        title=f"memory collapse check{uniform}",
    )
    ax.legend(fontsize=8)
    save(fig, "collapse.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"rnn": "RNN alone (rollout from m_∅)", "onestep": "one step on teacher memories", "teacher": "teacher"}
    for name, buckets in curves["accuracy_by_position"].items():
        ax.plot(list(buckets), list(buckets.values()), marker="o", label=labels[name])
    ax.set(xlabel="position bucket", ylabel="accuracy", ylim=(0, 1.05), title="accuracy by position")
    ax.legend(fontsize=8)
    save(fig, "accuracy.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, norms in gradients.items():
        # positions no loss term reaches have gradient exactly 0: left out of the log-scale plot
        ax.plot(range(len(norms)), [v if v > 0 else float("nan") for v in norms], label=f"{name.upper()} loss")
    ax.set(xlabel="position t", ylabel="‖∂L/∂m_t‖ (batch mean)", yscale="log", title="gradient reaching each memory")
    ax.legend(fontsize=8)
    save(fig, "gradients.png")

    documents = result.get("held_out_documents")
    if documents:
        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label in (
            ("rnn_bits_by_position", "RNN alone, whole documents from m_∅"),
            ("teacher_bits_by_position", "teacher, within its windows of T"),
        ):
            if documents.get(key):
                ax.plot(list(documents[key]), list(documents[key].values()), marker="o", label=label)
        ax.set(xlabel="position in the document (bucket)", ylabel="bits per token", title="bits by context length")
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.legend(fontsize=8)
        save(fig, "context.png")
    return written


def write_diagnostic_plots(diag: dict, out_dir: str | Path, title: str) -> list[Path]:
    """markov_gap.png, growth.png and (when the task defines a needed symbol) probe.png from `diagnostics(...)`."""
    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)

    gap = diag["markov_gap"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(gap["by_position"], label="one-step MSE of f on teacher memories / spread")
    ax.plot(gap["teacher_update_by_position"], alpha=0.6, label="teacher update ‖m_t − m_{t-1}‖² / spread")
    ax.set(xlabel="position t", yscale="log", title=f"Markov gap (mean {gap['mean']:.3g})")
    ax.legend(fontsize=8)
    save(fig, "markov_gap.png")

    growth = diag["growth"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(growth["positions"], growth["by_position"], marker="o")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set(
        xlabel="position t",
        ylabel=f"per-step growth over {growth['steps']} steps",
        title="perturbation growth along the teacher's trajectory (> 1 amplifies drift)",
    )
    save(fig, "growth.png")

    if diag.get("probe"):
        probe = diag["probe"]
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in ("teacher", "rollout"):
            values = [float("nan") if v is None else v for v in probe[f"{name}_by_position"]]
            ax.plot(probe["positions"], values, label=f"{name} memories ({probe[name]:.3f})")
        ax.axhline(probe["chance"], color="k", lw=0.5, ls="--", label=f"chance {probe['chance']:.3f}")
        ax.set(xlabel="position t", ylabel="probe accuracy", ylim=(0, 1.05), title="is the needed symbol decodable?")
        ax.legend(fontsize=8)
        save(fig, "probe.png")
    return written


def _study_figure(draw, path: Path, xlabel: str, ylabel: str, **axes) -> Path:
    """One figure of a study: `draw(ax)` draws its lines; labelled, with a legend where there are lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    draw(ax)
    ax.set(xlabel=xlabel, ylabel=ylabel, **axes)
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bits(report: dict, path: Path) -> Path:
    """Validation bits of the RNN alone against training seconds, one line per run, one colour per setting."""

    def draw(ax):
        colours: dict[str, str] = {}
        for row in report["runs"]:
            points = [(t, b) for t, b in row.get("bits_curve", []) if b is not None]
            if points:
                first = setting(row["name"]) not in colours  # one legend entry per setting
                colour = colours.setdefault(setting(row["name"]), f"C{len(colours) % 10}")
                ax.plot(*zip(*points), color=colour, alpha=0.8, label=setting(row["name"]) if first else None)

    return _study_figure(draw, path, "training seconds", "RNN alone, validation bits per token")


def plot_positions(report: dict, path: Path) -> Path:
    """Test bits of the RNN alone by position in the document (mean over seeds), one line per setting."""

    def draw(ax):
        for name, rows in position_groups(report).items():
            by_bucket = position_means(rows)
            ax.plot(range(len(by_bucket)), list(by_bucket.values()), marker="o", label=name)
            ax.set_xticks(range(len(by_bucket)), list(by_bucket), rotation=45, fontsize=7)

    return _study_figure(draw, path, "position t in the test document (bucket)", "RNN alone, test bits per token")


def plot_lengths(report: dict, path: Path) -> Path:
    """The RNN alone against the evaluation length (log axis), the mean over seeds, one line per setting."""
    columns = length_columns(report)

    def draw(ax):
        for i, (name, rows) in enumerate(settings(report["runs"]).items()):
            values = length_means(rows, columns)
            points = [(int(c), sum(values[c]) / len(values[c])) for c in columns if values[c]]
            if points:  # ten colours, then the next line style: every setting tells apart from the others
                style = ("-", "--", ":")[i // 10 % 3]
                ax.plot(*zip(*points), marker="o", color=f"C{i % 10}", linestyle=style, label=name)
        ax.set_xscale("log", base=2)

    return _study_figure(draw, path, "evaluation length T (trained shorter)", "RNN alone from m_∅, accuracy")


def plot_comparison(report: dict, out: Path) -> list[Path]:
    """`smtrnn compare`'s figures: score_vs_length.png (mean ± std over seeds), learning_curves.png (score against
    training seconds) and drift.png (the rollout's drift from the teacher by position bucket)."""
    score, label = report["score"], "T{T} {method} ({cell}) s{seed}"

    def by_length(ax):
        series: dict[tuple, list] = {}
        for s in report["summary"]:
            series.setdefault((s["method"], s["cell"]), []).append((s["T"], s["mean"], s["std"]))
        for (method, cell), points in series.items():
            xs, ys, es = zip(*sorted(points))
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{method} ({cell})")

    def curves(ax):
        for row in report["runs"]:
            if row["curve"]:
                ax.plot(*zip(*row["curve"]), alpha=0.7, label=label.format(**row))

    def drift(ax):
        for row in report["runs"]:
            if row.get("drift"):
                ax.plot(list(row["drift"]), list(row["drift"].values()), marker="o", label=label.format(**row))

    title = f"{report['task']}: RNN alone"
    return [
        _study_figure(by_length, out / "score_vs_length.png", "sequence length T", score, xscale="log", title=title),
        _study_figure(curves, out / "learning_curves.png", "training seconds", score, title="learning curves"),
        _study_figure(drift, out / "drift.png", "position t (bucket)", "drift δ_t", yscale="log", title="drift"),
    ]
