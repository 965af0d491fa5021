"""A step that never ends (a user's cell whose forward does not return) is bounded: by the budget plus a grace, and
after the first SIGTERM by the grace alone; the timer never outlives the work it guards."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from reliability_support import TRAIN, start_training, wait_for

from smtrnn.checkpoint import has_checkpoint
from smtrnn.step_timer import StepOverrun, StepTimer

HANGING_CELL = """
import pathlib, time
from torch import nn

class Hang(nn.Module):
    def __init__(self, tokens, width, embed):
        super().__init__()
        self.net = nn.Linear(tokens * width + embed, tokens * width)

    def forward(self, m, e):
        pathlib.Path(__file__).with_name("entered").touch()
        while True:
            time.sleep(0.01)
"""


def test_a_step_past_its_budget_is_stopped_after_the_grace():
    timer = StepTimer(grace=0.2)
    start = time.monotonic()
    with pytest.raises(StepOverrun, match="past the wall-clock budget") as raised:
        with timer.guard("step", budget_left=0.1):
            time.sleep(10)
    assert 0.25 < time.monotonic() - start < 5 and raised.value.stopped_by is None
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_a_stop_request_bounds_the_running_step_by_the_grace_alone():
    timer = StepTimer(grace=0.2)
    with pytest.raises(StepOverrun, match="SIGTERM: the current step did not end") as raised:
        with timer.guard("step"):  # no budget: unbounded until the stop request
            time.sleep(0.3)
            timer.stop_requested("SIGTERM")
            time.sleep(10)
    assert raised.value.stopped_by == "SIGTERM"


def test_work_that_ends_leaves_no_timer_and_the_grace_grows_with_the_slowest_step():
    timer = StepTimer(grace=0.05)
    with timer.guard("step", budget_left=100.0):
        time.sleep(0.1)
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    assert timer.allowance() >= 0.2  # twice the slowest step, not the 0.05 s grace
    before = signal.getsignal(signal.SIGALRM)
    with timer.guard("evaluation"):
        pass
    assert signal.getsignal(signal.SIGALRM) is before


def _hanging_run(tmp_path: Path, *flags) -> tuple:
    cell = tmp_path / "hang.py"
    cell.write_text(HANGING_CELL)
    out = tmp_path / "run"
    proc = start_training(*TRAIN, "--cell", f"{cell}:Hang", "--set", "train.stop_grace=1", *flags, "--out", out)
    return proc, tmp_path / "entered", out


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_the_cli_stops_a_never_ending_step_at_the_first_sigterm(tmp_path):
    proc, entered, out = _hanging_run(tmp_path, "--steps", 100)
    wait_for(entered.exists, proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 30
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("smtrnn: SIGTERM: the current step did not end within 1 s") and "without saving" in last
    assert "Traceback" not in err and not has_checkpoint(out)  # the teacher's warm-up steps were logged, not saved


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_the_cli_stops_a_never_ending_step_after_its_budget(tmp_path):
    proc, entered, out = _hanging_run(tmp_path, "--budget", 1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("smtrnn: error: the current step ran") and "past the wall-clock budget" in last
    assert "Traceback" not in err and entered.exists()
