"""`smtrnn export`: the RNN alone as a step function with explicit state, run outside smtrnn (torch.jit.load,
onnxruntime), matching eager PyTorch over a 100-step rollout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from smtrnn.checkpoint import load_model
from smtrnn.cli import main
from smtrnn.config import CELLS

TRAIN = ["train", "--preset", "debug", "--task", "retrieval", "--steps", "2", "--quiet", "--device", "cpu"]
STEPS, BATCH = 100, 3


def trained(tmp_path: Path, cell: str, capsys) -> Path:
    run = tmp_path / f"run-{cell}"
    method = "bptt" if cell in ("gru-fused", "lstm-fused", "mingru") else "smt"
    assert main([*TRAIN, "--cell", cell, "--method", method, "--out", str(run)]) == 0
    capsys.readouterr()
    return run


def eager(run: Path, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, model = load_model(run)
    with torch.no_grad():
        return model.rnn.rollout(x)


@pytest.mark.parametrize("cell", CELLS)
def test_torchscript_step_matches_eager_over_a_100_step_rollout(cell, tmp_path, capsys):
    run = trained(tmp_path, cell, capsys)
    out = tmp_path / "rnn.pt"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    step = torch.jit.load(str(out))  # no smtrnn code involved from here on
    x = torch.randint(0, 4, (BATCH, STEPS))
    memories, logits = eager(run, x)
    state = step.initial_state.expand(BATCH, -1)
    for t in range(STEPS):
        state, out_logits = step(state, x[:, t])
        torch.testing.assert_close(state, memories[:, t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out_logits, logits[:, t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step.readout(state), logits[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["mlp", "transformer"])
def test_onnx_step_run_by_onnxruntime_matches_eager_over_a_100_step_rollout(cell, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run = trained(tmp_path, cell, capsys)
    out = tmp_path / "rnn.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    session = ort.InferenceSession(str(out))
    x = torch.randint(0, 4, (BATCH, STEPS))
    memories, logits = eager(run, x)
    state = np.repeat(np.array(json.loads(meta["initial_state"]), dtype=np.float32)[None], BATCH, axis=0)
    assert int(meta["memory_size"]) == state.shape[1]
    for t in range(STEPS):
        state, out_logits = session.run(["next_state", "logits"], {"state": state, "token": x[:, t].numpy()})
        np.testing.assert_allclose(out_logits, logits[:, t].numpy(), atol=1e-5, rtol=1e-5)
    # the state itself, after 100 free-running steps: onnxruntime's fused kernels round differently, ~1e-7 a step
    np.testing.assert_allclose(state, memories[:, -1].numpy(), atol=1e-4, rtol=1e-4)


def test_export_refuses_bad_requests_in_one_line_and_overwrites_nothing(tmp_path, capsys):
    run = trained(tmp_path, "mlp", capsys)
    kept = tmp_path / "kept.pt"
    kept.write_bytes(b"mine")
    for argv, words in (
        (["--out", str(kept)], "exists"),
        (["--format", "tflite", "--out", str(tmp_path / "x")], "unknown --format"),
        (["--out", str(tmp_path / "no" / "x.pt")], "does not exist"),
    ):
        assert main(["export", str(run), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err
    assert kept.read_bytes() == b"mine"
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "y.pt")]) == 2


def test_export_never_touches_a_file_named_like_its_temporary_file(tmp_path, capsys):
    run = trained(tmp_path, "mlp", capsys)
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "new.pt.tmp").write_bytes(b"mine")  # the name a fixed temporary name would have used
    assert main(["export", str(run), "--out", str(folder / "new.pt")]) == 0
    assert (folder / "new.pt.tmp").read_bytes() == b"mine"
    assert sorted(p.name for p in folder.iterdir()) == ["new.pt", "new.pt.tmp"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "new.pt").stat().st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not mkstemp's 0600
    assert torch.jit.load(str(folder / "new.pt")).initial_state.shape == (1, 32)


def test_export_leaves_a_link_to_a_missing_file_in_place(tmp_path, capsys):
    run = trained(tmp_path, "mlp", capsys)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert main(["export", str(run), "--out", str(tmp_path / "dangling")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "link to a missing file" in err
    assert os.readlink(tmp_path / "dangling") == str(tmp_path / "nowhere") and not (tmp_path / "nowhere").exists()
