"""The study runner (`smtrnn.tools.study`) without training: plan base lines expand to the runs' arguments, a plan
written from runs reads back as those runs, a finished run whose expanded line changed is refused, settings group
seeds, and a report's JSON keeps one run a line."""

from __future__ import annotations

import json

import pytest

from smtrnn.errors import ConfigError
from smtrnn.tools.study import (
    ARGS_FILE,
    RESULT_FILE,
    Study,
    parse_plan,
    plan_text,
    report_json,
    settings,
    summary,
)

PLAN = """# a comment line
= --task copy --seq-len 64 --set 'task.params={"side": 28}'
copy-smt --method smt+dmt  # a comment after a run
copy-bptt --method bptt

= --task text
text-a --seed 1
=
bare --steps 2
"""


def test_base_lines_are_put_before_every_following_run_until_the_next():
    assert parse_plan(PLAN) == [
        ("copy-smt", ["--task", "copy", "--seq-len", "64", "--set", 'task.params={"side": 28}', "--method", "smt+dmt"]),
        ("copy-bptt", ["--task", "copy", "--seq-len", "64", "--set", 'task.params={"side": 28}', "--method", "bptt"]),
        ("text-a", ["--task", "text", "--seed", "1"]),
        ("bare", ["--steps", "2"]),
    ]


def test_a_repeated_run_name_is_refused_with_its_line():
    with pytest.raises(ConfigError, match="plan.txt:3: run name 'a' appears twice"):
        parse_plan("a --steps 1\n= --task copy\na --steps 2\n", "plan.txt")


def test_a_written_plan_reads_back_as_its_runs_with_their_shared_base():
    runs = parse_plan(PLAN)[:2] + [("other", ["--task", "copy", "--seq-len", "64", "--lr", "3e-3"])]
    text = plan_text(runs, "made here")
    assert text.splitlines()[:2] == ["# made here", "= --task copy --seq-len 64"]
    assert parse_plan(text) == runs
    assert parse_plan(plan_text(runs[2:])) == runs[2:]


def finished(work, name: str, args: list[str]) -> None:
    (work / name).mkdir(parents=True)
    (work / name / ARGS_FILE).write_text(json.dumps(args))
    (work / name / RESULT_FILE).write_text("{}")


def test_a_finished_run_whose_expanded_line_changed_is_refused(tmp_path):
    runs = parse_plan(PLAN)
    finished(tmp_path, "copy-smt", runs[0][1])
    logged = []
    study = Study(tmp_path, log=logged.append)
    study.train(runs[:1])  # the same expanded line: skipped, nothing started
    assert logged == ["copy-smt: finished earlier, skipped"]
    changed = parse_plan(PLAN.replace("--seq-len 64", "--seq-len 128"))  # the base line, not the run's own line
    with pytest.raises(ConfigError, match="copy-smt finished with other arguments than its plan line"):
        study.check_finished(changed)  # what `train` asks first: nothing trains when it fails
    moved = parse_plan(
        PLAN.replace("= --task copy --seq-len 64", "= --task copy").replace(
            "--method smt+dmt", "--seq-len 64 --method smt+dmt"
        )
    )
    with pytest.raises(ConfigError, match="other arguments"):  # the same words in another order are another line
        study.check_finished(moved)


def test_settings_group_seeds_and_keep_runs_without_one_alone():
    rows = [{"name": n} for n in ("a-s0", "b", "a-s1", "c-s2")]
    assert {k: [r["name"] for r in v] for k, v in settings(rows).items()} == {
        "a": ["a-s0", "a-s1"],
        "c": ["c-s2"],
        "b": ["b"],
    }
    assert summary([0.5, None, 0.9]) == {
        "mean": 0.7,
        "std": pytest.approx(0.2828, abs=1e-4),
        "min": 0.5,
        "max": 0.9,
        "seeds": 2,
    }
    assert summary([None]) is None


@pytest.mark.parametrize("mapping", [False, True])
def test_a_report_is_json_with_one_line_per_run(mapping):
    runs = [{"name": f"r{i}", "curve": [[1.5, 0.25], [3.0, 0.5]], "test": {"x": None, "y": [1, 2]}} for i in range(3)]
    report = {
        "benchmark": {"script": "s.py", "table": "markdown"},
        "plan": "p.txt",
        "runs": {r["name"]: r for r in runs} if mapping else runs,
        "missing": [],
        "lengths": [1, 2],
    }
    text = report_json(report)
    assert json.loads(text) == report and text.endswith("}\n")
    lines = text.splitlines()
    for run in runs:  # each run whole on one line of its own
        (line,) = [line for line in lines if f'"name": "{run["name"]}"' in line]
        assert json.loads(line.strip().rstrip(",").split(": ", 1)[1] if mapping else line.strip().rstrip(",")) == run
    assert '    "script": "s.py",' in lines  # the other fields as before, indented
