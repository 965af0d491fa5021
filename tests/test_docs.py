"""The documents: the README stays short and its set-up runnable, every document is self-contained (no links that
do not resolve, nothing outside the repository), and the generated blocks in the documents are the benchmark
results' tables, never typed by hand."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from support import ROOT, load_benchmark

README_LIMIT = 15_000  # bytes: the README is the front page; tables and the research log live in docs/
OUTSIDE = ("shared/", "FINDINGS", "PAPER.md")  # what a document must never point at


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load_generator():
    return load_benchmark("readme_results")


def setup_commands(readme: str) -> list[str]:
    """The command lines of the first code block under `## Set up` (comments and blank lines left out)."""
    section = readme.split("\n## Set up\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```[a-z]*\n(.*?)```", section, flags=re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def broken_links(text: str, base: Path, root: Path = ROOT) -> list[str]:
    """Relative markdown links `](path)` in `text` that do not resolve to an existing file inside `root`
    (web links and pure #anchors are not checked; an anchor after a path is dropped)."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = (base / target.split("#", 1)[0]).resolve()
        if not path.exists() or not path.is_relative_to(root.resolve()):
            broken.append(target)
    return broken


def test_readme_tables_match_the_stored_benchmark_results():
    generator = load_generator()
    assert [path.resolve() for path in generator.documents()] == [path.resolve() for path in documents()]
    assert {"README.md", "GUIDE.md", "RESULTS.md", "LOG.md"} <= {path.name for path in documents()}
    for path in documents():
        text = path.read_text()
        assert generator.render(text, ROOT / "benchmarks" / "results") == text, f"{path.name} is stale"
    assert "<!-- results:core -->" in (ROOT / "docs" / "RESULTS.md").read_text()
    assert "<!-- results:long_range_recipe_headline -->" in (ROOT / "README.md").read_text()


def test_check_flags_a_stale_document(tmp_path):
    generator = load_generator()
    (tmp_path / "demo.md").write_text("| a |\n|---|\n| 1 |\n")
    fresh, old = tmp_path / "fresh.md", tmp_path / "old.md"
    fresh.write_text("<!-- results:demo -->\n| a |\n|---|\n| 1 |\n<!-- /results:demo -->\n")
    old.write_text("<!-- results:demo -->\nstale\n<!-- /results:demo -->\n")
    assert generator.stale([fresh, old], tmp_path) == [old]


def test_readme_is_short():
    size = len((ROOT / "README.md").read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move detail to docs/"


def test_readme_set_up_is_two_command_lines():
    commands = setup_commands((ROOT / "README.md").read_text())
    assert len(commands) == 2, commands
    assert "pip install" in commands[0] and "smtrnn demo" in commands[0]
    assert "python -m pytest -q" in commands[1]
    three = "# t\n\n## Set up\n\n```bash\npip install x\nsmtrnn demo\npython -m pytest -q\n```\n\n## Next\n"
    assert len(setup_commands(three)) == 3  # what a split install line would look like: the test above fails


def test_ci_installs_into_a_new_venv_exactly_as_the_readme_says():
    script = ROOT / ".ci" / "run"
    printed = subprocess.run(["bash", str(script), "--print-commands"], capture_output=True, text=True, check=True)
    install, tests = setup_commands((ROOT / "README.md").read_text())
    assert printed.stdout.splitlines() == [install.split("&& smtrnn demo")[0].strip(), tests.split("#")[0].strip()]
    assert "python3 -m venv" in script.read_text()  # never the interpreter an earlier install left packages in


def test_no_document_points_outside_the_repository():
    for path in documents():
        text = path.read_text()
        for needle in OUTSIDE:
            assert needle not in text, f"{path.name} mentions {needle}"


def test_every_relative_link_resolves():
    for path in documents():
        assert broken_links(path.read_text(), path.parent) == [], path.name
    sample = "[a](docs/GUIDE.md#x) [b](https://example.org) [c](#top) [d](docs/NOPE.md) [e](../../etc/hostname)"
    assert broken_links(sample, ROOT) == ["docs/NOPE.md", "../../etc/hostname"]


def test_generator_replaces_only_the_marked_block(tmp_path):
    (tmp_path / "demo.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    text = "intro\n<!-- results:demo -->\nstale\n<!-- /results:demo -->\noutro\n"
    out = load_generator().render(text, tmp_path)
    assert out == "intro\n<!-- results:demo -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- /results:demo -->\noutro\n"
