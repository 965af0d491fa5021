"""A user's own cell (tests/fixtures/gated_cell.py, which imports nothing of smtrnn) through every method, eval,
sample, labels and checkpoints; and the one-line refusals when it cannot be had."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support import debug_config

from smtrnn.checkpoint import CONFIG_FILE, checkpoint_dir, load_model
from smtrnn.cli import main
from smtrnn.config import validate
from smtrnn.errors import ConfigError
from smtrnn.layers import rms_normalize
from smtrnn.trainer import Trainer

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
    code, _, err = run_cli(
        capsys, *TRAIN, "--method", method, "--cell", CELL, "--set", 'rnn.cell_args={"hidden": 8}', "--out", run
    )
    assert code == 0, err
    recorded = json.loads((checkpoint_dir(run) / CONFIG_FILE).read_text())["config"]["rnn"]
    assert recorded["cell"] == CELL and recorded["cell_args"] == {"hidden": 8}
    cfg, model = load_model(run, trust_cell_code=True)
    assert type(model.rnn.cell.inner).__name__ == "GatedCell" and model.rnn.cell.inner.net[0].out_features == 8
    assert (
        run_cli(
            capsys, "eval", run, "--json", "--no-diagnostics", "--batches", 1, "--device", "cpu", "--trust-cell-code"
        )[0]
        == 0
    )
    code, out, _ = run_cli(
        capsys, "sample", run, "--prompt", "1,2", "--length", 3, "--device", "cpu", "--trust-cell-code"
    )
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
    assert (
        run_cli(capsys, "label", "--teacher", teacher, "--out", store, "--sequences", 16, "--quiet", "--device", "cpu")[
            0
        ]
        == 0
    )
    code, _, err = run_cli(
        capsys,
        "train",
        "--labels",
        store,
        "--cell",
        CELL,
        "--steps",
        3,
        "--quiet",
        "--device",
        "cpu",
        "--out",
        tmp_path / "fit",
    )
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
        assert type(load_model(tmp_path / "run", trust_cell_code=True)[1].rnn.cell.inner) is GatedCell
    finally:
        sys.path.remove(str(FIXTURE.parent))


def test_a_checkpoint_whose_cell_changed_or_went_is_refused_in_one_line(tmp_path, capsys):
    local = tmp_path / "gated_cell.py"
    shutil.copy(FIXTURE, local)
    run = tmp_path / "run"
    assert run_cli(capsys, *TRAIN, "--cell", f"{local}:GatedCell", "--out", run)[0] == 0
    local.write_text(
        local.read_text().replace(
            "nn.Tanh(), nn.Linear(hidden, 2 * size)",
            "nn.Tanh(), nn.Linear(hidden, hidden), nn.Linear(hidden, 2 * size)",
        )
    )
    code, _, err = run_cli(capsys, "eval", run, "--device", "cpu", "--trust-cell-code")
    assert code == 2 and err.count("\n") == 1 and "does not match its config" in err
    local.unlink()
    code, _, err = run_cli(capsys, "eval", run, "--device", "cpu", "--trust-cell-code")
    assert code == 2 and err.count("\n") == 1 and f"no file {local}" in err


@pytest.mark.parametrize(
    "cell, args, words",
    [
        ("no_such_module_anywhere:Cell", "{}", "cannot import cell 'no_such_module_anywhere:Cell'"),
        (f"{FIXTURE}:Nope", "{}", "has no nn.Module class Nope"),
        (CELL, '{"depth": 3}', "cannot be built with"),
        (
            f"{FIXTURE}:WrongShape",
            "{}",
            ", 3), dtype float32; the protocol needs a floating tensor of its input memory's shape (",
        ),
        (f"{FIXTURE}:ReturnsPair", "{}", f"cell {FIXTURE}:ReturnsPair returned a tuple of 2 items (Tensor, Tensor);"),
        (f"{FIXTURE}:ReturnsNone", "{}", f"cell {FIXTURE}:ReturnsNone returned None;"),
        (f"{FIXTURE}:ReturnsIds", "{}", ", 32), dtype int64; the protocol needs a floating tensor"),
        ("mlp", '{"hidden": 3}', "the built-in 'mlp' takes none"),
        ("rwkv", "{}", "unknown rnn.cell 'rwkv'"),
    ],
)
def test_a_cell_that_cannot_be_had_is_one_line(cell, args, words, tmp_path, capsys):
    code, _, err = run_cli(capsys, *TRAIN, "--cell", cell, "--set", f"rnn.cell_args={args}", "--out", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "r").exists()  # a run that failed at its first step leaves no folder behind


def test_validate_accepts_a_user_cell_name_without_importing_it():
    validate(debug_config("retrieval", "smt", rnn__cell="somewhere.not_installed:Cell"))  # no I/O in validate


RAISING_CELL = """import sys

import torch
from torch import nn

{top}


class Raising(nn.Module):
    def __init__(self, tokens, width, embed):
        super().__init__()
        self.net = nn.Linear(tokens * width + embed, tokens * width)
        {init}

    def forward(self, m, e):
        {forward}
        return self.net(torch.cat([m, e], dim=-1))
"""
PHASES = {"top": "while importing it", "init": "in __init__", "forward": "in forward"}


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(
    "statement, what",
    [
        ("raise ValueError('the cell is broken')", "raised ValueError {phase}: the cell is broken"),
        ("sys.exit(0)", "called sys.exit(0) {phase}"),
    ],
)
def test_a_cell_that_raises_is_named_then_its_own_traceback(phase, statement, what, tmp_path, capsys):
    """The user's error as theirs: a header naming the cell, then the traceback from the user's own frame (none of
    smtrnn's or torch's); exit 2, and no run folder left. sys.exit(0) in a cell is an error too, not a success."""
    cell = tmp_path / "raising.py"
    source = RAISING_CELL.format(**{name: statement if name == phase else "pass" for name in PHASES})
    cell.write_text(source)
    line = next(i for i, text in enumerate(source.splitlines(), 1) if statement in text)
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, *TRAIN, "--cell", f"{cell}:Raising", "--out", out)
    lines = err.splitlines()
    assert code == 2, err
    assert lines[0] == f"smtrnn: error: cell {cell}:Raising {what.format(phase=PHASES[phase])}", err
    assert lines[1] == "Traceback (most recent call last):" and lines[2].startswith(f'  File "{cell}", line {line}')
    assert str(Path(main.__code__.co_filename).parent) not in err and str(Path(torch.__file__).parent) not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "statement, code, words",
    [
        ("raise MemoryError()", 2, "smtrnn: error: out of memory"),
        ("raise KeyboardInterrupt", 130, "smtrnn: interrupted"),
    ],
)
def test_out_of_memory_and_an_interrupt_in_a_cell_stay_what_they_are(statement, code, words, tmp_path, capsys):
    cell = tmp_path / "raising.py"
    cell.write_text(RAISING_CELL.format(top="pass", init="pass", forward=statement))
    result = run_cli(capsys, *TRAIN, "--cell", f"{cell}:Raising", "--out", tmp_path / "r")
    assert result[0] == code and result[2].startswith(words) and "Traceback" not in result[2], result[2]
