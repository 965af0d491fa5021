"""The stored benchmark results: every markdown table in benchmarks/results/ is what the script its JSON names makes
of that JSON (no hand edits) or the frozen table of a retired report, which says which commit last had its script;
retired studies' plans rebuild the runs they hold, and the study runner (screen) trains, resumes and reports as their
results rely on."""

from __future__ import annotations

import functools
import importlib
import json
import re
import sys
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


def regenerated_tables(results: Path) -> dict[str, str | None]:
    """Each markdown table of `results` that a report there names, by file name, as made afresh from the report:
    NAME.md by the function `table` of the script in NAME.json's field "benchmark" (and NAME_headline.md by its
    `headline_table`, where it has one). A retired report (field "benchmark": {"retired": "<commit> SCRIPT"}) is
    not rendered: its NAME.md, and NAME_headline.md where there is one, are the frozen tables (None here). A report
    with a markdown twin must name a script in the tree or be retired; a retired one must keep its NAME.md."""
    tables = {}
    for path in sorted(results.glob("*.json")):
        report = json.loads(path.read_text())
        field = report.get("benchmark")
        if isinstance(field, dict) and "retired" in field:
            assert path.with_suffix(".md").exists(), f"{path.name} is retired, but its table {path.stem}.md is gone"
            frozen = (path.with_suffix(".md"), path.with_name(f"{path.stem}_headline.md"))
            tables |= {table.name: None for table in frozen if table.exists()}
            continue
        if not path.with_suffix(".md").exists():
            continue
        assert isinstance(field, dict) and field.get("script") and field.get("table"), (
            f"{path.name} does not name the script that made it: give it a top-level field "
            '"benchmark": {"script": "benchmarks/NAME.py", "table": "markdown"} (harness.write_report writes it)'
        )
        assert (ROOT / field["script"]).is_file(), (
            f"{path.name} names {field['script']}, which is not in the tree: retire the report, "
            '"benchmark": {"retired": "<the last commit with the script> benchmarks/NAME.py"}'
        )
        module = load_script(field["script"])
        tables[f"{path.stem}.md"] = getattr(module, field["table"])(report)
        if "headline_table" in field:
            tables[f"{path.stem}_headline.md"] = getattr(module, field["headline_table"])(report)
    return tables


def screen_command(plan: Path, tmp_path: Path, *options: str) -> list[str]:
    """`screen.py PLAN --name s` with its runs and report under tmp_path."""
    screen = str(ROOT / "benchmarks" / "screen.py")
    work, out = str(tmp_path / "work"), str(tmp_path / "out")
    return [sys.executable, screen, str(plan), "--name", "s", *options, "--work", work, "--out", out]


def test_stored_tables_are_regenerated_from_their_json():
    """Each stored markdown table is exactly what its generator makes of the stored JSON (no hand edits) or the
    frozen table of a retired report, and no stored table is left out."""
    results = ROOT / "benchmarks" / "results"
    tables = regenerated_tables(results)
    stored = sorted(path.name for path in results.glob("*.md"))
    assert sorted(tables) == stored, f"tables no report names: {sorted(set(stored) - set(tables))}"
    assert any(table is None for table in tables.values()) and any(tables.values())
    for name, table in tables.items():
        assert table is None or table == (results / name).read_text(), name


def test_the_harness_writes_the_field_the_tables_are_regenerated_from(tmp_path):
    labels = load_script("benchmarks/labels.py")
    stored = json.loads((ROOT / "benchmarks" / "results" / "labels.json").read_text())
    report = {key: value for key, value in stored.items() if key != "benchmark"}
    importlib.import_module("harness").write_report(report, tmp_path, "t", labels.markdown)
    written = json.loads((tmp_path / "t.json").read_text())
    assert written == {"benchmark": {"script": "benchmarks/labels.py", "table": "markdown"}} | report
    lines = (tmp_path / "t.json").read_text().splitlines()
    for row in report["cells"]:  # one line per record of a list of them (a diff shows what changed, run by run)
        assert f"    {json.dumps(row)}," in lines or f"    {json.dumps(row)}" in lines
    assert regenerated_tables(tmp_path) == {"t.md": (tmp_path / "t.md").read_text()}


def test_a_stored_report_that_does_not_name_its_script_is_refused(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"benchmark": "screen", "runs": []}))
    (tmp_path / "old.md").write_text("| a |\n")
    with pytest.raises(AssertionError, match="old.json does not name the script that made it"):
        regenerated_tables(tmp_path)


def test_a_report_naming_a_script_gone_from_the_tree_is_refused(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"benchmark": {"script": "benchmarks/gone.py", "table": "markdown"}}))
    (tmp_path / "old.md").write_text("| a |\n")
    with pytest.raises(AssertionError, match="old.json names benchmarks/gone.py, which is not in the tree"):
        regenerated_tables(tmp_path)


def test_a_retired_report_keeps_its_frozen_tables_and_is_refused_without_them(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"benchmark": {"retired": "60afdaa benchmarks/step_syncs.py"}}))
    with pytest.raises(AssertionError, match="old.json is retired, but its table old.md is gone"):
        regenerated_tables(tmp_path)
    (tmp_path / "old.md").write_text("| a |\n")
    (tmp_path / "old_headline.md").write_text("| b |\n")
    assert regenerated_tables(tmp_path) == {"old.md": None, "old_headline.md": None}


def test_a_retired_report_names_the_commit_that_last_had_its_script():
    """A retired report says where the code that made it lives and nothing that would render it: its field
    "benchmark" is {"retired": "<commit> benchmarks/NAME.py"} (and perhaps a "note"), a script no longer in the
    tree."""
    retired = []
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        field = json.loads(path.read_text()).get("benchmark")
        if isinstance(field, dict) and "retired" in field:
            retired.append(field["retired"])
            assert set(field) <= {"retired", "note"}, path.name
            assert re.fullmatch(r"[0-9a-f]{7,40} benchmarks/\w+\.py", retired[-1]), path.name
            assert not (ROOT / retired[-1].split()[1]).exists(), path.name
    assert retired


def test_the_long_range_plans_hold_every_stored_run_and_each_line_builds_its_config():
    """The retired long-range study as plans: every run of long_range.json has a plan line of its name whose config
    (what `smtrnn train ... --print-config` prints) has the run's length, seed, budget, cell, method and overrides;
    each SMT→DMT line of the confirmation sits beside the BPTT line of the same task, length, seed and budget."""
    from smtrnn.cli import build_config, make_parser
    from smtrnn.config import validate
    from smtrnn.tools.compare import STUDY_METHODS
    from smtrnn.tools.study import read_plan

    confirm = read_plan(ROOT / "benchmarks" / "plans" / "long_range.txt")
    runs = dict(confirm + read_plan(ROOT / "benchmarks" / "plans" / "long_range_levers.txt"))
    stored = {
        row["name"]: row
        for row in json.loads((ROOT / "benchmarks" / "results" / "long_range.json").read_text())["runs"]
    }
    assert set(stored) <= set(runs), sorted(set(stored) - set(runs))
    parser, configs = make_parser(), {}  # one parser: building it reads every config field's docstring
    for name, args in runs.items():
        built = build_config(parser.parse_args(["train", *args]))
        validate(built)
        configs[name] = built.to_dict()
    for name, row in stored.items():
        cfg = configs[name]
        assert (cfg["task"]["seq_len"], cfg["train"]["seed"]) == (row["length"], row["seed"]), name
        assert (cfg["train"]["max_seconds"], cfg["rnn"]["cell"]) == (row["budget"], row["cell"]), name
        for field, value in (row["overrides"] | STUDY_METHODS[row["method"]]).items():
            section, key = field.split(".")
            assert cfg[section][key] == value, (name, field)

    def setting(cfg):  # what an SMT→DMT run and the BPTT run beside it share: task, length, seed, budget
        return cfg["task"], cfg["train"]["seed"], cfg["train"]["max_seconds"]

    order = [configs[name] for name, _ in confirm]
    for smt, bptt in zip(order, order[1:]):
        if smt["train"]["method"] == "smt+dmt":
            assert bptt["train"]["method"] == "bptt" and setting(bptt) == setting(smt)


@pytest.mark.slow
def test_a_screen_trains_its_plan_reports_every_run_and_skips_finished_ones(tmp_path):
    import subprocess

    plan = tmp_path / "plan.txt"
    plan.write_text(
        "# two tiny runs, on a base line\n= --preset debug --steps 2\na --method smt+dmt\n"
        "b --method bptt --cell mlp-linear  # the linear-skip cell\n"
    )
    command = screen_command(plan, tmp_path)
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
    # a base line changed after its runs finished: refused in one line, the run and the report left as they were
    plan.write_text(plan.read_text().replace("--steps 2", "--steps 3"))
    kept = (tmp_path / "out" / "s.json").read_bytes()
    changed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert changed.returncode == 1 and "work/b finished with other arguments than its plan line" in changed.stderr
    assert changed.stderr.count("\n") == 1 and (tmp_path / "out" / "s.json").read_bytes() == kept


@pytest.mark.slow
def test_a_screen_scores_its_runs_at_other_lengths_once_and_tables_them(tmp_path):
    import subprocess

    plan = tmp_path / "plan.txt"
    plan.write_text(
        "a-s0 --preset debug --steps 2 --method smt+dmt --seed 0\n"
        "a-s1 --preset debug --steps 2 --method smt+dmt --seed 1\n"
        "g --preset debug --steps 2 --method bptt --cell gru-fused\n"
    )
    command = screen_command(plan, tmp_path, "--eval-lengths", "20,40", "--length-batches", "1")
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "out" / "s.json").read_text())
    for row in report["runs"]:  # each length is the run's RNN alone, as `smtrnn eval --seq-len` scores it
        assert set(row["lengths"]) == {"20", "40"} and 0.0 <= row["lengths"]["40"]["rnn_accuracy"] <= 1.0
        assert "teacher_accuracy" not in row["lengths"]["40"]
        kept = json.loads((tmp_path / "work" / row["name"] / "lengths.json").read_text())
        assert kept == row["lengths"]
    headline = (tmp_path / "out" / "s_headline.md").read_text()
    assert (
        "| T = 20 | T = 40 |" in headline and "\n| a | smt+dmt | mlp | 2 |" in headline and "\n| g | bptt |" in headline
    )
    assert report["benchmark"]["headline_table"] == "length_headline"
    more = screen_command(plan, tmp_path, "--eval-lengths", "20,40,60", "--length-batches", "1")
    again = subprocess.run(more, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "score a-s0 at 60" in again.stdout and "score a-s0 at 20" not in again.stdout


@pytest.mark.slow
def test_a_screen_with_seeds_reports_their_test_split_mean_and_plots_validation_bits(tmp_path):
    import statistics
    import subprocess

    plan = tmp_path / "plan.txt"
    plan.write_text(
        "".join(
            f"t-s{seed} --preset debug --task text --steps 2 --seed {seed} --method bptt "
            "--set train.keep_best=true --set train.eval_every=1\n"
            for seed in (0, 1)
        )
    )
    command = screen_command(plan, tmp_path, "--split", "test", "--plot")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = json.loads((tmp_path / "out" / "s.json").read_text())["runs"]
    bits = [r["test"]["documents_rnn_bits_per_token"] for r in runs]
    assert all(json.loads((tmp_path / "work" / r["name"] / "test.json").read_text()) == r["test"] for r in runs)
    assert runs[0]["test"]["checkpoint"].startswith("best") and len(set(bits)) == 2  # two seeds, two different models
    row = next(line for line in (tmp_path / "out" / "s.md").read_text().splitlines() if line.startswith("| t |"))
    assert f"{statistics.mean(bits):.3f} ± {statistics.stdev(bits):.3f}" in row and "| 2 |" in row
    assert len(runs[0]["bits_curve"]) >= 2 and (tmp_path / "out" / "s.png").stat().st_size > 0
    by_position = [r["test"]["documents_rnn_bits_by_position"] for r in runs]  # the RNN alone over test documents
    assert list(by_position[0])[:3] == ["0", "1", "2-3"] and by_position[0] != by_position[1]
    position_row = [line for line in (tmp_path / "out" / "s.md").read_text().splitlines() if line.startswith("| t |")]
    assert f"| t | {statistics.mean(b['0'] for b in by_position):.3f} |" in position_row[1]
    assert (tmp_path / "out" / "s_positions.png").stat().st_size > 0


def test_the_seed_headline_gives_each_setting_its_seeds_mean_and_each_seed():
    from smtrnn.tools.study_report import seed_headline

    def run(name, accuracy, answer=None):
        row = {"name": name, "method": "smt+dmt", "cell": "mlp", "rnn_accuracy": accuracy, "teacher_accuracy": 1.0}
        return row | {"steps": 10, "train_seconds": 5.0} | ({"rnn_answer_accuracy": answer} if answer else {})

    runs = [run("a-s0", 0.5), run("a-s1", 0.7), run("key-s0", 0.2, answer=0.9), run("alone", 0.1)]
    runs[2]["args"] = ["--task", "passkey", "--preset", "small", "--seed", "0"]
    lines = seed_headline({"runs": runs}).splitlines()
    assert lines[0].startswith("| setting | method | cell | seeds | RNN alone | per seed |") and len(lines) == 4
    assert lines[2] == "| a | smt+dmt (recipe) | mlp | 2 | 0.600 ± 0.141 | 0.500 / 0.700 | 1.000 ± 0.000 |"
    assert "| key | smt+dmt (small) | mlp | 1 | 0.900 ± 0.000 | 0.900 |" in lines[3]  # the answer's, and its preset


@pytest.mark.slow
def test_a_screen_scores_a_passkey_key_by_where_it_was_stated(tmp_path):
    import subprocess

    plan = tmp_path / "plan.txt"
    plan.write_text(
        "k-s0 --preset debug --task passkey --steps 2 --method smt+dmt --seed 0\n"
        "r --preset debug --steps 2 --method bptt\n"
    )
    options = ("--eval-lengths", "300", "--length-batches", "1")
    first = subprocess.run(
        screen_command(plan, tmp_path, *options, "--key-at", "0,100"), capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    runs = {r["name"]: r for r in json.loads((tmp_path / "out" / "s.json").read_text())["runs"]}
    assert set(runs["k-s0"]["key_at"]) == {"0", "100"} and "key_at" not in runs["r"]  # retrieval states no key
    score = runs["k-s0"]["key_at"]["100"]["300"]["rnn_answer_accuracy"]
    assert 0.0 <= score <= 1.0 and json.loads((tmp_path / "work" / "k-s0" / "key_at.json").read_text())["100"]
    table = (tmp_path / "out" / "s.md").read_text().split("`eval --key-at`")[1].splitlines()
    assert "| statement at | T = 300 |" in table[2]
    placed = [re.match(r"\| k \| smt\+dmt \| mlp \| 1 \| (\d+) \| [01]\.\d{3} ± ", line) for line in table[4:6]]
    assert [match[1] for match in placed] == ["0", "100"]
    assert (tmp_path / "out" / "s_headline.md").read_text().splitlines()[4:6] == table[4:6]  # that table alone
    more = subprocess.run(
        screen_command(plan, tmp_path, *options, "--key-at", "0,100,200"), capture_output=True, text=True
    )
    assert more.returncode == 0 and "score k-s0 with the key stated at 200" in more.stdout
    assert "stated at 0" not in more.stdout and "score k-s0 at" not in more.stdout  # what was kept is not scored again


def test_the_length_tables_show_the_lengths_the_study_asked_for():
    from smtrnn.tools.study_report import key_at_table, length_columns

    runs = [{"lengths": {"20": {}, "40": {}, "60": {}}}, {"lengths": {"40": {}}}]
    assert length_columns({"runs": runs}) == ["20", "40", "60"]  # a report that does not say: every length scored
    assert length_columns({"runs": runs, "eval_lengths": [40, 60, 80]}) == ["40", "60"]
    assert length_columns({"runs": runs, "eval_lengths": None}) == ["20", "40", "60"]
    keyed = [
        {"name": "k-s0", "method": "smt+dmt", "cell": "mlp", "key_at": {"64": {"20": {"rnn_answer_accuracy": 0.5}}}}
    ]
    keyed[0]["key_at"]["64"]["60"] = {"rnn_answer_accuracy": 0.25}
    header = key_at_table({"runs": keyed, "eval_lengths": [60]})[3]
    assert "T = 60" in header and "T = 20" not in header  # the key asked at other lengths too: only the study's


def test_the_lure_table_gives_the_keys_rows_with_and_without_a_lure_by_statement_and_length():
    from smtrnn.tools.study_report import key_at_headline, lure_table

    def scores(share, lured, clean):
        return {"lured_rows": share, "rnn_answer_exact_lured": lured, "rnn_answer_exact_unlured": clean}

    runs = [
        {
            "name": f"k-s{seed}",
            "method": "smt+dmt",
            "cell": "mlp",
            "lengths": {"60": scores(0.5, 0.2 + seed / 10, 1.0), "80": {"rnn_answer_accuracy": 0.5}},
            "key_at": {"64": {"100": scores(0.25, 0.5, 1.0), "20": None}},
        }
        for seed in (0, 1)
    ]
    lines = lure_table({"runs": runs, "eval_lengths": [60, 100]})
    assert lines[-2] == "| k | smt+dmt | 2 | random | 60 | 0.500 ± 0.000 | 0.250 ± 0.071 | 1.000 ± 0.000 |"
    assert lines[-1] == "| k | smt+dmt | 2 | 64 | 100 | 0.250 ± 0.000 | 0.500 ± 0.000 | 1.000 ± 0.000 |"
    assert lure_table({"runs": [{"name": "r-s0", "method": "bptt", "cell": "mlp", "lengths": {"60": {}}}]}) == []
    headline = key_at_headline({"runs": runs, "eval_lengths": [60, 100]}).splitlines()
    assert headline[0].startswith("The key with its statement placed") and headline[-1] == lines[-1]
