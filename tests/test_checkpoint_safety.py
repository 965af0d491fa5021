"""Checkpoint safety: the layout (checkpoints/step-N and a latest pointer, the newest kept), an older layout that
still loads, a save cut short at any point or failing on a full or read-only disk leaving the previous checkpoint
whole, and a file-size limit on the save path met in one line."""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reliability_support import TRAIN_RUN, folder_bytes, latest, one_line
from support import debug_config, state_dicts_equal

import smtrnn.checkpoint as checkpoint
import smtrnn.files as files
from smtrnn.checkpoint import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LATEST_FILE,
    METRICS_FILE,
    checkpoint_dir,
    load_model,
    load_trainer_state,
    read_config,
    save_checkpoint,
)
from smtrnn.errors import TrainingError
from smtrnn.trainer import Trainer

# --- checkpoint layout ----------------------------------------------------------------------------------------


def test_keeps_the_last_n_checkpoints_and_latest_names_the_newest(tmp_path):
    cfg = debug_config("retrieval", "bptt", steps=7, train__save_every=2, train__keep_checkpoints=2)
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    trainer.run()
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / CHECKPOINTS_DIR).iterdir()) == ["step-00000006", "step-00000007"]
    assert latest(run) == "step-00000007"
    assert json.loads((checkpoint_dir(run) / CONFIG_FILE).read_text())["step"] == 7
    assert sorted(p.name for p in run.iterdir()) == [CHECKPOINTS_DIR, LATEST_FILE, METRICS_FILE]  # nothing mirrored
    assert folder_bytes(run / CHECKPOINTS_DIR / "step-00000006") != folder_bytes(run / CHECKPOINTS_DIR / latest(run))
    assert state_dicts_equal(load_model(run)[1].state_dict(), trainer.model.state_dict())


def test_one_checkpoint_folder_loads_like_a_run(smt_run_copy, smt_run):
    """checkpoints/step-N alone (copied out of its run) is what `load_model` and `smtrnn eval` read."""
    alone = Path(shutil.copytree(smt_run_copy / CHECKPOINTS_DIR / latest(smt_run_copy), smt_run_copy.parent / "one"))
    assert state_dicts_equal(load_model(alone)[1].state_dict(), smt_run[1].model.state_dict())


class _Crash(Exception):
    pass


class _CrashingOS:
    """`os` for smtrnn.checkpoint, raising _Crash at the `crash_at`-th rename or fsync (None: never)."""

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
    trainer = Trainer(
        debug_config("retrieval", "smt", steps=8),
        Path(shutil.copytree(old_dir, tmp_path / "base")),
        resume=True,
        show_progress=False,
    )
    trainer.train_step()
    new_weights = copy.deepcopy(trainer.model.state_dict())
    state = {
        "optimizer": trainer.optimizer.state_dict(),
        "step": trainer.step,
        "elapsed": 1.0,
        "skipped": 0,
        "torch_rng": torch.get_rng_state(),
        "data_rng": trainer.data_generator.get_state(),
    }

    counter = _CrashingOS(None)
    monkeypatch.setattr(checkpoint, "os", counter)  # the storage primitives (`smtrnn.files`) and the save itself
    monkeypatch.setattr(files, "os", counter)
    save_checkpoint(Path(shutil.copytree(old_dir, tmp_path / "count")), trainer.cfg, trainer.model, state)
    assert counter.events >= 8  # each file synced, the folder renamed and synced, `latest` written and renamed

    seen = []
    for crash_at in range(1, counter.events + 1):
        run = Path(shutil.copytree(old_dir, tmp_path / f"crash{crash_at}"))
        crashing = _CrashingOS(crash_at)
        monkeypatch.setattr(checkpoint, "os", crashing)
        monkeypatch.setattr(files, "os", crashing)
        with pytest.raises(_Crash):
            save_checkpoint(run, trainer.cfg, trainer.model, state)
        monkeypatch.setattr(checkpoint, "os", os)
        monkeypatch.setattr(files, "os", os)
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


def test_atomic_write_never_touches_a_file_named_like_its_temporary_file(tmp_path):
    """A fixed temporary name (latest.tmp) would be written over and renamed into place: someone's file lost."""
    target = tmp_path / "latest"
    (tmp_path / "latest.tmp").write_text("mine")
    (tmp_path / ".latest.abcd1234.tmp").write_text("half")  # what a crash mid-write left: deleted by the next write
    files.atomic_write(target, lambda p: p.write_text("step-00000001\n"))
    assert target.read_text() == "step-00000001\n" and (tmp_path / "latest.tmp").read_text() == "mine"
    with pytest.raises(ZeroDivisionError):
        files.atomic_write(target, lambda p: 1 / 0)
    assert target.read_text() == "step-00000001\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "latest.tmp"]


@pytest.mark.parametrize(
    "errno_, words",
    [
        (errno.ENOSPC, "No space left on device"),
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
    ],
)
def test_a_failed_write_on_the_save_path_keeps_the_previous_checkpoint(
    errno_, words, smt_run_copy, smt_run, monkeypatch
):
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

        monkeypatch.setattr(checkpoint, "write_bytes", fails)  # config.json
        monkeypatch.setattr(files, "write_bytes", fails)  # the weights and the trainer state
        trainer = Trainer(debug_config("retrieval", "smt", steps=8), smt_run_copy, resume=True, show_progress=False)
        trainer.train_step()
        with pytest.raises(
            TrainingError, match=f"cannot save the checkpoint of step 7 .*: {words}; the previous checkpoint is kept"
        ):
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
    proc = subprocess.run(
        argv, capture_output=True, text=True, preexec_fn=limit, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_line(proc.stderr)
    assert line.startswith("smtrnn: error: ") and "File too large" in line and "previous checkpoint is kept" in line
    assert {p: p.read_bytes() for p in before} == before
    assert read_config(smt_run_copy)[1]["step"] == 6


@pytest.mark.parametrize("link", ["latest", "best"])
def test_a_step_folder_that_links_to_another_run_is_refused(link, smt_run, tmp_path, capsys):
    """checkpoints/step-N a symlink to another run's checkpoint: never scored as this run's last or best."""
    from smtrnn.best import SCORE
    from smtrnn.checkpoint import CHECKPOINTS_DIR, LATEST_FILE
    from smtrnn.cli import main

    run = Path(shutil.copytree(smt_run[0], tmp_path / "run"))
    other = Path(shutil.copytree(smt_run[0], tmp_path / "other"))
    name = (run / LATEST_FILE).read_text().strip()
    shutil.rmtree(run / CHECKPOINTS_DIR / name)
    os.symlink(other / CHECKPOINTS_DIR / name, run / CHECKPOINTS_DIR / name)
    if link == "best":
        (run / "best.json").write_text(json.dumps({"checkpoint": name, "step": 6, SCORE: 1.0}))
    code = main(["eval", str(run), "--batches", "1", "--no-diagnostics", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "is a link to" in err and err.count("\n") == 1, err
