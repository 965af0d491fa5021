"""Resume: a run killed at any moment resumes bit-identically; SIGTERM finishes the step, saves and exits 0; a
second signal exits at once."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from reliability_support import TRAIN, latest, one_line, records, run_cli, start_training, wait_for
from support import debug_config

from smtrnn.checkpoint import LATEST_FILE, METRICS_FILE, WEIGHTS_FILE, checkpoint_dir, load_trainer_state, read_config
from smtrnn.trainer import TIMING_FIELDS, Trainer

# --- exact resume after SIGKILL -------------------------------------------------------------------------------


def training_records(run_dir: Path) -> list[str]:
    """The log without wall-clock fields, one JSON string per record."""
    return [json.dumps({k: v for k, v in r.items() if k not in TIMING_FIELDS}) for r in records(run_dir)]


def logged_steps(run_dir: Path) -> list[int]:
    """The steps of the log's training records, whole lines only (the last may be cut short)."""
    steps = []
    for line in (run_dir / METRICS_FILE).read_text().splitlines() if (run_dir / METRICS_FILE).exists() else []:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            pass
    return steps


def kill_ahead_of_its_checkpoint(proc: subprocess.Popen, run_dir: Path) -> None:
    """SIGKILL a training process at a moment when its log holds steps past its last checkpoint (found while the
    process is stopped, so the kill cannot race a save)."""
    while True:
        wait_for(lambda: len(logged_steps(run_dir)) >= 6, proc)
        proc.send_signal(signal.SIGSTOP)
        if (run_dir / LATEST_FILE).exists() and logged_steps(run_dir)[-1] > read_config(run_dir)[1]["step"]:
            proc.kill()
            proc.wait()
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_a_killed_run_resumes_bit_identically(tmp_path, capsys):
    """SIGKILL after a checkpoint, then --resume: the log (every step's losses), the weights and `eval --json` equal
    those of a run that never stopped (trained in-process meanwhile: one thread either way)."""
    args = [*TRAIN, "--steps", 40, "--set", "train.save_every=4", "--set", "train.log_every=1"]
    killed = tmp_path / "killed"
    kill_ahead_of_its_checkpoint(start_training(*args, "--out", killed), killed)
    assert read_config(killed)[1]["step"] < 40  # killed mid-run, not after it
    resumed = start_training(*args, "--out", killed, "--resume")
    assert run_cli(capsys, *args, "--out", tmp_path / "straight")[0] == 0
    assert resumed.wait(timeout=300) == 0, resumed.communicate()

    assert training_records(killed) == training_records(tmp_path / "straight")
    assert len(training_records(killed)) == 41  # 40 steps and the final evaluation
    assert (checkpoint_dir(killed) / WEIGHTS_FILE).read_bytes() == (
        checkpoint_dir(tmp_path / "straight") / WEIGHTS_FILE
    ).read_bytes()
    outputs = [
        run_cli(capsys, "eval", run, "--json", "--batches", 2, "--device", "cpu")[1]
        for run in (killed, tmp_path / "straight")
    ]
    assert outputs[0] == outputs[1] and "rnn_accuracy" in json.loads(outputs[0])


def test_resume_drops_log_records_written_after_the_checkpoint(smt_run_copy):
    with open(smt_run_copy / METRICS_FILE, "a") as log:
        log.write(json.dumps({"step": 7, "loss": 1.0}) + "\n" + '{"step": 8, "lo')  # then killed mid-line
    Trainer(debug_config("retrieval", "smt", steps=8), smt_run_copy, resume=True, show_progress=False)
    assert max(r["step"] for r in records(smt_run_copy)) == 6


# --- signals --------------------------------------------------------------------------------------------------


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_sigterm_finishes_the_step_saves_and_exits_0(tmp_path):
    out = tmp_path / "run"
    proc = start_training(
        *TRAIN, "--steps", 100_000, "--set", "train.save_every=0", "--set", "train.log_every=1", "--out", out
    )
    wait_for(lambda: (out / METRICS_FILE).exists() and len((out / METRICS_FILE).read_text().splitlines()) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    step = read_config(out)[1]["step"]
    assert one_line(stderr) == (
        f"smtrnn: SIGTERM: stopped after step {step} of 100000 and saved {out}; continue with --resume"
    )
    assert stdout == "" and step >= 3
    assert load_trainer_state(out)["step"] == step == records(out)[-1]["step"]


def signal_after_step(monkeypatch, step: int, count: int) -> None:
    original = Trainer.train_step

    def step_then_signal(self):
        metrics = original(self)
        if self.step == step:
            for _ in range(count):  # to the main thread, whose handler runs before pthread_kill returns
                signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        return metrics

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)


def test_a_signal_in_process_stops_after_the_step_and_restores_the_handlers(tmp_path, capsys, monkeypatch):
    signal_after_step(monkeypatch, 3, count=1)
    before = signal.getsignal(signal.SIGTERM)
    code, stdout, err = run_cli(capsys, *TRAIN, "--steps", 20, "--out", tmp_path / "run")
    assert code == 0 and stdout == "" and "SIGTERM: stopped after step 3 of 20" in one_line(err)
    assert latest(tmp_path / "run") == "step-00000003"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_signal_exits_at_once_without_saving(tmp_path, capsys, monkeypatch):
    signal_after_step(monkeypatch, 3, count=2)
    code, stdout, err = run_cli(capsys, *TRAIN, "--steps", 20, "--set", "train.save_every=2", "--out", tmp_path / "run")
    assert code == 128 + signal.SIGTERM
    assert "SIGTERM again: stopped at once" in one_line(err)
    assert latest(tmp_path / "run") == "step-00000002"
