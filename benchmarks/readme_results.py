"""Copy the benchmark tables (benchmarks/results/NAME.md, written by the benchmark scripts) into every markdown
document that holds them — README.md and docs/*.md — between the markers <!-- results:NAME --> and
<!-- /results:NAME -->, so no number in the documents is ever typed by hand.

    python benchmarks/readme_results.py          # rewrite every stale document in place
    python benchmarks/readme_results.py --check  # exit 1 if any document is out of date (each one named)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from harness import ROOT

RESULTS = ROOT / "benchmarks" / "results"


def documents(root: Path = ROOT) -> list[Path]:
    """The markdown documents whose generated blocks this script fills: README.md, then docs/*.md by name."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render(readme: str, results_dir: Path) -> str:
    """`readme` with every marked block replaced by its stored table; text outside the blocks is unchanged."""

    def fill(match: re.Match) -> str:
        name = match.group(1)
        table = (results_dir / f"{name}.md").read_text().strip()
        return f"<!-- results:{name} -->\n{table}\n<!-- /results:{name} -->"

    return re.sub(r"<!-- results:(\w+) -->.*?<!-- /results:\1 -->", fill, readme, flags=re.S)


def stale(paths: list[Path], results_dir: Path = RESULTS) -> list[Path]:
    """The documents among `paths` that differ from their render."""
    return [path for path in paths if render(path.read_text(), results_dir) != path.read_text()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any document is stale")
    args = parser.parse_args()
    out_of_date = stale(documents())
    if args.check:
        for path in out_of_date:
            print(f"out of date: {path.relative_to(ROOT)} (run python benchmarks/readme_results.py)", file=sys.stderr)
        return int(bool(out_of_date))
    for path in out_of_date:
        path.write_text(render(path.read_text(), RESULTS))
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
