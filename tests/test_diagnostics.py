"""The diagnostics behind `smtrnn eval --plots`: gradient paths (SMT's gradient w.r.t. m_t is local in time,
BPTT's is not), the per-position curves of `evaluate(curves=True)`, and the PNGs the CLI writes."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from support import debug_config

from smtrnn.cli import main
from smtrnn.data.tasks import make_task
from smtrnn.evaluate import evaluate
from smtrnn.model import Model
from smtrnn.tools.gradients import bptt_memory_gradients, gradient_curves, smt_memory_gradients

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def build(method: str = "smt", task: str = "copy"):
    cfg = debug_config(task, method)
    task_ = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(0)
    return Model.for_run(cfg, task_.vocab_size), task_, cfg.task.seq_len


def batch(task, seq_len, size=4, seed=0):
    return task.sample(size, seq_len, torch.Generator().manual_seed(seed))


def with_input_changed(x, s):
    x2 = x.clone()
    x2[:, s] = (x2[:, s] + 1) % int(x.max() + 1)
    return x2


# --- gradient paths ------------------------------------------------------------------------------------------


def test_smt_gradient_at_m_t_only_depends_on_the_steps_touching_it():
    """With the memories given, changing x_s moves ∂L/∂m_t only at t = s-1 (input of step s) and t = s (its
    target): no gradient path is longer than one step."""
    model, task, seq_len = build()
    x, y = batch(task, seq_len)
    with torch.no_grad():
        m = model.teacher.encode(x)
    s = seq_len // 2
    before = smt_memory_gradients(model.rnn, m, x, y)
    after = smt_memory_gradients(model.rnn, m, with_input_changed(x, s), y)
    changed = {int(t) for t in torch.nonzero(before != after)}
    assert changed == {s - 1, s}


def test_bptt_gradient_reaches_back_from_every_later_step():
    """In BPTT, changing x_s changes the gradient at the first memory too: the path crosses s steps."""
    model, task, seq_len = build()
    x, y = batch(task, seq_len)
    s = seq_len - 2
    before = bptt_memory_gradients(model.rnn, x, y)
    after = bptt_memory_gradients(model.rnn, with_input_changed(x, s), y)
    assert before.shape == (seq_len,)
    assert not torch.allclose(before[0], after[0])


def test_bptt_gradient_of_an_unlabelled_tail_is_zero():
    """A memory after the last labelled position reaches no loss term: its gradient is exactly 0."""
    model, task, seq_len = build(task="retrieval")
    x, y = batch(task, seq_len)
    y[:, -1] = -1
    assert bptt_memory_gradients(model.rnn, x, y)[-1] == 0.0


def test_gradient_curves_leave_parameter_gradients_alone():
    model, task, seq_len = build()
    curves = gradient_curves(model, task, seq_len, 4)
    assert set(curves) == {"smt", "bptt"} and all(len(v) == seq_len for v in curves.values())
    assert all(p.grad is None for p in model.parameters())


def test_gradient_curves_of_a_bptt_model_have_no_smt_curve():
    model, task, seq_len = build("bptt")
    assert set(gradient_curves(model, task, seq_len, 4)) == {"bptt"}


# --- evaluation curves ---------------------------------------------------------------------------------------


def test_curves_agree_with_the_summary_numbers():
    model, task, seq_len = build()
    result = evaluate(model, task, seq_len, 2, 4, curves=True)
    curves = result["curves"]
    assert len(curves["drift"]) == seq_len and curves["drift"][-1] == pytest.approx(result["drift_final"])
    for bucket, value in result["drift"].items():
        start, _, stop = bucket.partition("-")
        span = curves["drift"][int(start) : int(stop or start) + 1]
        assert sum(span) / len(span) == pytest.approx(value)
    assert set(curves["accuracy_by_position"]) == {"rnn", "onestep", "teacher"}
    assert set(curves["accuracy_by_position"]["rnn"]) <= set(result["drift"])
    assert sum(curves["singular_values"]["teacher"]) == pytest.approx(1.0, abs=1e-5)
    assert "curves" not in evaluate(model, task, seq_len, 2, 4)


def test_single_labelled_position_accuracy_equals_the_total():
    """retrieval labels one position per sequence: its bucket's accuracy is the whole accuracy."""
    model, task, seq_len = build(task="retrieval")
    result = evaluate(model, task, seq_len, 2, 4, curves=True)
    (only,) = result["curves"]["accuracy_by_position"]["rnn"].values()
    assert only == pytest.approx(result["rnn_accuracy"])


# --- the CLI ------------------------------------------------------------------------------------------------


def test_eval_plots_writes_pngs_and_data(smt_run, tmp_path, capsys):
    run_dir, _ = smt_run
    assert main(["eval", str(run_dir), "--json", "--device", "cpu", "--batches", "2"]) == 0
    plain = capsys.readouterr().out
    out = tmp_path / "plots"
    assert main(["eval", str(run_dir), "--json", "--device", "cpu", "--batches", "2", "--plots", str(out)]) == 0
    assert capsys.readouterr().out == plain  # the report itself does not change
    for name in ("drift.png", "collapse.png", "accuracy.png", "gradients.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    saved = json.loads((out / "diagnostics.json").read_text())
    assert set(saved["gradient_norms"]) == {"smt", "bptt"} and "drift" in saved["eval"]["curves"]


def test_eval_plots_of_a_bptt_run_skip_the_teacher_figures(bptt_run, tmp_path):
    out = tmp_path / "plots"
    assert main(["eval", str(bptt_run[0]), "--device", "cpu", "--batches", "1", "--plots", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["accuracy.png", "collapse.png", "gradients.png"]


def test_eval_plots_of_a_text_run_add_bits_by_context(tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--preset",
                "debug",
                "--task",
                "text",
                "--method",
                "bptt",
                "--steps",
                "2",
                "--quiet",
                "--device",
                "cpu",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    out = tmp_path / "plots"
    assert (
        main(["eval", str(run), "--device", "cpu", "--batches", "1", "--max-tokens", "3000", "--plots", str(out)]) == 0
    )
    assert (out / "context.png").read_bytes().startswith(PNG_SIGNATURE)
    documents = json.loads((out / "diagnostics.json").read_text())["eval"]["held_out_documents"]
    assert "rnn_bits_by_position" in documents


def test_eval_plots_into_a_file_is_refused(smt_run, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert main(["eval", str(smt_run[0]), "--device", "cpu", "--plots", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("smtrnn: error:") and "not a directory" in err and "\n" not in err
    assert target.read_text() == "keep me"


def test_eval_plots_without_matplotlib_says_how_to_install(smt_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["eval", str(smt_run[0]), "--device", "cpu", "--plots", str(tmp_path / "p")]) == 2
    assert "pip install 'smtrnn[plots]'" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
