"""Helpers of the reliability tests (test_checkpoint_safety, test_resume, test_nonfinite, test_bad_input): the CLI
in process or as a subprocess, and reading a run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtrnn.checkpoint import LATEST_FILE, METRICS_FILE
from smtrnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--preset", "debug", "--task", "retrieval", "--quiet", "--device", "cpu"]
# Every step computes all four SMT terms (no teacher warm-up), so a poisoned term shows at the step it is poisoned.
ALL_TERMS = ["--set", "smt.teacher_alone=0", "--set", "smt.schedule=joint-detached"]
TRAIN_RUN = [*TRAIN, "--steps", 8, "--set", "train.log_every=1"]  # the config of the `smt_run` fixture


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def latest(run_dir: Path) -> str:
    return (run_dir / LATEST_FILE).read_text().strip()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def cli_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")


def start_training(*argv) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "smtrnn", *map(str, argv)],
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"training ended before the condition held: {proc.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path
