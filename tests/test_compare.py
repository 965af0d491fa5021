"""`smtrnn compare`: the plan of runs, budgets, an end-to-end study on the debug preset through the study runner
(its plan.txt, resuming: finished runs skipped, interrupted ones continued), and refusals before any run starts."""

from __future__ import annotations

import json

import pytest

from smtrnn.checkpoint import load_model
from smtrnn.cli import main
from smtrnn.data.tasks import build_task
from smtrnn.errors import ConfigError
from smtrnn.evaluate import evaluate
from smtrnn.settings import parse_budget
from smtrnn.tools.compare import RunSpec, plan, summarize
from smtrnn.tools.study import ARGS_FILE, RESULT_FILE, read_plan


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
    rows = [
        {"name": f"T8-smt-mlp-s{s}", "T": 8, "method": "smt", "cell": "mlp", "seed": s, "score": v, "steps": 10}
        for s, v in enumerate([0.5, 0.7, 0.9])
    ]
    other = rows[0] | {"name": "T8-bptt-mlp-s0", "method": "bptt", "score": 0.1}
    summary, alone = summarize([*rows, other])
    assert summary["mean"] == pytest.approx(0.7) and summary["std"] == pytest.approx(0.2)
    assert (summary["min"], summary["max"], summary["seeds"]) == (0.5, 0.9, 3)
    assert (alone["method"], alone["mean"], alone["std"], alone["seeds"]) == ("bptt", 0.1, 0.0, 1)


ARGS = [
    "compare",
    "--task",
    "retrieval",
    "--preset",
    "debug",
    "--lengths",
    "12,16",
    "--methods",
    "smt,bptt",
    "--seeds",
    "1",
    "--steps",
    "3",
    "--eval-batches",
    "1",
    "--device",
    "cpu",
]


@pytest.mark.slow
def test_study_end_to_end_then_resume(tmp_path, capsys):
    out = tmp_path / "study"
    assert main([*ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    report = json.loads((out / "results.json").read_text())
    assert [(r["T"], r["method"]) for r in report["runs"]] == [(12, "smt"), (12, "bptt"), (16, "smt"), (16, "bptt")]
    # the grid as a plan: a base line every run shares, then one `smtrnn train` line per run, as each run trained
    plan_lines = (out / "plan.txt").read_text().splitlines()
    assert plan_lines[1].startswith("= --task retrieval --preset debug --steps 3")
    assert plan_lines[2] == "T12-smt-mlp-s0 --seq-len 12 --method smt --cell mlp --seed 0"
    runs = read_plan(out / "plan.txt")
    assert [name for name, _ in runs] == [r["name"] for r in report["runs"]]
    for name, args in runs:
        assert json.loads((out / "runs" / name / ARGS_FILE).read_text()) == args
    for row in report["runs"]:  # the score is the RNN alone of the run's saved model, scored afresh
        cfg, model = load_model(out / "runs" / RunSpec(row["T"], row["method"], "mlp", 0).name)
        fresh = evaluate(model, build_task(cfg), row["T"], 1, cfg.optim.batch_size)
        assert row["steps"] == 3 and row["score"] == row["rnn_accuracy"] == fresh["rnn_accuracy"]
        assert row["rnn_bits_per_token"] == pytest.approx(fresh["rnn_bits_per_token"])
        assert (cfg.task.seq_len, cfg.train.method, cfg.train.eval_batches) == (row["T"], row["method"], 1)
    assert "| 16 | bptt | mlp | 1 |" in printed.out and printed.out == (out / "results.md").read_text()
    finished = {p: p.read_bytes() for p in out.glob(f"runs/*/{RESULT_FILE}")}
    assert len(finished) == 4

    # an interrupted run (checkpoint, no result yet) resumes; the finished ones are skipped untouched
    interrupted = out / "runs" / "T16-smt-mlp-s0" / RESULT_FILE
    interrupted.unlink()
    assert main([*ARGS, "--out", str(out)]) == 0
    log = capsys.readouterr().err
    assert log.count("finished earlier, skipped") == 3 and "start T16-smt-mlp-s0 (resuming)" in log
    assert all(p.read_bytes() == data for p, data in finished.items() if p != interrupted)
    assert interrupted.exists() and json.loads((out / "results.json").read_text())["runs"][2]["steps"] == 3


@pytest.mark.slow
def test_study_writes_plots(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "study"
    argv = [*ARGS, "--out", str(out)]
    argv[argv.index("--lengths") + 1], argv[argv.index("--methods") + 1] = "12", "smt"
    assert main(argv) == 0
    for name in ("score_vs_length.png", "learning_curves.png", "drift.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_baselines_run_with_their_own_cell(tmp_path, capsys):
    out = tmp_path / "study"
    argv = [*ARGS, "--out", str(out)]
    argv[argv.index("--lengths") + 1], argv[argv.index("--methods") + 1] = "12", "gru-fused,lstm-fused,mingru"
    assert main(argv) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["method"], r["cell"]) for r in runs] == [
        ("gru-fused", "gru-fused"),
        ("lstm-fused", "lstm-fused"),
        ("mingru", "mingru"),
    ]
    assert all("teacher_accuracy" not in r for r in runs)


@pytest.mark.parametrize(
    "change, message",
    [
        (["--methods", "smt,magic"], "unknown 'magic'"),
        (["--lengths", "12,abc"], "--lengths must be positive integers"),
        (["--cells", "nope"], "nope"),
        (["--lengths", "2"], "seq_len"),
        (["--seeds", "0"], "--seeds"),
        (["--steps", "0"], "--budget"),
    ],
)
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


@pytest.mark.slow
def test_eval_lengths_score_every_run_past_its_training_length_and_extend_finished_runs(tmp_path, capsys):
    out = tmp_path / "study"
    argv = [
        "compare",
        "--preset",
        "debug",
        "--lengths",
        "8",
        "--methods",
        "smt,bptt",
        "--seeds",
        "1",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main([*argv, "--eval-lengths", "16"]) == 0
    capsys.readouterr()
    assert main([*argv, "--eval-lengths", "16,32"]) == 0  # nothing trains again; only T = 32 is scored
    printed, log = capsys.readouterr()
    assert log.count("finished earlier, skipped") == 2
    report = json.loads((out / "results.json").read_text())
    for row in report["runs"]:  # each length scores the run's saved model at that length, T = 32 added later
        assert set(row["lengths"]) == {"16", "32"}
        cfg, model = load_model(out / "runs" / RunSpec(8, row["method"], "mlp", 0).name)
        for length in (16, 32):
            fresh = evaluate(model, build_task(cfg), length, 8, cfg.optim.batch_size)
            scored = row["lengths"][str(length)]
            assert scored["rnn_accuracy"] == fresh["rnn_accuracy"]
            assert scored["rnn_bits_per_token"] == pytest.approx(fresh["rnn_bits_per_token"])
    assert "teacher_accuracy" not in report["runs"][0]["lengths"]["32"] and "T = 32" in printed  # RNN alone
    assert main([*argv, "--eval-lengths", "16,32,48", "--teacher-at-lengths"]) == 0  # the teacher only when asked
    scored = json.loads((out / "results.json").read_text())["runs"][0]["lengths"]
    assert "teacher_accuracy" in scored["48"] and "teacher_accuracy" not in scored["32"]
    assert main([*argv, "--eval-lengths", str(10**12), "--teacher-at-lengths"]) == 2  # its memory estimate: refused
    assert main([*argv, "--eval-lengths", "2"]) == 2  # below the task's minimum: one line, before anything runs
    assert "seq_len >= 3" in capsys.readouterr().err


def test_eval_scores_the_rnn_at_other_lengths(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--preset",
                "debug",
                "--task",
                "retrieval",
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
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                str(run),
                "--seq-len",
                "16,32,16",
                "--json",
                "--no-diagnostics",
                "--batches",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    lengths = json.loads(capsys.readouterr().out)["lengths"]
    assert list(lengths) == ["16", "32"] and "rnn_accuracy" in lengths["32"]
    assert "teacher_accuracy" not in lengths["32"]  # the RNN alone, streamed: the teacher only when asked
    asked = ["eval", str(run), "--seq-len", "32", "--teacher-at-lengths", "--json", "--no-diagnostics"]
    assert main([*asked, "--batches", "1", "--device", "cpu"]) == 0
    scored = json.loads(capsys.readouterr().out)["lengths"]["32"]
    assert {"rnn_accuracy", "teacher_accuracy", "drift_final"} <= set(scored)
    for bad, words in (("0", "positive"), ("a,b", "separated by commas"), ("2", "seq_len >= 3")):
        assert main(["eval", str(run), "--seq-len", bad, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err


@pytest.mark.slow
def test_a_finished_run_asked_for_with_another_plan_line_is_refused_not_reported(tmp_path, capsys):
    out = tmp_path / "study"
    argv = [*ARGS, "--out", str(out)]
    argv[argv.index("--lengths") + 1] = "12"
    assert main(argv) == 0
    finished = {p: p.read_bytes() for p in out.glob(f"runs/*/{RESULT_FILE}")}
    capsys.readouterr()
    assert main(argv) == 0  # the same command: both runs skipped
    assert capsys.readouterr().err.count("finished earlier, skipped") == 2
    # another base config makes every run another run: the study stops with one line before anything trains
    assert main([*argv, "--set", "smt.dynamics_weight=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "T12-smt-mlp-s0 finished with other arguments than its plan line" in err and "\n" not in err
    assert main([*argv[:-2], "--steps", "4", "--out", str(out)]) == 2  # the budget is part of what a run is
    assert "finished with other arguments" in capsys.readouterr().err
    assert all(p.read_bytes() == data for p, data in finished.items())
