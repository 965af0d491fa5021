"""Reliability: a run killed at any moment resumes bit-identically; a save cut short at any point leaves a loadable
checkpoint; a non-finite step stops the run naming the step and the term (or is skipped, when allowed); SIGTERM
saves and exits 0; a pickle payload in a checkpoint never runs; bad input of every kind is one line and exit 2;
and the task generators and data loaders keep their contracts on arbitrary input (hypothesis)."""

from __future__ import annotations

import copy
import errno
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import smtrnn.checkpoint as checkpoint
import smtrnn.smt
from smtrnn.checkpoint import (CHECKPOINTS_DIR, CONFIG_FILE, LATEST_FILE, METRICS_FILE, STATE_FILE, WEIGHTS_FILE,
                               load_model, load_trainer_state, read_config, save_checkpoint)
from smtrnn.cli import main
from smtrnn.errors import CheckpointError, DataError, TrainingError
from smtrnn.images import Images, quantize, split_images
from smtrnn.tasks import NO_TARGET, all_tasks, make_task
from smtrnn.text import Corpus, load_text, split_corpus
from smtrnn.trainer import TIMING_FIELDS, Trainer
from support import debug_config, state_dicts_equal

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--preset", "debug", "--task", "retrieval", "--quiet", "--device", "cpu"]
# Every step computes all four SMT terms (no teacher warm-up), so a poisoned term shows at the step it is poisoned.
ALL_TERMS = ["--set", "smt.warmup=0", "--set", "smt.schedule=joint-detached"]


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
    return subprocess.Popen([sys.executable, "-m", "smtrnn", *map(str, argv)], cwd=ROOT, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"training ended before the condition held: {proc.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# --- checkpoint layout ----------------------------------------------------------------------------------------

def test_keeps_the_last_n_checkpoints_and_latest_names_the_newest(tmp_path):
    cfg = debug_config("retrieval", "bptt", steps=7, train__save_every=2, train__keep_checkpoints=2)
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    trainer.run()
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / CHECKPOINTS_DIR).iterdir()) == ["step-00000006", "step-00000007"]
    assert latest(run) == "step-00000007"
    assert json.loads((run / CONFIG_FILE).read_text())["step"] == 7  # the top level shows the newest too
    assert folder_bytes(run / CHECKPOINTS_DIR / "step-00000006") != folder_bytes(run / CHECKPOINTS_DIR / latest(run))
    assert state_dicts_equal(load_model(run)[1].state_dict(), trainer.model.state_dict())


def test_a_run_directory_in_the_older_layout_loads_and_resumes(smt_run_copy, smt_run):
    """Top-level files only, as written before checkpoints/ and `latest` existed."""
    shutil.rmtree(smt_run_copy / CHECKPOINTS_DIR)
    (smt_run_copy / LATEST_FILE).unlink()
    assert state_dicts_equal(load_model(smt_run_copy)[1].state_dict(), smt_run[1].model.state_dict())
    trainer = Trainer(debug_config("retrieval", "smt", steps=8), smt_run_copy, resume=True, show_progress=False)
    assert trainer.step == 6
    trainer.run()
    assert latest(smt_run_copy) == "step-00000008"


class _Crash(Exception):
    pass


class _CrashingOS:
    """`os` for smtrnn.checkpoint, raising _Crash at the `crash_at`-th rename, hard link or fsync (None: never)."""

    def __init__(self, crash_at: int | None):
        self.crash_at, self.events = crash_at, 0

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in ("replace", "link", "fsync"):
            return real

        def event(*args, **kwargs):
            self.events += 1
            if self.events == self.crash_at:
                raise _Crash(f"{name} #{self.events}")
            return real(*args, **kwargs)

        return event


def test_a_save_cut_short_at_any_point_leaves_a_whole_checkpoint(smt_run, tmp_path, monkeypatch):
    """The old checkpoint (step 6) until the `latest` pointer is replaced, the new one (step 7) after: never a mix of
    the two, whichever rename, link or fsync the crash interrupts; the next save then completes and tidies up."""
    old_dir, old = smt_run
    trainer = Trainer(debug_config("retrieval", "smt", steps=8), Path(shutil.copytree(old_dir, tmp_path / "base")),
                      resume=True, show_progress=False)
    trainer.train_step()
    new_weights = copy.deepcopy(trainer.model.state_dict())
    state = {"optimizer": trainer.optimizer.state_dict(), "step": trainer.step, "elapsed": 1.0, "skipped": 0,
             "torch_rng": torch.get_rng_state(), "data_rng": trainer.data_generator.get_state()}

    counter = _CrashingOS(None)
    monkeypatch.setattr(checkpoint, "os", counter)
    save_checkpoint(Path(shutil.copytree(old_dir, tmp_path / "count")), trainer.cfg, trainer.model, state)
    assert counter.events >= 10

    seen = []
    for crash_at in range(1, counter.events + 1):
        run = Path(shutil.copytree(old_dir, tmp_path / f"crash{crash_at}"))
        monkeypatch.setattr(checkpoint, "os", _CrashingOS(crash_at))
        with pytest.raises(_Crash):
            save_checkpoint(run, trainer.cfg, trainer.model, state)
        monkeypatch.setattr(checkpoint, "os", os)
        _, model = load_model(run)
        step = read_config(run)[1]["step"]
        assert load_trainer_state(run)["step"] == step
        want = {6: old.model.state_dict(), 7: new_weights}[step]
        assert state_dicts_equal(model.state_dict(), want), crash_at
        seen.append(step)
        save_checkpoint(run, trainer.cfg, trainer.model, state)
        assert read_config(run)[1]["step"] == 7 and state_dicts_equal(load_model(run)[1].state_dict(), new_weights)
        assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert seen == sorted(seen) and seen[0] == 6 and seen[-1] == 7  # old until the commit, new from then on


@pytest.mark.parametrize("errno_, words", [(errno.ENOSPC, "No space left on device"),
                                            (errno.EROFS, "Read-only file system"),
                                            (errno.EACCES, "Permission denied")])
def test_a_failed_write_on_the_save_path_keeps_the_previous_checkpoint(errno_, words, smt_run_copy, smt_run,
                                                                       monkeypatch):
    """Whichever of the three files the write fails on, the run keeps its step-6 checkpoint, byte for byte."""
    real = checkpoint.write_bytes
    before = {p: p.read_bytes() for p in sorted(smt_run_copy.rglob("*")) if p.is_file() and p.name != METRICS_FILE}
    for failing in range(3):  # model.safetensors, trainer_state.pt, config.json
        calls = []

        def fails(path, data):
            calls.append(path)
            if len(calls) - 1 == failing:
                Path(path).write_bytes(data[: len(data) // 2])
                raise OSError(errno_, os.strerror(errno_), str(path))
            real(path, data)

        monkeypatch.setattr(checkpoint, "write_bytes", fails)
        trainer = Trainer(debug_config("retrieval", "smt", steps=8), smt_run_copy, resume=True, show_progress=False)
        trainer.train_step()
        with pytest.raises(TrainingError, match=f"cannot save the checkpoint of step 7 .*: {words}; the previous "
                                                "checkpoint is kept"):
            trainer.save()
        assert state_dicts_equal(load_model(smt_run_copy)[1].state_dict(), smt_run[1].model.state_dict())
        assert load_trainer_state(smt_run_copy)["step"] == 6
        assert {p: p.read_bytes() for p in before} == before  # nothing of the old checkpoint changed


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_a_file_size_limit_on_the_save_path_is_one_line_and_keeps_the_run(smt_run_copy):
    """A real resource limit, not a patch: the process may write no file over 20 kB (RLIMIT_FSIZE, the limit a
    full disk shares its error path with), so the first checkpoint after resuming cannot be written."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit is then EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    before = {p: p.read_bytes() for p in sorted(smt_run_copy.rglob("*")) if p.is_file() and p.name != METRICS_FILE}
    argv = [sys.executable, "-m", "smtrnn", *map(str, TRAIN_RUN), "--steps", "9", "--resume", "--out", smt_run_copy]
    proc = subprocess.run(argv, capture_output=True, text=True, preexec_fn=limit, timeout=300,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_line(proc.stderr)
    assert line.startswith("smtrnn: error: ") and "File too large" in line and "previous checkpoint is kept" in line
    assert {p: p.read_bytes() for p in before} == before
    assert read_config(smt_run_copy)[1]["step"] == 6


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
    assert (killed / WEIGHTS_FILE).read_bytes() == (tmp_path / "straight" / WEIGHTS_FILE).read_bytes()
    outputs = [run_cli(capsys, "eval", run, "--json", "--batches", 2, "--device", "cpu")[1]
               for run in (killed, tmp_path / "straight")]
    assert outputs[0] == outputs[1] and "rnn_accuracy" in json.loads(outputs[0])


def test_resume_drops_log_records_written_after_the_checkpoint(smt_run_copy):
    with open(smt_run_copy / METRICS_FILE, "a") as log:
        log.write(json.dumps({"step": 7, "loss": 1.0}) + "\n" + '{"step": 8, "lo')  # then killed mid-line
    Trainer(debug_config("retrieval", "smt", steps=8), smt_run_copy, resume=True, show_progress=False)
    assert max(r["step"] for r in records(smt_run_copy)) == 6


# --- non-finite steps -----------------------------------------------------------------------------------------

def poison(real, *calls: int):
    """`real`, except that its result is multiplied by NaN on the given calls (1-based)."""
    counter = itertools.count(1)

    def poisoned(*args, **kwargs):
        value = real(*args, **kwargs)
        return value * float("nan") if next(counter) in calls else value

    return poisoned


class _PoisonedF:
    """torch.nn.functional with a poisoned mse_loss (the SMT dynamics term)."""

    def __init__(self, *calls: int):
        self.mse_loss = poison(torch.nn.functional.mse_loss, *calls)

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)


POISONS = {
    "uniformity": lambda at: ("uniformity", poison(smtrnn.smt.uniformity, at)),
    "readout": lambda at: ("masked_cross_entropy", poison(smtrnn.smt.masked_cross_entropy, at)),
    "dynamics": lambda at: ("F", _PoisonedF(at)),
}


@pytest.mark.parametrize("term", POISONS)
def test_a_non_finite_term_stops_the_run_naming_step_and_term(term, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(smtrnn.smt, *POISONS[term](5))
    saved = {}
    original_save = Trainer.save

    def save_and_remember(self):
        original_save(self)
        saved[self.step] = folder_bytes(self.out_dir / CHECKPOINTS_DIR / latest(self.out_dir))

    monkeypatch.setattr(Trainer, "save", save_and_remember)
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *TRAIN, *ALL_TERMS, "--steps", 8, "--set", "train.save_every=2", "--out", out)
    assert code == 1 and stdout == ""
    line = one_line(err)
    assert line.startswith("smtrnn: error: non-finite loss at step 5: ") and f"{term}=nan" in line
    assert "last checkpoint is kept" in line
    assert sorted(saved) == [2, 4] and latest(out) == "step-00000004"
    assert folder_bytes(out / CHECKPOINTS_DIR / latest(out)) == saved[4]  # untouched since it was written
    assert read_config(out)[1]["step"] == 4
    assert records(out)[-1]["nonfinite"].startswith("non-finite loss at step 5")


def test_a_non_finite_gradient_is_caught_before_the_update(tmp_path):
    trainer = Trainer(debug_config("retrieval", "smt", steps=8), tmp_path / "run", show_progress=False)
    weight = dict(trainer.model.named_parameters())["rnn.readout_net.2.weight"]
    weight.register_hook(lambda grad: grad * float("nan") if trainer.step == 3 else grad)
    for _ in range(3):
        trainer.train_step()
    before = copy.deepcopy(trainer.model.state_dict())
    with pytest.raises(TrainingError, match=r"non-finite gradient at step 4: in rnn\.readout_net \(1 tensor, "
                                            r"first rnn\.readout_net\.2\.weight\); the loss terms were finite"):
        trainer.train_step()
    assert state_dicts_equal(trainer.model.state_dict(), before)


def test_skipped_non_finite_steps_make_no_update_and_are_logged(tmp_path, monkeypatch):
    monkeypatch.setattr(smtrnn.smt, "uniformity", poison(smtrnn.smt.uniformity, 3, 5))
    cfg = debug_config("retrieval", "smt", steps=8, train__skip_nonfinite_steps=2, smt__warmup=0.0,
                       smt__schedule="joint-detached")
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    weights_before = {}
    original = trainer.train_step

    def step():
        weights_before[trainer.step + 1] = copy.deepcopy(trainer.model.state_dict())
        return original()

    trainer.train_step = step
    assert trainer.run() is not None
    for skipped in (3, 5):
        assert state_dicts_equal(weights_before[skipped], weights_before[skipped + 1])
    assert not state_dicts_equal(weights_before[2], weights_before[3])
    skips = [r for r in records(tmp_path / "run") if "skipped" in r]
    assert [r["step"] for r in skips] == [3, 5] and "uniformity=nan" in skips[0]["skipped"]
    assert {state["step"].item() for state in trainer.optimizer.state.values()} == {6}  # 8 steps, 2 without update
    assert load_trainer_state(tmp_path / "run")["skipped"] == 2


def test_one_non_finite_step_more_than_allowed_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(smtrnn.smt, "uniformity", poison(smtrnn.smt.uniformity, 2, 3, 6))
    cfg = debug_config("retrieval", "smt", steps=8, train__skip_nonfinite_steps=2, smt__warmup=0.0,
                       smt__schedule="joint-detached")
    with pytest.raises(TrainingError, match=r"at step 6: uniformity=nan .* \(after skipping 2, the most "):
        Trainer(cfg, tmp_path / "run", show_progress=False).run()


# --- signals --------------------------------------------------------------------------------------------------

@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_sigterm_finishes_the_step_saves_and_exits_0(tmp_path):
    out = tmp_path / "run"
    proc = start_training(*TRAIN, "--steps", 100_000, "--set", "train.save_every=0", "--set", "train.log_every=1",
                          "--out", out)
    wait_for(lambda: (out / METRICS_FILE).exists() and len((out / METRICS_FILE).read_text().splitlines()) >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    step = read_config(out)[1]["step"]
    assert one_line(stderr) == (f"smtrnn: SIGTERM: stopped after step {step} of 100000 and saved {out}; "
                                "continue with --resume")
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
    code, stdout, err = run_cli(capsys, *TRAIN, "--steps", 20, "--set", "train.save_every=2", "--out",
                                tmp_path / "run")
    assert code == 128 + signal.SIGTERM
    assert "SIGTERM again: stopped at once" in one_line(err)
    assert latest(tmp_path / "run") == "step-00000002"


# --- loading never runs code ----------------------------------------------------------------------------------

class _Payload:
    """Unpickling this with a full unpickler creates the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("target", [STATE_FILE, WEIGHTS_FILE])
def test_a_pickle_payload_in_a_checkpoint_never_runs(target, smt_run_copy, tmp_path, capsys):
    marker = tmp_path / "pwned"
    for folder in (smt_run_copy, smt_run_copy / CHECKPOINTS_DIR / latest(smt_run_copy)):
        (folder / target).unlink()
        torch.save({"step": _Payload(marker), "weights": torch.zeros(2)}, folder / target)
    argv = [*TRAIN, "--steps", 8, "--set", "train.log_every=1", "--out", smt_run_copy, "--resume"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and one_line(err).startswith("smtrnn: error: ")
    assert ("unsafe" if target == STATE_FILE else "corrupt") in err
    assert "weights_only" not in err  # torch's hint to load it unsafely is not passed on
    assert not marker.exists()
    with pytest.raises(CheckpointError):
        {STATE_FILE: load_trainer_state, WEIGHTS_FILE: load_model}[target](smt_run_copy)
    assert not marker.exists()


# --- bad input: one line, exit 2 ------------------------------------------------------------------------------

def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _npy(path: Path, array) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.save(handle, array)
    return path


def _token_file(path: Path, data: bytes, sidecar: str) -> Path:
    _write(path.with_name(path.name + ".json"), sidecar)
    return _write(path, data)


def _run_with(run: Path, edit) -> Path:
    """The trained run `run`, damaged by `edit(run)`."""
    edit(run)
    return run


def _set_latest(name: str):
    return lambda run: (_write(run / LATEST_FILE, name + "\n"), (run / CONFIG_FILE).unlink())


def _rewrite_config(edit):
    def apply(run):
        meta = json.loads((run / CONFIG_FILE).read_text())
        edit(meta)
        (run / CONFIG_FILE).unlink()  # not through the hard link into checkpoints/
        _write(run / CONFIG_FILE, json.dumps(meta))
    return apply


def _replace_state(obj):
    def apply(run):
        (run / STATE_FILE).unlink()
        torch.save(obj, run / STATE_FILE)
    return apply


TRAIN_RUN = [*TRAIN, "--steps", 8, "--set", "train.log_every=1"]  # the config of the `smt_run` fixture
IDX = struct.pack(">IIII", 0x00000803, 3, 2, 2) + bytes(12)  # 3 images of 2x2

# id: (argv from (tmp, run), fragments of the message); `run` is a private copy of a trained 6-step SMT run.
BAD_INPUT = {
    # configs, through --set and --config
    "keep_checkpoints 0": (lambda t, r: [*TRAIN, "--set", "train.keep_checkpoints=0"], ["train.keep_checkpoints"]),
    "skip_nonfinite_steps -1": (lambda t, r: [*TRAIN, "--set", "train.skip_nonfinite_steps=-1"],
                                ["train.skip_nonfinite_steps", "-1"]),
    "eval_every_seconds -1": (lambda t, r: [*TRAIN, "--set", "train.eval_every_seconds=-1"],
                              ["train.eval_every_seconds"]),
    "lr nan": (lambda t, r: [*TRAIN, "--set", "optim.lr=nan"], ["optim.lr", "nan"]),
    "lr inf": (lambda t, r: [*TRAIN, "--set", "optim.lr=inf"], ["optim.lr must be finite"]),
    "warmup 1": (lambda t, r: [*TRAIN, "--set", "optim.warmup=1"], ["optim.warmup"]),
    "beta2 1.5": (lambda t, r: [*TRAIN, "--set", "optim.beta2=1.5"], ["optim.beta2", "1.5"]),
    "unknown schedule": (lambda t, r: [*TRAIN, "--set", "optim.schedule=linear"], ["optim.schedule", "linear"]),
    "curriculum_fraction 0": (lambda t, r: [*TRAIN, "--set", "train.curriculum_fraction=0"],
                              ["train.curriculum_fraction"]),
    "save_every -1": (lambda t, r: [*TRAIN, "--set", "train.save_every=-1"], ["train.save_every"]),
    "heads do not divide": (lambda t, r: [*TRAIN, "--set", "teacher.heads=3"], ["teacher.heads=3"]),
    "smt warmup 1": (lambda t, r: [*TRAIN, "--set", "smt.warmup=1"], ["smt.warmup"]),
    "unknown smt schedule": (lambda t, r: [*TRAIN, "--set", "smt.schedule=later"], ["smt.schedule", "later", "staged"]),
    "a field of an earlier version": (lambda t, r: [*TRAIN, "--set", "smt.teacher_warmup=0.5"],
                                      ["smt.teacher_warmup", "replaced by smt.warmup"]),
    "baseline cell with smt": (lambda t, r: [*TRAIN, "--cell", "gru-fused"], ["gru-fused", "BPTT baseline"]),
    "init without dmt": (lambda t, r: [*TRAIN, "--set", "train.init=somewhere"], ["train.init"]),
    "bool not a bool": (lambda t, r: [*TRAIN, "--set", "dmt.teacher_learns=maybe"],
                        ["dmt.teacher_learns", "true or false"]),
    "steps not an integer": (lambda t, r: [*TRAIN, "--set", "train.steps=2.5"], ["train.steps", "2.5"]),
    "task params not a mapping": (lambda t, r: [*TRAIN, "--set", "task.params=[1]"], ["task.params", "mapping"]),
    "task param out of range": (lambda t, r: [*TRAIN, "--set", 'task.params={"num_symbols": 1}'],
                                ["num_symbols", ">= 2"]),
    "config file value of the wrong type": (
        lambda t, r: [*TRAIN, "--config", _write(t / "cfg.json", '{"optim": {"lr": "fast"}}')], ["optim.lr", "fast"]),
    "config file section not a mapping": (lambda t, r: [*TRAIN, "--config", _write(t / "cfg.yaml", "rnn: 3\n")],
                                          ["rnn"]),
    # command-line arguments
    "negative budget": (lambda t, r: [*TRAIN, "--budget", "-1"], ["train.max_seconds", "-1"]),
    "lr not a number": (lambda t, r: [*TRAIN, "--lr", "abc"], ["--lr", "abc"]),
    "unknown flag": (lambda t, r: [*TRAIN, "--nope"], ["--nope"]),
    "memory tokens 0": (lambda t, r: [*TRAIN, "--memory-tokens", "0"], ["memory.tokens"]),
    "eval negative max tokens": (lambda t, r: ["eval", r, "--max-tokens", "-1"], ["--max-tokens"]),
    "sample negative temperature": (lambda t, r: ["sample", r, "--prompt", "1", "--temperature", "-1"],
                                    ["--temperature"]),
    "sample two prompts": (lambda t, r: ["sample", r, "--prompt", "1", "--text", "hi"], ["exactly one"]),
    # data files
    "text folder without content": (
        lambda t, r: [*TRAIN, "--task", "text", "--data", _write(t / "d" / "empty.txt", "").parent],
        ["no non-empty files"]),
    "token array 2-D": (lambda t, r: [*TRAIN, "--task", "text", "--data", _npy(t / "x.npy", np.zeros((2, 3), "u2"))],
                        ["x.npy", "1-D"]),
    "token array of floats": (
        lambda t, r: [*TRAIN, "--task", "text", "--data", _npy(t / "f.npy", np.zeros(9, "f4"))], ["f.npy", "dtype"]),
    ".bin without a dtype": (lambda t, r: [*TRAIN, "--task", "text", "--data", _write(t / "x.bin", bytes(10))],
                             ["x.bin", "dtype"]),
    ".bin of odd size": (
        lambda t, r: [*TRAIN, "--task", "text", "--data",
                      _token_file(t / "x.bin", bytes(9), '{"dtype": "uint16", "vocab_size": 50}')],
        ["x.bin", "multiple"]),
    "sidecar not JSON": (lambda t, r: [*TRAIN, "--task", "text", "--data", _token_file(t / "y.bin", bytes(8), "{oops")],
                         ["y.bin.json"]),
    "IDX labels file": (lambda t, r: [*TRAIN, "--task", "pixels", "--data",
                                      _write(t / "l.idx", struct.pack(">II", 0x801, 3) + bytes(3))], ["labels"]),
    "not an IDX file": (lambda t, r: [*TRAIN, "--task", "pixels", "--data", _write(t / "n.idx", b"hello world!")],
                        ["n.idx", "not an IDX file"]),
    "corrupt gzip IDX": (lambda t, r: [*TRAIN, "--task", "pixels", "--data",
                                       _write(t / "c.idx.gz", b"\x1f\x8b" + bytes(20))], ["c.idx.gz", "gzip"]),
    "IDX of 2 dimensions": (lambda t, r: [*TRAIN, "--task", "pixels", "--data",
                                          _write(t / "d.idx", struct.pack(">III", 0x802, 3, 4) + bytes(12))],
                            ["d.idx", "dimensions"]),
    "torchvision without root": (lambda t, r: [*TRAIN, "--task", "pixels", "--data", "torchvision:MNIST"],
                                 ["torchvision:NAME:ROOT"]),
    "pixel levels 1": (lambda t, r: [*TRAIN, "--task", "pixels", "--set",
                                     f'task.params={{"path": "{_write(t / "i.idx", IDX)}", "levels": 1}}'], ["levels"]),
    # checkpoints
    "latest names a missing folder": (lambda t, r: ["eval", _run_with(r, _set_latest("step-00000099"))],
                                      ["latest", "step-00000099", "missing"]),
    "latest points outside the run": (lambda t, r: ["eval", _run_with(r, _set_latest("../../etc"))],
                                      ["latest", "corrupt"]),
    "config.json nested too deeply": (
        lambda t, r: ["eval", _run_with(r, lambda d: _write(d / CONFIG_FILE, '{"x": ' * 100_000 + "1" + "}" * 100_000))],
        [CONFIG_FILE, "corrupt", "recursion"]),
    "config file nested too deeply": (lambda t, r: [*TRAIN, "--config", _write(t / "deep.json", "[" * 100_000)],
                                      ["deep.json", "not valid"]),
    "config.json truncated": (lambda t, r: ["eval", _run_with(r, lambda d: _write(d / CONFIG_FILE, '{"form'))],
                              [CONFIG_FILE, "corrupt"]),
    "config names an unknown task": (
        lambda t, r: ["eval", _run_with(r, _rewrite_config(lambda m: m["config"]["task"].update(name="nope")))],
        ["invalid config", "nope"]),
    "trainer state of garbage": (
        lambda t, r: [*TRAIN_RUN, "--resume", "--out", _run_with(r, lambda d: (
            (d / STATE_FILE).unlink(), _write(d / STATE_FILE, bytes(range(256)))))], [STATE_FILE, "corrupt"]),
    "trainer state without its keys": (
        lambda t, r: [*TRAIN_RUN, "--resume", "--out", _run_with(r, _replace_state({"step": 3}))],
        ["trainer state lacks", "optimizer"]),
    "resume with another config": (lambda t, r: [*TRAIN_RUN, "--resume", "--lr", "0.5", "--out", r],
                                   ["different config"]),
    "train into a run without --resume": (lambda t, r: [*TRAIN_RUN, "--out", r], ["--resume"]),
    "--out is a file": (lambda t, r: [*TRAIN, "--out", _write(t / "a-file", "x")], ["a-file", "not a directory"]),
}


@pytest.mark.parametrize("argv, fragments", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_and_exit_2(argv, fragments, smt_run_copy, tmp_path, capsys):
    argv = [str(a) for a in argv(tmp_path / "inputs", smt_run_copy)]
    if "pixels" in argv:
        pytest.importorskip("sklearn")  # the debug preset for pixels sizes itself on the digits
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    if argv[0] in ("eval", "sample"):
        argv += ["--device", "cpu"]
    before = {p: p.read_bytes() for p in sorted(smt_run_copy.rglob("*")) if p.is_file()}
    code, stdout, err = run_cli(capsys, *argv)
    assert {p: p.read_bytes() for p in sorted(smt_run_copy.rglob("*")) if p.is_file()} == before  # nothing changed
    assert code == 2, (stdout, err)
    line = one_line(err)
    assert line.startswith("smtrnn: error: ")
    for fragment in fragments:
        assert fragment in line, line
    assert not (tmp_path / "out").exists()


# --- properties of the task generators and the data loaders (hypothesis) --------------------------------------

SMALL_TASKS = sorted(set(all_tasks()) - {"text", "pixels"})


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(SMALL_TASKS), batch=st.integers(1, 5), extra=st.integers(0, 20),
       seed=st.integers(0, 2**31 - 1))
def test_a_generator_is_a_function_of_its_seed_alone(name, batch, extra, seed):
    task = make_task(name)
    length = task.min_seq_len() + extra
    rng_before = torch.get_rng_state()
    first = task.sample(batch, length, torch.Generator().manual_seed(seed))
    second = task.sample(batch, length, torch.Generator().manual_seed(seed))
    assert torch.equal(rng_before, torch.get_rng_state())  # the global RNG is never touched
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    x, y = first
    assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (batch, length)
    assert ((y == NO_TARGET) | ((y >= 0) & (y < task.vocab_size))).all()
    assert ((x >= 0) & (x < task.vocab_size)).all()


@settings(max_examples=15, deadline=None)
@given(contents=st.lists(st.binary(min_size=1, max_size=80).filter(lambda b: b"\x00" not in b), min_size=2,
                         max_size=6),
       length=st.integers(2, 8), seed=st.integers(0, 2**31 - 1))
def test_text_windows_are_next_byte_pairs_of_the_training_documents(contents, length, seed):
    with tempfile.TemporaryDirectory() as root:
        for i, data in enumerate(contents):
            _write(Path(root) / f"f{i:02d}.txt", data * 10)
        task = make_task("text", path=root)
        training = [bytes(doc.tolist()) for doc in task.documents()]
        if task.max_seq_len() < length:
            return
        x, y = task.sample(3, length, torch.Generator().manual_seed(seed))
        again = task.sample(3, length, torch.Generator().manual_seed(seed))
    assert set(training) <= {data * 10 for data in contents} and len(training) < len(contents)  # whole files
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one byte
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        assert bytes(row_x + row_y[-1:]) in b"".join(training)  # a window of the training documents, end to end


@settings(max_examples=20, deadline=None)
@given(contents=st.lists(st.binary(min_size=0, max_size=60).filter(lambda b: b"\x00" not in b), min_size=1,
                         max_size=5),
       max_bytes=st.one_of(st.none(), st.integers(1, 200)))
def test_load_text_keeps_the_bytes_in_sorted_order(contents, max_bytes):
    with tempfile.TemporaryDirectory() as root:
        for i, data in enumerate(contents):
            _write(Path(root) / f"f{i:02d}.txt", data)
        expected = b"".join(contents)
        if not expected:
            with pytest.raises(DataError, match="no non-empty files"):
                load_text(root, max_bytes=max_bytes)
            return
        corpus = load_text(root, max_bytes=max_bytes)
    read = b"".join(bytes(doc.tolist()) for doc in corpus.documents)
    assert read == (expected[:max_bytes] if max_bytes else expected)
    assert corpus.names == sorted(corpus.names) and all(doc.numel() for doc in corpus.documents)
    assert corpus.vocab_size == 256


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 20), min_size=1, max_size=12),
       fraction=st.floats(0.01, 0.99), seed=st.integers(0, 1000))
def test_split_corpus_is_a_stable_partition(sizes, fraction, seed):
    names = [f"doc{seed}-{i}.txt" for i in range(len(sizes))]
    docs = [torch.full((n,), i % 256, dtype=torch.uint8) for i, n in enumerate(sizes)]
    corpus = Corpus(docs, names, 256)
    if len(sizes) == 1 and sizes[0] < 2:
        with pytest.raises(DataError, match="cannot be split"):
            split_corpus(corpus, fraction)
        return
    train, valid = split_corpus(corpus, fraction)
    again = split_corpus(corpus, fraction)
    assert (train.names, valid.names) == (again[0].names, again[1].names)
    assert train.documents and valid.documents
    if len(sizes) == 1:  # one document: cut into a head and a tail
        assert torch.equal(torch.cat([train.documents[0], valid.documents[0]]), docs[0])
    else:
        assert sorted(train.names + valid.names) == sorted(names) and not set(train.names) & set(valid.names)
    assert train.num_tokens + valid.num_tokens == corpus.num_tokens


@settings(max_examples=30, deadline=None)
@given(count=st.integers(1, 6), height=st.integers(1, 4), width=st.integers(1, 4), levels=st.integers(2, 300),
       target=st.integers(2, 300), seed=st.integers(0, 1000))
def test_quantize_is_monotone_onto_the_new_levels(count, height, width, levels, target, seed):
    pixels = torch.randint(0, levels, (count, height, width), generator=torch.Generator().manual_seed(seed))
    images = Images(pixels.to(torch.uint8 if levels <= 256 else torch.int32), levels, "random")
    coarse = quantize(images, target)
    assert coarse.levels == target and coarse.pixels.shape == pixels.shape
    assert coarse.pixels.dtype == (torch.uint8 if target <= 256 else torch.int32)
    flat, order = pixels.flatten(), pixels.flatten().argsort()
    mapped = coarse.pixels.flatten().long()[order]
    assert (mapped[1:] >= mapped[:-1]).all()  # a brighter pixel never becomes darker
    assert 0 <= mapped.min() and mapped.max() < target
    if target == levels:
        assert torch.equal(coarse.pixels.long(), flat.view_as(pixels))


@settings(max_examples=30, deadline=None)
@given(count=st.integers(1, 40), fraction=st.floats(0.0, 1.0))
def test_split_images_holds_out_a_nonempty_tail(count, fraction):
    images = Images(torch.arange(count, dtype=torch.int32).view(count, 1, 1) % 7, 7, "ramp")
    if count < 2 or not 0 < fraction < 1:
        with pytest.raises(DataError):
            split_images(images, fraction)
        return
    train, valid = split_images(images, fraction)
    assert len(train) >= 1 and len(valid) >= 1 and len(train) + len(valid) == count
    assert torch.equal(torch.cat([train.pixels, valid.pixels]), images.pixels)
    if 1 < len(valid) < count - 1:  # not clamped: the fewest images that hold out at least the fraction
        assert len(valid) - 1 < fraction * count <= len(valid) + 1e-9
