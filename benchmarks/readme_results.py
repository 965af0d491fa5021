"""Copy the benchmark tables (benchmarks/results/NAME.md, written by the benchmark scripts) into README.md between
the markers <!-- results:NAME --> and <!-- /results:NAME -->, so README numbers are never typed by hand.

    python benchmarks/readme_results.py          # rewrite README.md in place
    python benchmarks/readme_results.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def render(readme: str, results_dir: Path) -> str:
    def fill(match: re.Match) -> str:
        name = match.group(1)
        table = (results_dir / f"{name}.md").read_text().strip()
        return f"<!-- results:{name} -->\n{table}\n<!-- /results:{name} -->"

    return re.sub(r"<!-- results:(\w+) -->.*?<!-- /results:\1 -->", fill, readme, flags=re.S)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    path = ROOT / "README.md"
    current = path.read_text()
    updated = render(current, ROOT / "benchmarks" / "results")
    if args.check:
        return int(updated != current)
    path.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
