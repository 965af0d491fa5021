"""A run directory is data, but a user's cell it names is code: loading such a run (eval, sample, export, label,
train --init/--labels, load_model) imports it only with --trust-cell-code (trust_cell_code=True), and without it is
refused in one line that names the file and the sha256 recorded at training. The planted cell's top-level code writes
a marker file, so each test sees whether the file was run."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from reliability_support import TRAIN, one_line, run_cli

from smtrnn.checkpoint import CONFIG_FILE, checkpoint_dir, load_model
from smtrnn.cli import main
from smtrnn.errors import CheckpointError

PLANTED = """from pathlib import Path

import torch
from torch import nn

Path({marker!r}).write_text("imported")  # top-level code: it runs whenever this file is imported


class Planted(nn.Module):
    def __init__(self, tokens, width, embed):
        super().__init__()
        self.net = nn.Linear(tokens * width + embed, tokens * width)

    def forward(self, m, e):
        return self.net(torch.cat([m, e], dim=-1))
"""
STEPS = ["--steps", "2"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """A run trained with the planted cell (on purpose, by --cell), and a label store of it: {cell, marker, sha256,
    run, labels}. The marker is removed before each test (`no_marker`)."""
    root = tmp_path_factory.mktemp("planted")
    marker, cell = root / "marker", root / "planted.py"
    cell.write_text(PLANTED.format(marker=str(marker)))
    run, labels = root / "run", root / "labels"
    assert main([*TRAIN, *STEPS, "--cell", f"{cell}:Planted", "--out", str(run)]) == 0
    assert (
        main(
            [
                "label",
                "--teacher",
                str(run),
                "--out",
                str(labels),
                "--sequences",
                "4",
                "--quiet",
                "--device",
                "cpu",
                "--trust-cell-code",
            ]
        )
        == 0
    )
    return {
        "cell": cell,
        "marker": marker,
        "sha256": hashlib.sha256(cell.read_bytes()).hexdigest(),
        "run": run,
        "labels": labels,
    }


@pytest.fixture(autouse=True)
def no_marker(request):
    if "planted" in request.fixturenames:
        request.getfixturevalue("planted")["marker"].unlink(missing_ok=True)


LOADERS = {
    "eval": lambda p, out: ["eval", p["run"], "--batches", 1, "--no-diagnostics", "--device", "cpu"],
    "sample": lambda p, out: ["sample", p["run"], "--prompt", "1", "--length", 2, "--device", "cpu"],
    "export": lambda p, out: ["export", p["run"], "--format", "torchscript", "--out", out / "step.pt"],
    "label": lambda p, out: [
        "label",
        "--teacher",
        p["run"],
        "--out",
        out / "labels",
        "--sequences",
        4,
        "--quiet",
        "--device",
        "cpu",
    ],
    "train --init": lambda p, out: [*TRAIN, *STEPS, "--method", "dmt", "--init", p["run"], "--out", out / "dmt"],
    "train --labels": lambda p, out: [*TRAIN, *STEPS, "--labels", p["labels"], "--out", out / "fit"],
}


def test_training_records_the_cells_file_and_sha256(planted):
    recorded = json.loads((checkpoint_dir(planted["run"]) / CONFIG_FILE).read_text())["cell_code"]
    assert recorded == {"file": str(planted["cell"].resolve()), "sha256": planted["sha256"]}
    assert json.loads((planted["labels"] / "manifest.json").read_text())["cell_code"] == recorded


@pytest.mark.parametrize("command", LOADERS)
def test_loading_a_run_with_a_users_cell_needs_trust(command, planted, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = LOADERS[command](planted, out)
    code, _, err = run_cli(capsys, *argv)
    line = one_line(err)
    assert code == 2 and not planted["marker"].exists(), err
    assert line.startswith("smtrnn: error: ") and f"{planted['cell']}:Planted" in line, line
    assert f"sha256 {planted['sha256']} at training" in line and "--trust-cell-code" in line
    assert not any(out.iterdir())  # refused before anything was written
    code, _, err = run_cli(capsys, *argv, "--trust-cell-code")
    assert code == 0, err
    assert planted["marker"].exists()


def test_load_model_needs_trust_cell_code(planted):
    with pytest.raises(CheckpointError, match=r"trust_cell_code=True") as refused:
        load_model(planted["run"])
    assert planted["sha256"] in str(refused.value) and not planted["marker"].exists()
    load_model(planted["run"], trust_cell_code=True)
    assert planted["marker"].exists()


def test_a_cell_named_on_the_command_line_needs_no_flag(planted, tmp_path, capsys):
    """--cell names the user's own code on purpose: --init and --resume with it train as before."""
    cell = f"{planted['cell']}:Planted"
    code, _, err = run_cli(
        capsys, *TRAIN, *STEPS, "--method", "dmt", "--init", planted["run"], "--cell", cell, "--out", tmp_path / "dmt"
    )
    assert code == 0, err
    resumed = Path(shutil.copytree(planted["run"], tmp_path / "run"))
    code, _, err = run_cli(capsys, *TRAIN, "--steps", 3, "--cell", cell, "--out", resumed, "--resume")
    assert code == 0, err


def test_a_run_without_a_record_says_none_was_recorded(planted, tmp_path, capsys):
    run = Path(shutil.copytree(planted["run"], tmp_path / "run"))
    meta = json.loads((checkpoint_dir(run) / CONFIG_FILE).read_text())
    del meta["cell_code"]
    (checkpoint_dir(run) / CONFIG_FILE).write_text(json.dumps(meta))
    code, _, err = run_cli(capsys, "eval", run, "--device", "cpu")
    assert code == 2 and "no sha256 recorded at training" in one_line(err) and not planted["marker"].exists()


@pytest.mark.parametrize("record", [None, {"file": "/x\nspoofed", "sha256": "0" * 64}])
def test_a_config_edited_to_import_a_module_is_refused_unimported(record, smt_run, tmp_path, capsys):
    """`this:C` would print the Zen of Python on import; a crafted record cannot break the one line."""
    run = Path(shutil.copytree(smt_run[0], tmp_path / "run"))
    meta = json.loads((checkpoint_dir(run) / CONFIG_FILE).read_text())
    meta["config"]["rnn"]["cell"] = "this:C"
    if record is not None:
        meta["cell_code"] = record
    (checkpoint_dir(run) / CONFIG_FILE).write_text(json.dumps(meta))
    assert "this" not in sys.modules
    code, out, err = run_cli(capsys, "eval", run, "--device", "cpu")
    line = one_line(err)
    assert code == 2 and "this:C" in line and "imports module this" in line and out == ""
    assert "no sha256 recorded" in line if record is None else "/x\\nspoofed" in line
    with pytest.raises(CheckpointError, match="the cell is user code"):
        load_model(run)
    assert "this" not in sys.modules and "Beautiful is better than ugly" not in capsys.readouterr().out


def test_a_built_in_cell_needs_no_flag(smt_run, tmp_path, capsys):
    run = smt_run[0]
    load_model(run)
    assert run_cli(capsys, "eval", run, "--batches", 1, "--no-diagnostics", "--device", "cpu")[0] == 0
    code, _, err = run_cli(capsys, *TRAIN, *STEPS, "--method", "dmt", "--init", run, "--out", tmp_path / "dmt")
    assert code == 0, err


STUDY = ["compare", "--preset", "debug", "--lengths", "8", "--methods", "smt", "--seeds", "1", "--steps", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("latest", [False, True])
def test_a_cell_planted_in_a_shared_study_never_runs(latest, planted, tmp_path, capsys):
    """A study's run folder holding a result and a config that names the planted cell: scoring it at new lengths
    refuses it (no checkpoint; or a cell of user code not trusted: `smtrnn eval` scores it) and imports nothing."""
    study = tmp_path / "study"
    assert main([*STUDY, "--device", "cpu", "--out", str(study)]) == 0
    (run,) = (study / "runs").iterdir()
    config = checkpoint_dir(run) / CONFIG_FILE
    meta = json.loads(config.read_text())
    meta["config"]["rnn"]["cell"] = f"{planted['cell']}:Planted"
    config.write_text(json.dumps(meta))
    if not latest:
        (run / "latest").unlink()
    code, _, err = run_cli(capsys, *STUDY, "--device", "cpu", "--out", study, "--eval-lengths", 16)
    assert code == 2 and not planted["marker"].exists(), err
    assert ("--trust-cell-code" if latest else "no checkpoint") in err.splitlines()[-1]


@pytest.mark.slow
def test_a_stored_cell_is_scored_again_in_a_study_only_with_the_flag(planted, tmp_path, capsys):
    cell = f"{planted['cell']}:Planted"
    study = [*STUDY, "--cells", cell, "--device", "cpu", "--out", tmp_path / "study"]
    assert run_cli(capsys, *study)[0] == 0  # named on the command line: trained without the flag
    planted["marker"].unlink()
    code, _, err = run_cli(capsys, *study, "--eval-lengths", 16)
    assert code == 2 and "--trust-cell-code" in err.splitlines()[-1] and not planted["marker"].exists()
    code, _, err = run_cli(capsys, *study, "--eval-lengths", 16, "--trust-cell-code")
    assert code == 0 and planted["marker"].exists(), err


def test_an_untrusted_run_is_refused_before_its_data_is_opened(planted, tmp_path, capsys):
    run = Path(shutil.copytree(planted["run"], tmp_path / "run"))
    meta = json.loads((checkpoint_dir(run) / CONFIG_FILE).read_text())
    meta["config"]["task"] = {"name": "text", "seq_len": 16, "params": {"path": str(tmp_path / "nowhere")}}
    (checkpoint_dir(run) / CONFIG_FILE).write_text(json.dumps(meta))
    for argv in (["export", run, "--out", tmp_path / "step.pt"], ["eval", run, "--device", "cpu"]):
        code, _, err = run_cli(capsys, *argv)
        line = one_line(err)
        assert code == 2 and "the cell is user code" in line and "nowhere" not in line, line
