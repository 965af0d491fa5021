"""`smtrnn compare`: the plan of runs, budgets, an end-to-end study on the debug preset, resuming (finished runs
skipped, interrupted ones continued), and refusals before any run starts."""

from __future__ import annotations

import json

import pytest

from smtrnn.cli import main
from smtrnn.compare import RESULT_FILE, RunSpec, parse_budget, plan, summarize
from smtrnn.errors import ConfigError


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), (" 2m ", 120)])
def test_budgets(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["ten", "0", "-5m", "5d", ""])
def test_bad_budgets(text):
    with pytest.raises(ConfigError, match="--budget"):
        parse_budget(text)


def test_plan_runs_baselines_once_with_their_own_cell():
    specs = plan([64, 256], ["smt", "gru-fused"], ["mlp", "transformer"], seeds=2)
    assert len(specs) == 2 * (2 * 2 + 1 * 2)
    assert {s.cell for s in specs if s.method == "gru-fused"} == {"gru-fused"}
    assert RunSpec(64, "smt", "mlp", 1) in specs and len({s.name for s in specs}) == len(specs)


def test_summary_is_mean_and_spread_over_seeds():
    rows = [{"T": 8, "method": "smt", "cell": "mlp", "seed": s, "score": v, "steps": 10} for s, v in
            enumerate([0.5, 0.7, 0.9])]
    (summary,) = summarize(rows)
    assert summary["mean"] == pytest.approx(0.7) and summary["std"] == pytest.approx(0.2)
    assert (summary["min"], summary["max"], summary["seeds"]) == (0.5, 0.9, 3)


ARGS = ["compare", "--task", "retrieval", "--preset", "debug", "--lengths", "12,16", "--methods", "smt,bptt",
        "--seeds", "1", "--steps", "3", "--eval-batches", "1", "--device", "cpu"]


def test_study_end_to_end_then_resume(tmp_path, capsys):
    out = tmp_path / "study"
    assert main([*ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    report = json.loads((out / "results.json").read_text())
    assert [(r["T"], r["method"]) for r in report["runs"]] == [(12, "smt"), (12, "bptt"), (16, "smt"), (16, "bptt")]
    assert all(r["steps"] == 3 and 0 <= r["score"] <= 1 for r in report["runs"])
    assert "| 16 | bptt | mlp | 1 |" in printed.out and printed.out == (out / "results.md").read_text()
    finished = {p: p.read_bytes() for p in out.glob(f"runs/*/{RESULT_FILE}")}
    assert len(finished) == 4

    # an interrupted run (checkpoint, no result yet) resumes; the finished ones are skipped untouched
    interrupted = out / "runs" / "T16-smt-mlp-s0" / RESULT_FILE
    interrupted.unlink()
    assert main([*ARGS, "--out", str(out)]) == 0
    log = capsys.readouterr().err
    assert log.count("finished earlier, skipped") == 3 and "T16-smt-mlp-s0: training (resuming)" in log
    assert all(p.read_bytes() == data for p, data in finished.items() if p != interrupted)
    assert json.loads(interrupted.read_text())["steps"] == 3


def test_study_writes_plots(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "study"
    argv = [*ARGS, "--out", str(out)]
    argv[argv.index("--lengths") + 1], argv[argv.index("--methods") + 1] = "12", "smt"
    assert main(argv) == 0
    for name in ("score_vs_length.png", "learning_curves.png", "drift.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")


def test_baselines_run_with_their_own_cell(tmp_path, capsys):
    out = tmp_path / "study"
    argv = [*ARGS, "--out", str(out)]
    argv[argv.index("--lengths") + 1], argv[argv.index("--methods") + 1] = "12", "gru-fused,lstm-fused,mingru"
    assert main(argv) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["method"], r["cell"]) for r in runs] == [("gru-fused", "gru-fused"), ("lstm-fused", "lstm-fused"),
                                                         ("mingru", "mingru")]
    assert all("teacher_accuracy" not in r for r in runs)


@pytest.mark.parametrize("change, message", [
    (["--methods", "smt,magic"], "unknown 'magic'"),
    (["--lengths", "12,abc"], "--lengths must be positive integers"),
    (["--cells", "nope"], "nope"),
    (["--lengths", "2"], "seq_len"),
    (["--seeds", "0"], "--seeds"),
    (["--steps", "0"], "--budget"),
])
def test_bad_studies_fail_before_any_run(change, message, tmp_path, capsys):
    argv = list(ARGS)
    for flag, value in zip(change[::2], change[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    out = tmp_path / "study"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("smtrnn: error:") and message in err and "\n" not in err
    assert not (out / "runs").exists()
