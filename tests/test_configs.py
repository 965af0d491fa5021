"""configs/: each file is one whole RunConfig that reproduces a README result, with the command that made it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from smtrnn.cli import main
from smtrnn.config import validate
from smtrnn.settings import load_config_file, make_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FILES = sorted(CONFIGS.glob("*.json"))


def made_by() -> dict[str, list[str]]:
    """File name -> the `smtrnn train` arguments that configs/README.md says made it."""
    commands = {}
    for line in (CONFIGS / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 3 and cells[1].startswith("`") and cells[1].endswith(".json`"):
            commands[cells[1].strip("`")] = shlex.split(cells[3].strip("`"))[1:]  # after `smtrnn`
    return commands


def test_every_config_file_is_listed_with_the_command_that_made_it():
    assert FILES and sorted(made_by()) == [path.name for path in FILES]


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_a_config_file_is_whole_and_is_what_its_command_prints(path, capsys):
    data = load_config_file(path)
    for preset in ("debug", "small"):  # a whole config: the preset underneath changes nothing
        cfg = make_config(preset, None, file_data=data)
        validate(cfg)
        assert cfg.to_dict() == data
    assert main(made_by()[path.name]) == 0
    assert json.loads(capsys.readouterr().out) == data


def test_train_without_out_or_print_config_is_one_line(capsys):
    assert main(["train", "--task", "retrieval"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "smtrnn: error: --out is required: the run directory (or --print-config to see the config alone)"


def test_print_config_refuses_a_config_that_would_not_train(capsys):
    assert main(["train", "--task", "retrieval", "--set", "bptt.fraction=1.5", "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("smtrnn: error: bptt.fraction must be in (0, 1)")


def test_print_config_into_a_reader_that_stops_early_says_nothing():
    import subprocess
    import sys

    command = [sys.executable, "-m", "smtrnn", "train", "--task", "retrieval", "--print-config"]
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()  # like `| head -0`: the pipe is gone before the config is printed
    assert reader.wait(timeout=120) == 1 and reader.stderr.read() == b""
