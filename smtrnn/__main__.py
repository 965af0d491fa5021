"""The `smtrnn` command: `python -m smtrnn` and the console script both start here."""

import sys


def run() -> int:
    """Import the command line and run it; Ctrl-C while torch is still importing is one line, exit 130."""
    try:
        from smtrnn.cli import main
    except KeyboardInterrupt:
        print("smtrnn: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
