"""The stored benchmark results: every markdown table in benchmarks/results/ is what the script its JSON names makes
of that JSON (no hand edits), retired studies say which commit still has their script, and the study runners
(long_range, screen) plan, train, resume and report as their results rely on."""

from __future__ import annotations

import functools
import importlib
import json
import re
from pathlib import Path

import pytest
from support import ROOT, load_benchmark


@functools.cache
def load_script(script: str):
    """The module of a report's script: smtrnn/… as the installed package, benchmarks/NAME.py from its file."""
    if script.startswith("smtrnn/"):
        return importlib.import_module(script.removesuffix(".py").replace("/", "."))
    assert Path(script).parent == Path("benchmarks"), f"{script} is neither in smtrnn/ nor in benchmarks/"
    return load_benchmark(Path(script).stem)


def regenerated_tables(results: Path) -> dict[str, str]:
    """Each markdown table of `results` that a report there names, by file name, as made afresh from the report:
    NAME.md by the function `table` of the script in NAME.json's field "benchmark" (and NAME_headline.md by its
    `headline_table`, where it has one). A report with a markdown twin must carry that field."""
    tables = {}
    for path in sorted(results.glob("*.json")):
        if not path.with_suffix(".md").exists():
            continue
        report = json.loads(path.read_text())
        field = report.get("benchmark")
        assert isinstance(field, dict) and field.get("script") and field.get("table"), (
            f"{path.name} does not name the script that made it: give it a top-level field "
            '"benchmark": {"script": "benchmarks/NAME.py", "table": "markdown"} (harness.write_report writes it)'
        )
        module = load_script(field["script"])
        tables[f"{path.stem}.md"] = getattr(module, field["table"])(report)
        if "headline_table" in field:
            tables[f"{path.stem}_headline.md"] = getattr(module, field["headline_table"])(report)
    return tables


def test_stored_tables_are_regenerated_from_their_json():
    """Each stored markdown table is exactly what its generator makes of the stored JSON (no hand edits), and no
    stored table is left out."""
    results = ROOT / "benchmarks" / "results"
    tables = regenerated_tables(results)
    stored = sorted(path.name for path in results.glob("*.md"))
    assert sorted(tables) == stored, f"tables no report names: {sorted(set(stored) - set(tables))}"
    for name, table in tables.items():
        assert table == (results / name).read_text(), name


def test_the_harness_writes_the_field_the_tables_are_regenerated_from(tmp_path):
    step_syncs = load_script("benchmarks/step_syncs.py")
    stored = json.loads((ROOT / "benchmarks" / "results" / "step_syncs.json").read_text())
    report = {key: value for key, value in stored.items() if key != "benchmark"}
    importlib.import_module("harness").write_report(report, tmp_path, "t", step_syncs.markdown)
    field = json.loads((tmp_path / "t.json").read_text())["benchmark"]
    assert field == {"script": "benchmarks/step_syncs.py", "table": "markdown"}
    assert regenerated_tables(tmp_path) == {"t.md": (tmp_path / "t.md").read_text()}


def test_a_stored_report_that_does_not_name_its_script_is_refused(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"benchmark": "screen", "runs": []}))
    (tmp_path / "old.md").write_text("| a |\n")
    with pytest.raises(AssertionError, match="old.json does not name the script that made it"):
        regenerated_tables(tmp_path)


def test_a_retired_studys_report_names_the_commit_that_still_has_its_script():
    """Reports rendered by benchmarks/archive.py say where the code that made them lives: "retired" is
    "<commit> benchmarks/NAME.py", a script no longer in the tree."""
    retired = []
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        field = json.loads(path.read_text()).get("benchmark")
        if isinstance(field, dict) and field.get("script") == "benchmarks/archive.py":
            retired.append(field.get("retired", ""))
            assert re.fullmatch(r"[0-9a-f]{7,40} benchmarks/\w+\.py", retired[-1]), path.name
            assert not (ROOT / retired[-1].split()[1]).exists(), path.name
    assert retired


def test_long_range_plan_pairs_each_smt_run_with_bptt_and_every_lever_validates():
    from smtrnn.config import apply_overrides, validate
    from smtrnn.presets import make_preset
    from smtrnn.tools import compare

    bench = load_benchmark("long_range")
    specs = bench.plan(list(bench.GROUPS), 3, 1.0, levers=True, budgets=True)
    assert len({s.name for s in specs}) == len(specs)  # every run has its own directory
    confirm = [
        s
        for s in specs
        if s.group in bench.GROUPS
        and not s.variant
        and (s.method, s.preset) in (("smt+dmt", bench.adopted(s.task)), ("bptt", bench.BPTT_PRESET))
    ]
    assert len(confirm) == 2 * 3 * len(bench.GROUPS)
    for smt, bptt in zip(confirm[::2], confirm[1::2]):  # side by side: same task, length, seed and budget
        assert (smt.method, bptt.method) == ("smt+dmt", "bptt")
        assert (smt.group, smt.seed, smt.budget) == (bptt.group, bptt.seed, bptt.budget)
    for spec in specs:
        cfg = apply_overrides(
            make_preset(spec.preset, spec.task), dict(spec.overrides) | compare.STUDY_METHODS[spec.method]
        )
        cfg.task.seq_len = spec.length
        validate(cfg)


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_long_range_benchmark_runs_resumes_and_reports(tmp_path):
    """A tiny plan end to end: every run finishes in the run store, a second invocation trains nothing, and the
    report holds every run with diagnostics for SMT→DMT."""
    import subprocess
    import sys

    argv = [
        sys.executable,
        str(ROOT / "benchmarks" / "long_range.py"),
        "--groups",
        "retrieval-256",
        "--seeds",
        "1",
        "--scale",
        "0.003",
        "--no-levers",
        "--no-budgets",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "out"),
    ]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "long_range.json").read_text())
    # SMT→DMT (adopted recipe), BPTT, the fused GRU, minGRU, SMT→DMT with the previous recipe
    assert report["finished"] == len(report["planned"]) == 5
    smt = [r for r in report["runs"] if r["method"] == "smt+dmt"]
    assert smt and {"markov_gap", "growth", "probe"} <= set(smt[0]["diagnostics"])
    assert set(smt[0]["generalization"]) == {"512", "1024"}
    second = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "start" not in second.stdout  # nothing left to train
    assert load_benchmark("long_range").markdown(report) == (tmp_path / "out" / "long_range.md").read_text()
    # a run whose store is gone (a fresh checkout) is kept from the report, not trained again
    import shutil

    gone = report["runs"][1]["name"]
    shutil.rmtree(tmp_path / "work" / "runs" / gone)
    third = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "start" not in third.stdout, third.stderr[-2000:]
    again = json.loads((tmp_path / "out" / "long_range.json").read_text())
    assert [r["name"] for r in again["runs"]] == [r["name"] for r in report["runs"]]
    assert [r["name"] for r in again["runs"] if r.get("kept_from_report")] == [gone]


def test_long_range_report_keeps_every_group_when_one_group_runs(tmp_path):
    """The stored report's rows are all runs of the study's plan, and a report written while one group trains keeps
    the other groups' rows (from the earlier report, their store gone)."""
    bench = load_benchmark("long_range")
    stored = bench.reported(ROOT / "benchmarks" / "results" / "long_range.json")
    study = bench.plan(list(bench.GROUPS), bench.SEEDS, 1.0, True, True)
    assert set(stored) <= {s.name for s in study}  # a renamed run would otherwise vanish from the report
    for spec in study:
        if spec.name in stored:
            assert stored[spec.name]["overrides"] == dict(spec.overrides), spec.name
    one_group = bench.plan(["copy-256"], bench.SEEDS, 1.0, False, False)
    report = bench.collect(study, one_group, tmp_path, stored, with_diagnostics=False)
    assert report["finished"] == len(stored) and report["planned"] == [s.name for s in one_group]
    assert all(r["kept_from_report"] for r in report["runs"])


@pytest.mark.slow
def test_a_screen_trains_its_plan_reports_every_run_and_skips_finished_ones(tmp_path):
    import subprocess
    import sys

    plan = tmp_path / "plan.txt"
    plan.write_text(
        "# two tiny runs\na --preset debug --steps 2 --method smt+dmt\n"
        "b --preset debug --steps 2 --method bptt --cell mlp-linear  # the linear-skip cell\n"
    )
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "screen.py"),
        str(plan),
        "--name",
        "s",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "out"),
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "out" / "s.json").read_text())
    assert [r["name"] for r in report["runs"]] == ["a", "b"] and not report["missing"]
    assert report["runs"][1]["cell"] == "mlp-linear" and report["runs"][1]["steps"] == 2
    # the run with a teacher carries its failure diagnostics, measured once and kept in its folder; BPTT has none
    diagnostics = report["runs"][0]["diagnostics"]
    assert {"markov_gap", "growth", "probe"} <= diagnostics.keys() and "diagnostics" not in report["runs"][1]
    assert report["runs"][0]["teacher_curve"][-1][1] == report["runs"][0]["teacher_accuracy"]
    assert json.loads((tmp_path / "work" / "a" / "diagnostics.json").read_text()) == diagnostics
    table = (tmp_path / "out" / "s.md").read_text().split("Diagnostics of the runs with a teacher")[1]
    assert "\n| a | " in table and "\n| b | " not in table
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "start" not in again.stdout
    # a run whose folder is gone (a fresh checkout) keeps its row of the report, not trained again
    import shutil

    shutil.rmtree(tmp_path / "work" / "a")
    gone = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert gone.returncode == 0 and "start" not in gone.stdout, gone.stderr
    rows = json.loads((tmp_path / "out" / "s.json").read_text())["runs"]
    assert [r["name"] for r in rows] == ["a", "b"] and [r.get("kept_from_report") for r in rows] == [True, None]
    # a plan line changed after its run finished: refused in one line, the run and the report left as they were
    plan.write_text(plan.read_text().replace("--steps 2 --method bptt", "--steps 3 --method bptt"))
    kept = (tmp_path / "out" / "s.json").read_bytes()
    changed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert changed.returncode == 1 and "work/b finished with other arguments than its plan line" in changed.stderr
    assert changed.stderr.count("\n") == 1 and (tmp_path / "out" / "s.json").read_bytes() == kept


def test_a_screen_plan_with_a_repeated_run_name_is_refused(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text("a --steps 1\na --steps 2\n")
    with pytest.raises(SystemExit, match="run name 'a' appears twice"):
        load_benchmark("screen").read_plan(plan)


@pytest.mark.slow
def test_a_screen_with_seeds_reports_their_test_split_mean_and_plots_validation_bits(tmp_path):
    import statistics
    import subprocess
    import sys

    plan = tmp_path / "plan.txt"
    plan.write_text(
        "".join(
            f"t-s{seed} --preset debug --task text --steps 2 --seed {seed} --method bptt "
            "--set train.keep_best=true --set train.eval_every=1\n"
            for seed in (0, 1)
        )
    )
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "screen.py"),
        str(plan),
        "--name",
        "s",
        "--split",
        "test",
        "--plot",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "out"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = json.loads((tmp_path / "out" / "s.json").read_text())["runs"]
    bits = [r["test"]["documents_rnn_bits_per_token"] for r in runs]
    assert all(json.loads((tmp_path / "work" / r["name"] / "test.json").read_text()) == r["test"] for r in runs)
    assert runs[0]["test"]["checkpoint"].startswith("best") and len(set(bits)) == 2  # two seeds, two different models
    row = next(line for line in (tmp_path / "out" / "s.md").read_text().splitlines() if line.startswith("| t |"))
    assert f"{statistics.mean(bits):.3f} ± {statistics.stdev(bits):.3f}" in row and "| 2 |" in row
    assert len(runs[0]["bits_curve"]) >= 2 and (tmp_path / "out" / "s.png").stat().st_size > 0
