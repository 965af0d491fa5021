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
"""

from __future__ import annotations

from pathlib import Path

from smtrnn.errors import SmtrnnError


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
