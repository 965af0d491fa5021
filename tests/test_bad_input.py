"""Bad input: a pickle payload in any file a checkpoint holds never runs, and every bad input in the table ends in
one line `smtrnn: error: ...`, exit 2, with the run directory it touches unchanged."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_support import TRAIN, TRAIN_RUN, _write, one_line, run_cli

from smtrnn.checkpoint import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    LATEST_FILE,
    METRICS_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    checkpoint_dir,
    load_model,
    load_trainer_state,
)
from smtrnn.errors import CheckpointError

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
    folder = checkpoint_dir(smt_run_copy)
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
    return lambda run: _write(run / LATEST_FILE, name + "\n")


def _rewrite_config(edit):
    def apply(run):
        path = checkpoint_dir(run) / CONFIG_FILE
        meta = json.loads(path.read_text())
        edit(meta)
        path.unlink()
        _write(path, json.dumps(meta))

    return apply


def _rewrite_text(name: str, old: str, new: str):
    def apply(run):
        path = checkpoint_dir(run) / name
        text = path.read_text()
        path.unlink()
        _write(path, text.replace(old, new, 1))

    return apply


def _replace_state(obj):
    def apply(run):
        (checkpoint_dir(run) / STATE_FILE).unlink()
        torch.save(obj, checkpoint_dir(run) / STATE_FILE)

    return apply


def _fifo(path: Path) -> Path:
    """A FIFO at path (replacing what is there): opening it to read waits for a writer, forever."""
    if path.is_dir():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _folder_at(name: str):
    """Replace the run's file `name` by an empty folder."""
    return lambda run: ((run / name).unlink(), (run / name).mkdir())


def _file_at(name: str):
    """Replace the run's folder `name` by a file."""
    return lambda run: (shutil.rmtree(run / name), _write(run / name, "x"))


def _dangling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path.parent / "missing-target")
    return path


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


HUGE_INT = "1" * 5001  # past Python's 4300-digit limit on parsing an integer
IDX = struct.pack(">IIII", 0x00000803, 3, 2, 2) + bytes(12)  # 3 images of 2x2

# id: (argv from (tmp, run), fragments of the message); `run` is a private copy of a trained 6-step SMT run.
BAD_INPUT = {
    # configs, through --set and --config
    "keep_checkpoints 0": (lambda t, r: [*TRAIN, "--set", "train.keep_checkpoints=0"], ["train.keep_checkpoints"]),
    "skip_nonfinite_steps -1": (
        lambda t, r: [*TRAIN, "--set", "train.skip_nonfinite_steps=-1"],
        ["train.skip_nonfinite_steps", "-1"],
    ),
    "eval_every_seconds -1": (
        lambda t, r: [*TRAIN, "--set", "train.eval_every_seconds=-1"],
        ["train.eval_every_seconds"],
    ),
    "lr nan": (lambda t, r: [*TRAIN, "--set", "optim.lr=nan"], ["optim.lr", "nan"]),
    "lr inf": (lambda t, r: [*TRAIN, "--set", "optim.lr=inf"], ["optim.lr must be finite"]),
    "warmup 1": (lambda t, r: [*TRAIN, "--set", "optim.warmup=1"], ["optim.warmup"]),
    "beta2 1.5": (lambda t, r: [*TRAIN, "--set", "optim.beta2=1.5"], ["optim.beta2", "1.5"]),
    "unknown schedule": (lambda t, r: [*TRAIN, "--set", "optim.schedule=linear"], ["optim.schedule", "linear"]),
    "curriculum_fraction 0": (
        lambda t, r: [*TRAIN, "--set", "train.curriculum_fraction=0"],
        ["train.curriculum_fraction"],
    ),
    "save_every -1": (lambda t, r: [*TRAIN, "--set", "train.save_every=-1"], ["train.save_every"]),
    "heads do not divide": (lambda t, r: [*TRAIN, "--set", "teacher.heads=3"], ["teacher.heads=3"]),
    "smt warmup 1": (lambda t, r: [*TRAIN, "--set", "smt.teacher_alone=1"], ["smt.teacher_alone"]),
    "unknown smt schedule": (lambda t, r: [*TRAIN, "--set", "smt.schedule=later"], ["smt.schedule", "later", "staged"]),
    "a field of an earlier version": (
        lambda t, r: [*TRAIN, "--set", "smt.teacher_warmup=0.5"],
        ["unknown config field", "smt.teacher_warmup"],
    ),
    "baseline cell with smt": (lambda t, r: [*TRAIN, "--cell", "gru-fused"], ["gru-fused", "BPTT baseline"]),
    "init without dmt": (lambda t, r: [*TRAIN, "--set", "train.init=somewhere"], ["train.init"]),
    "bool not a bool": (
        lambda t, r: [*TRAIN, "--set", "dmt.teacher_learns=maybe"],
        ["dmt.teacher_learns", "true or false"],
    ),
    "steps not an integer": (lambda t, r: [*TRAIN, "--set", "train.steps=2.5"], ["train.steps", "2.5"]),
    "task params not a mapping": (lambda t, r: [*TRAIN, "--set", "task.params=[1]"], ["task.params", "mapping"]),
    "task param out of range": (
        lambda t, r: [*TRAIN, "--set", 'task.params={"num_symbols": 1}'],
        ["num_symbols", ">= 2"],
    ),
    "config file value of the wrong type": (
        lambda t, r: [*TRAIN, "--config", _write(t / "cfg.json", '{"optim": {"lr": "fast"}}')],
        ["optim.lr", "fast"],
    ),
    "config file section not a mapping": (
        lambda t, r: [*TRAIN, "--config", _write(t / "cfg.yaml", "rnn: 3\n")],
        ["rnn"],
    ),
    "config file with a 5001-digit integer": (
        lambda t, r: [*TRAIN, "--config", _write(t / "big.json", f'{{"optim": {{"lr": {HUGE_INT}}}}}')],
        ["big.json", "not valid", "4300 digits"],
    ),
    "config file a FIFO": (
        lambda t, r: [*TRAIN, "--config", _fifo(t / "cfg.json")],
        ["cfg.json", "not a regular file"],
    ),
    "cell args nested 5000 deep": (
        lambda t, r: [*TRAIN, "--set", f"rnn.cell_args={_nested(5000)}"],
        ["rnn.cell_args", "nested too deeply"],
    ),
    "cell args nested 100 deep": (
        lambda t, r: [*TRAIN, "--set", f"rnn.cell_args={_nested(100)}"],
        ["rnn.cell_args", "nested too deeply", "32 levels"],
    ),
    "cell args of a 10 KB string": (
        lambda t, r: [*TRAIN, "--set", "rnn.cell_args=" + "x" * 10_000],
        ["rnn.cell_args must be a JSON object", "xxx…"],
    ),
    "a 10 KB schedule name": (
        lambda t, r: [*TRAIN, "--set", "optim.schedule=" + "y" * 10_000],
        ["optim.schedule", "yyy…"],
    ),
    "a 10 KB field name": (
        lambda t, r: [*TRAIN, "--set", "optim." + "z" * 10_000 + "=1"],
        ["unknown config field", "zzz…"],
    ),
    # command-line arguments
    "negative budget": (lambda t, r: [*TRAIN, "--budget", "-1"], ["--budget must be a positive duration", "-1"]),
    "a budget that is no duration": (lambda t, r: [*TRAIN, "--budget", "10 minutes"], ["--budget", "10m"]),
    "lr not a number": (lambda t, r: [*TRAIN, "--lr", "abc"], ["--lr", "abc"]),
    "unknown flag": (lambda t, r: [*TRAIN, "--nope"], ["--nope"]),
    "memory tokens 0": (lambda t, r: [*TRAIN, "--memory-tokens", "0"], ["memory.tokens"]),
    "eval negative max tokens": (lambda t, r: ["eval", r, "--max-tokens", "-1"], ["--max-tokens"]),
    "sample negative temperature": (
        lambda t, r: ["sample", r, "--prompt", "1", "--temperature", "-1"],
        ["--temperature"],
    ),
    "sample two prompts": (lambda t, r: ["sample", r, "--prompt", "1", "--text", "hi"], ["exactly one"]),
    "eval at a length that cannot fit": (
        lambda t, r: ["eval", r, "--seq-len", "1000000000000"],
        ["--seq-len 1000000000000 needs about", "to evaluate the RNN alone (", "available"],
    ),
    "eval with the teacher at a length that cannot fit": (
        lambda t, r: ["eval", r, "--seq-len", "1000000000", "--teacher-at-lengths"],
        ["--seq-len 1000000000 needs about", "GB to evaluate with the teacher (batch", "available"],
    ),
    "eval teacher at lengths without lengths": (lambda t, r: ["eval", r, "--teacher-at-lengths"], ["give --seq-len"]),
    "train at a length beyond memory": (lambda t, r: [*TRAIN, "--seq-len", str(10**12)], ["needs at least", "train"]),
    "print-config at a length beyond memory": (
        lambda t, r: [*TRAIN, "--seq-len", str(10**30), "--print-config"],
        ["needs at least", "available"],
    ),
    "print-config of keep_best without a validation split": (
        lambda t, r: [*TRAIN, "--set", "train.keep_best=true", "--print-config"],
        ["no validation split"],
    ),
    "eval at an empty list of lengths": (lambda t, r: ["eval", r, "--seq-len", ""], ["--seq-len", "positive"]),
    "an unknown builtin corpus": (
        lambda t, r: [*TRAIN, "--task", "text", "--data", "builtin:klingon"],
        ["builtin:klingon", "builtin:english"],
    ),
    "hf: without a name": (lambda t, r: [*TRAIN, "--task", "text", "--data", "hf:"], ["hf:", "dataset name"]),
    "export under a file": (
        lambda t, r: ["export", r, "--out", _write(t / "afile", "x") / "x.pt"],
        ["afile is a file, not a folder"],
    ),
    "export onto a dangling link": (
        lambda t, r: ["export", r, "--out", _dangling(t / "exp" / "dangling")],
        ["dangling exists", "link to a missing file"],
    ),
    "label store larger than the disk": (
        lambda t, r: [
            "label",
            "--teacher",
            r,
            "--out",
            t / "labels",
            "--sequences",
            "1000000000000",
            "--device",
            "cpu",
        ],
        ["--out", "1000000000000 sequences", "GB of disk", "GB free"],
    ),
    "label manifest a FIFO": (
        lambda t, r: [
            "label",
            "--teacher",
            r,
            "--out",
            _fifo(t / "L" / "manifest.json").parent,
            "--sequences",
            "4",
            "--device",
            "cpu",
        ],
        ["manifest.json is not a regular file"],
    ),
    # data files
    "text folder without content": (
        lambda t, r: [*TRAIN, "--task", "text", "--data", _write(t / "d" / "empty.txt", "").parent],
        ["no non-empty files"],
    ),
    "token array 2-D": (
        lambda t, r: [*TRAIN, "--task", "text", "--data", _npy(t / "x.npy", np.zeros((2, 3), "u2"))],
        ["x.npy", "1-D"],
    ),
    "token array of floats": (
        lambda t, r: [*TRAIN, "--task", "text", "--data", _npy(t / "f.npy", np.zeros(9, "f4"))],
        ["f.npy", "dtype"],
    ),
    ".bin without a dtype": (
        lambda t, r: [*TRAIN, "--task", "text", "--data", _write(t / "x.bin", bytes(10))],
        ["x.bin", "dtype"],
    ),
    ".bin of odd size": (
        lambda t, r: [
            *TRAIN,
            "--task",
            "text",
            "--data",
            _token_file(t / "x.bin", bytes(9), '{"dtype": "uint16", "vocab_size": 50}'),
        ],
        ["x.bin", "multiple"],
    ),
    "sidecar not JSON": (
        lambda t, r: [*TRAIN, "--task", "text", "--data", _token_file(t / "y.bin", bytes(8), "{oops")],
        ["y.bin.json"],
    ),
    "IDX labels file": (
        lambda t, r: [
            *TRAIN,
            "--task",
            "pixels",
            "--data",
            _write(t / "l.idx", struct.pack(">II", 0x801, 3) + bytes(3)),
        ],
        ["labels"],
    ),
    "not an IDX file": (
        lambda t, r: [*TRAIN, "--task", "pixels", "--data", _write(t / "n.idx", b"hello world!")],
        ["n.idx", "not an IDX file"],
    ),
    "corrupt gzip IDX": (
        lambda t, r: [*TRAIN, "--task", "pixels", "--data", _write(t / "c.idx.gz", b"\x1f\x8b" + bytes(20))],
        ["c.idx.gz", "gzip"],
    ),
    "IDX of 2 dimensions": (
        lambda t, r: [
            *TRAIN,
            "--task",
            "pixels",
            "--data",
            _write(t / "d.idx", struct.pack(">III", 0x802, 3, 4) + bytes(12)),
        ],
        ["d.idx", "dimensions"],
    ),
    "torchvision without root": (
        lambda t, r: [*TRAIN, "--task", "pixels", "--data", "torchvision:MNIST"],
        ["torchvision:NAME:ROOT"],
    ),
    "pixel side 1": (
        lambda t, r: [*TRAIN, "--task", "pixels", "--set", 'task.params={"side": 1}'],
        ["side", "[2, 1024]", "1"],
    ),
    "pixel side 2000": (
        lambda t, r: [*TRAIN, "--task", "pixels", "--set", 'task.params={"side": 2000}'],
        ["side", "[2, 1024]", "2000"],
    ),
    "pixel levels 1": (
        lambda t, r: [
            *TRAIN,
            "--task",
            "pixels",
            "--set",
            f'task.params={{"path": "{_write(t / "i.idx", IDX)}", "levels": 1}}',
        ],
        ["levels"],
    ),
    # checkpoints
    "latest names a missing folder": (
        lambda t, r: ["eval", _run_with(r, _set_latest("step-00000099"))],
        ["latest", "step-00000099", "missing"],
    ),
    "latest points outside the run": (
        lambda t, r: ["eval", _run_with(r, _set_latest("../../etc"))],
        ["latest", "corrupt"],
    ),
    "config.json nested too deeply": (
        lambda t, r: [
            "eval",
            _run_with(r, lambda d: _write(checkpoint_dir(d) / CONFIG_FILE, '{"x": ' * 100_000 + "1" + "}" * 100_000)),
        ],
        [CONFIG_FILE, "corrupt", "recursion"],
    ),
    "config file nested too deeply": (
        lambda t, r: [*TRAIN, "--config", _write(t / "deep.json", "[" * 100_000)],
        ["deep.json", "not valid"],
    ),
    "config.json truncated": (
        lambda t, r: ["eval", _run_with(r, lambda d: _write(checkpoint_dir(d) / CONFIG_FILE, '{"form'))],
        [CONFIG_FILE, "corrupt"],
    ),
    "config.json with a 5001-digit integer": (
        lambda t, r: ["eval", _run_with(r, _rewrite_text(CONFIG_FILE, '"step":', f'"digits": {HUGE_INT}, "step":'))],
        [CONFIG_FILE, "corrupt", "4300 digits"],
    ),
    "config.json a FIFO, export": (
        lambda t, r: ["export", _run_with(r, lambda d: _fifo(checkpoint_dir(d) / CONFIG_FILE)), "--out", t / "x.pt"],
        [f"{CONFIG_FILE} is not a regular file"],
    ),
    "config.json a FIFO, eval": (
        lambda t, r: ["eval", _run_with(r, lambda d: _fifo(checkpoint_dir(d) / CONFIG_FILE))],
        [f"{CONFIG_FILE} is not a regular file"],
    ),
    "latest a FIFO": (
        lambda t, r: ["eval", _run_with(r, lambda d: _fifo(d / LATEST_FILE))],
        [f"{LATEST_FILE} is not a regular file"],
    ),
    "weights a FIFO": (
        lambda t, r: ["sample", _run_with(r, lambda d: _fifo(checkpoint_dir(d) / WEIGHTS_FILE)), "--prompt", "1"],
        [f"{WEIGHTS_FILE} is not a regular file"],
    ),
    "trainer state a FIFO": (
        lambda t, r: [*TRAIN_RUN, "--resume", "--out", _run_with(r, lambda d: _fifo(checkpoint_dir(d) / STATE_FILE))],
        [f"{STATE_FILE} is not a regular file"],
    ),
    "config names an unknown task": (
        lambda t, r: ["eval", _run_with(r, _rewrite_config(lambda m: m["config"]["task"].update(name="nope")))],
        ["invalid config", "nope"],
    ),
    "trainer state of garbage": (
        lambda t, r: [
            *TRAIN_RUN,
            "--resume",
            "--out",
            _run_with(
                r,
                lambda d: (
                    (checkpoint_dir(d) / STATE_FILE).unlink(),
                    _write(checkpoint_dir(d) / STATE_FILE, bytes(range(256))),
                ),
            ),
        ],
        [STATE_FILE, "corrupt"],
    ),
    "trainer state without its keys": (
        lambda t, r: [*TRAIN_RUN, "--resume", "--out", _run_with(r, _replace_state({"step": 3}))],
        ["trainer state lacks", "optimizer"],
    ),
    "resume with another config": (
        lambda t, r: [*TRAIN_RUN, "--resume", "--lr", "0.5", "--out", r],
        ["different config (optim.lr=", "0.5 here"],
    ),
    "train into a run without --resume": (lambda t, r: [*TRAIN_RUN, "--out", r], ["--resume"]),
    # a run directory of the wrong layout: refused before any work, so no log record or temporary file is left
    "resume where checkpoints is a file": (
        lambda t, r: [*TRAIN_RUN, "--steps", 12, "--resume", "--out", _run_with(r, _file_at(CHECKPOINTS_DIR))],
        [CHECKPOINTS_DIR, "is not a folder"],
    ),
    "resume where latest is a folder": (
        lambda t, r: [*TRAIN_RUN, "--steps", 12, "--resume", "--out", _run_with(r, _folder_at(LATEST_FILE))],
        [LATEST_FILE, "is not a regular file"],
    ),
    "resume where metrics.jsonl is a folder": (
        lambda t, r: [*TRAIN_RUN, "--steps", 12, "--resume", "--out", _run_with(r, _folder_at(METRICS_FILE))],
        [METRICS_FILE, "is not a regular file"],
    ),
    "resume where metrics.jsonl is a FIFO": (
        lambda t, r: [*TRAIN_RUN, "--steps", 12, "--resume", "--out", _run_with(r, lambda d: _fifo(d / METRICS_FILE))],
        [METRICS_FILE, "is not a regular file"],
    ),
    "a fresh run into a folder whose checkpoints is a file": (
        lambda t, r: [*TRAIN, "--out", _write(t / "fresh" / CHECKPOINTS_DIR, "x").parent],
        [CHECKPOINTS_DIR, "is not a folder"],
    ),
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
    assert len(line) < 400, line  # a user's value is named, never echoed whole (the 10 KB ones above)
    assert not (tmp_path / "out").exists()


def test_a_label_store_larger_than_the_disk_is_refused_before_anything_is_written(smt_run_copy, tmp_path, capsys):
    out = tmp_path / "labels"
    code, _, err = run_cli(
        capsys, "label", "--teacher", smt_run_copy, "--out", out, "--sequences", 10**12, "--device", "cpu"
    )
    assert code == 2 and "GB of disk" in one_line(err)
    assert not out.exists()  # no folder, no shard
