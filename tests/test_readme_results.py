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
                  **{name: load_benchmark("levers").markdown
                     for name in ("levers", "levers_cells", "levers_horizon", "levers_horizon_480", "levers_wide_480",
                                  "levers_next_480", "levers_staged_480")}}
    for name, markdown in generators.items():
        report = json.loads((results / f"{name}.json").read_text())
        assert markdown(report) == (results / f"{name}.md").read_text(), name


def test_every_levers_variant_can_be_chosen_on_the_command_line():
    """`--variants` is split at commas: a variant whose name holds one could never be run."""
    variants = load_benchmark("levers").VARIANTS
    assert variants and all("," not in name for name in variants)
    assert all(args[args.index("--method") + 1] in ("smt+dmt", "bptt") for args in variants.values())
