"""One config path for train, compare and demo: preset, then config file, then explicit fields, then --set."""

from __future__ import annotations

import pytest

from smtrnn.cli import build_config, make_parser
from smtrnn.errors import ConfigError
from smtrnn.presets import make_preset
from smtrnn.settings import load_config_file, make_config, with_settings


def test_each_layer_overrides_the_one_before():
    base = make_preset("small", "retrieval")
    file_data = {"optim": {"lr": 0.002, "batch_size": 8}, "rnn": {"hidden": 96}}
    cfg = make_config(
        "small", "retrieval", file_data=file_data, fields={"optim.lr": 0.004, "rnn.cell": None}, sets=["optim.lr=0.005"]
    )
    assert cfg.optim.lr == 0.005  # --set over the flag over the file
    assert cfg.optim.batch_size == 8 and cfg.rnn.hidden == 96  # the file over the preset
    assert cfg.rnn.cell == base.rnn.cell  # a flag left unset (None) changes nothing


def test_the_task_comes_from_the_config_file_when_not_named():
    assert make_config("small", None, file_data={"task": {"name": "parity"}}).task.name == "parity"
    assert make_config("small", None).task.name == "retrieval"


def test_train_and_compare_build_the_same_config_from_the_same_choices(tmp_path):
    """`smtrnn train` flags and `smtrnn compare`'s base go through make_config: the recipe reads --set task.params
    in both."""
    argv = ["--task", "delayed_recall", "--preset", "recipe", "--set", 'task.params={"lag": 5}']
    train = build_config(make_parser().parse_args(["train", *argv, "--out", str(tmp_path / "r")]))
    compare = make_config("recipe", "delayed_recall", sets=['task.params={"lag": 5}'])
    assert train.teacher == compare.teacher and train.teacher.future_len == 6 and train.memory == compare.memory


def test_memory_size_and_data_are_checked_in_one_line():
    with pytest.raises(ConfigError, match="--memory-size must be a positive multiple of memory tokens K=1, got 0"):
        with_settings(make_preset("small", "retrieval"), memory_size=0)
    with pytest.raises(ConfigError, match="--data applies to the tasks"):
        with_settings(make_preset("small", "retrieval"), data="corpus.txt")


def test_a_config_file_that_is_not_a_mapping_is_one_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config_file(path)
