"""A user's own cell (tests/fixtures/gated_cell.py, which imports nothing of smtrnn) through every method, eval,
sample, labels and checkpoints; and the one-line refusals when it cannot be had."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from smtrnn.checkpoint import CONFIG_FILE, load_model
from smtrnn.cli import main
from smtrnn.config import validate
from smtrnn.errors import ConfigError
from smtrnn.layers import rms_normalize
from smtrnn.trainer import Trainer
from support import debug_config

FIXTURE = Path(__file__).parent / "fixtures" / "gated_cell.py"
CELL = f"{FIXTURE}:GatedCell"
TRAIN = ["train", "--preset", "debug", "--task", "retrieval", "--steps", "4", "--quiet", "--device", "cpu"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("method", ["smt", "smt+dmt", "bptt"])
def test_a_users_cell_trains_evaluates_samples_and_reloads(method, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, *TRAIN, "--method", method, "--cell", CELL, "--set",
                           'rnn.cell_args={"hidden": 8}', "--out", run)
    assert code == 0, err
    recorded = json.loads((run / CONFIG_FILE).read_text())["config"]["rnn"]
    assert recorded["cell"] == CELL and recorded["cell_args"] == {"hidden": 8}
    cfg, model = load_model(run)
    assert type(model.rnn.cell.inner).__name__ == "GatedCell" and model.rnn.cell.inner.net[0].out_features == 8
    assert run_cli(capsys, "eval", run, "--json", "--no-diagnostics", "--batches", 1, "--device", "cpu")[0] == 0
    code, out, _ = run_cli(capsys, "sample", run, "--prompt", "1,2", "--length", 3, "--device", "cpu")
    assert code == 0 and len(out.split()) == 3


def test_the_cells_states_stay_on_the_sphere_smt_needs():
    cfg = debug_config("retrieval", "smt", rnn__cell=CELL)
    model = Trainer(cfg, "/nonexistent-never-written", show_progress=False).model
    memories, _ = model.rnn.rollout(torch.randint(0, 4, (3, 6)))
    tokens = memories.unflatten(-1, (cfg.memory.tokens, cfg.memory.width))
    torch.testing.assert_close(tokens, rms_normalize(tokens))


def test_labels_then_train_a_users_cell(tmp_path, capsys):
    teacher, store = tmp_path / "teacher", tmp_path / "labels"
    assert run_cli(capsys, *TRAIN, "--out", teacher)[0] == 0
    assert run_cli(capsys, "label", "--teacher", teacher, "--out", store, "--sequences", 16, "--quiet",
                   "--device", "cpu")[0] == 0
    code, _, err = run_cli(capsys, "train", "--labels", store, "--cell", CELL, "--steps", 3, "--quiet",
                           "--device", "cpu", "--out", tmp_path / "fit")
    assert code == 0, err


def test_the_python_api_takes_the_class_itself(tmp_path):
    import importlib.util

    from smtrnn.user_cell import use_cell

    spec = importlib.util.spec_from_file_location("gated_cell_fixture", FIXTURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = debug_config("retrieval", "smt", steps=2)
    with pytest.raises(ConfigError, match="gated_cell_fixture"):  # a class its recorded name cannot lead back to
        use_cell(cfg, module.GatedCell, hidden=4)
    import sys

    sys.path.insert(0, str(FIXTURE.parent))
    try:
        from gated_cell import GatedCell

        use_cell(cfg, GatedCell, hidden=4)
        assert cfg.rnn.cell == "gated_cell:GatedCell" and cfg.rnn.cell_args == {"hidden": 4}
        Trainer(cfg, tmp_path / "run", show_progress=False).run()
        assert type(load_model(tmp_path / "run")[1].rnn.cell.inner) is GatedCell
    finally:
        sys.path.remove(str(FIXTURE.parent))


def test_a_checkpoint_whose_cell_changed_or_went_is_refused_in_one_line(tmp_path, capsys):
    local = tmp_path / "gated_cell.py"
    shutil.copy(FIXTURE, local)
    run = tmp_path / "run"
    assert run_cli(capsys, *TRAIN, "--cell", f"{local}:GatedCell", "--out", run)[0] == 0
    local.write_text(local.read_text().replace("nn.Tanh(), nn.Linear(hidden, 2 * size)",
                                               "nn.Tanh(), nn.Linear(hidden, hidden), nn.Linear(hidden, 2 * size)"))
    code, _, err = run_cli(capsys, "eval", run, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and "does not match its config" in err
    local.unlink()
    code, _, err = run_cli(capsys, "eval", run, "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and f"no file {local}" in err


@pytest.mark.parametrize("cell, args, words", [
    ("no_such_module_anywhere:Cell", "{}", "cannot import cell 'no_such_module_anywhere:Cell'"),
    (f"{FIXTURE}:Nope", "{}", "has no nn.Module class Nope"),
    (CELL, '{"depth": 3}', "cannot be built with"),
    (f"{FIXTURE}:WrongShape", "{}", "returned a memory of shape"),
    ("mlp", '{"hidden": 3}', "the built-in 'mlp' takes none"),
    ("rwkv", "{}", "unknown rnn.cell 'rwkv'"),
])
def test_a_cell_that_cannot_be_had_is_one_line(cell, args, words, tmp_path, capsys):
    code, _, err = run_cli(capsys, *TRAIN, "--cell", cell, "--set", f"rnn.cell_args={args}", "--out", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "r" / CONFIG_FILE).exists()


def test_validate_accepts_a_user_cell_name_without_importing_it():
    validate(debug_config("retrieval", "smt", rnn__cell="somewhere.not_installed:Cell"))  # no I/O in validate
