"""The README's result tables are the benchmark scripts' output, never typed by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "benchmarks" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_match_the_stored_benchmark_results():
    readme = (ROOT / "README.md").read_text()
    assert "<!-- results:core -->" in readme
    assert load_generator().render(readme, ROOT / "benchmarks" / "results") == readme


def test_generator_replaces_only_the_marked_block(tmp_path):
    (tmp_path / "demo.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    text = "intro\n<!-- results:demo -->\nstale\n<!-- /results:demo -->\noutro\n"
    out = load_generator().render(text, tmp_path)
    assert out == "intro\n<!-- results:demo -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- /results:demo -->\noutro\n"


def load_benchmark(name: str):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmark scripts import their shared `core` module
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_stored_tables_are_regenerated_from_their_json():
    """Each stored markdown table is exactly what its generator makes of the stored JSON (no hand edits)."""
    import json

    from smtrnn import compare

    results = ROOT / "benchmarks" / "results"
    generators = {"compare_retrieval": compare.markdown, "dmt": load_benchmark("dmt").markdown,
                  "dmt_gpu": load_benchmark("dmt").markdown, "speed_cpu": load_benchmark("speed").markdown,
                  "speed_gpu": load_benchmark("speed").markdown, "core": load_benchmark("core").markdown,
                  "data": load_benchmark("data").markdown, "labels": load_benchmark("labels").markdown,
                  "dataset_labels": load_benchmark("dataset_labels").markdown,
                  "long_range": load_benchmark("long_range").markdown,
                  "long_range_headline": load_benchmark("long_range").headline,
                  **{name: load_benchmark("levers").markdown
                     for name in ("levers", "levers_cells", "levers_horizon", "levers_horizon_480", "levers_wide_480",
                                  "levers_next_480", "levers_staged_480")}}
    for name, markdown in generators.items():
        source = name.removesuffix("_headline")  # a headline table comes from its study's JSON
        report = json.loads((results / f"{source}.json").read_text())
        assert markdown(report) == (results / f"{name}.md").read_text(), name


def test_every_levers_variant_can_be_chosen_on_the_command_line():
    """`--variants` is split at commas: a variant whose name holds one could never be run."""
    variants = load_benchmark("levers").VARIANTS
    assert variants and all("," not in name for name in variants)
    assert all(args[args.index("--method") + 1] in ("smt+dmt", "bptt") for args in variants.values())


def test_long_range_plan_pairs_each_smt_run_with_bptt_and_every_lever_validates():
    from smtrnn import compare
    from smtrnn.config import apply_overrides, validate
    from smtrnn.presets import make_preset

    bench = load_benchmark("long_range")
    specs = bench.plan(list(bench.GROUPS), 3, 1.0, levers=True, budgets=True)
    assert len({s.name for s in specs}) == len(specs)  # every run has its own directory
    confirm = [s for s in specs if s.group in bench.GROUPS and not s.variant
               and (s.method, s.preset) in (("smt+dmt", bench.ADOPTED), ("bptt", bench.PREVIOUS))]
    assert len(confirm) == 2 * 3 * len(bench.GROUPS)
    for smt, bptt in zip(confirm[::2], confirm[1::2]):  # side by side: same task, length, seed and budget
        assert (smt.method, bptt.method) == ("smt+dmt", "bptt")
        assert (smt.group, smt.seed, smt.budget) == (bptt.group, bptt.seed, bptt.budget)
    for spec in specs:
        cfg = apply_overrides(make_preset(spec.preset, spec.task), dict(spec.overrides) | compare.METHODS[spec.method])
        cfg.task.seq_len = spec.length
        validate(cfg)


def test_long_range_benchmark_runs_resumes_and_reports(tmp_path):
    """A tiny plan end to end: every run finishes in the run store, a second invocation trains nothing, and the
    report holds every run with diagnostics for SMT→DMT."""
    import json
    import subprocess
    import sys

    argv = [sys.executable, str(ROOT / "benchmarks" / "long_range.py"), "--groups", "retrieval-256", "--seeds", "1",
            "--scale", "0.003", "--no-levers", "--no-budgets", "--work", str(tmp_path / "work"), "--out",
            str(tmp_path / "out")]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "long_range.json").read_text())
    assert report["finished"] == len(report["planned"]) == 4
    smt = [r for r in report["runs"] if r["method"] == "smt+dmt"]
    assert smt and {"markov_gap", "growth", "probe"} <= set(smt[0]["diagnostics"])
    assert set(smt[0]["generalization"]) == {"512", "1024"}
    second = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and "start" not in second.stdout  # nothing left to train
    assert load_benchmark("long_range").markdown(report) == (tmp_path / "out" / "long_range.md").read_text()
