"""The recipe is a rule over what a task declares (memory_bits, target_lag, which positions carry targets), never a
table keyed by task name: a task the library has never seen gets it from its declarations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from smtrnn.cli import main
from smtrnn.config import MemoryConfig, RunConfig, TeacherConfig, validate
from smtrnn.data import tasks
from smtrnn.data.tasks import Task, make_task, register
from smtrnn.errors import ConfigError
from smtrnn.presets import (
    FAR_ANSWER_DMT_STEPS,
    FAST_LR,
    LAST_INPUT_WEIGHT,
    LAST_INPUTS,
    far_answers,
    long_range_base,
    memory_size,
    recipe,
    small,
    target_fraction,
    with_answers_ahead,
)
from smtrnn.teacher import Teacher


@dataclass(frozen=True)
class EveryStepLabelled(Task):
    """A user's task: predict the next of 5 random symbols at every step; declares nothing."""

    name: ClassVar[str] = "user_dense"

    @property
    def vocab_size(self) -> int:
        return 5

    def min_seq_len(self) -> int:
        return 2

    def _sample(self, batch_size, seq_len, generator):
        x = torch.randint(0, 5, (batch_size, seq_len), generator=generator)
        return x, torch.roll(x, -1, dims=1)


@dataclass(frozen=True)
class LastStepLabelled(Task):
    """A user's task with one target at the end, declaring that it needs 2 bits of memory."""

    name: ClassVar[str] = "user_sparse"

    @property
    def vocab_size(self) -> int:
        return 4

    def min_seq_len(self) -> int:
        return 2

    def memory_bits(self) -> float:
        return 2.0

    def _sample(self, batch_size, seq_len, generator):
        x = torch.randint(0, 4, (batch_size, seq_len), generator=generator)
        y = torch.full_like(x, -1)
        y[:, -1] = x[:, 0]
        return x, y


@pytest.fixture
def user_tasks():
    before = dict(tasks.REGISTRY)
    register({"user_dense": EveryStepLabelled, "user_sparse": LastStepLabelled})
    yield
    tasks.REGISTRY.clear()
    tasks.REGISTRY.update(before)


def test_a_task_with_targets_everywhere_gets_the_dense_teacher_without_an_entry(user_tasks):
    cfg = recipe("user_dense")
    assert (cfg.teacher.decoder, cfg.teacher.future_len, cfg.teacher.decoder_positions) == ("linear", 1, 0)
    assert cfg.optim.lr == FAST_LR and cfg.memory.size == small("user_dense").memory.size  # declares no bits
    validate(cfg)


def test_a_sparse_task_gets_the_long_range_recipe_sized_by_its_declared_bits(user_tasks):
    """One target at the end: the recipe's base (Z from the declared bits) with the far-answer part: the next-targets
    decoder for that one answer from every memory, the last-input head and k-step DMT."""
    cfg = recipe("user_sparse")
    assert cfg == with_answers_ahead(long_range_base("user_sparse")[0], 1)
    assert (cfg.teacher.decoder, cfg.teacher.future_len, cfg.teacher.decoder_positions) == ("next-targets", 1, 0)
    assert (cfg.teacher.last_input_weight, cfg.teacher.last_inputs) == (LAST_INPUT_WEIGHT, LAST_INPUTS)
    assert small("user_sparse").teacher.last_inputs == 1
    assert (
        cfg.dmt.grad_through_rollout_steps == FAR_ANSWER_DMT_STEPS > small("user_sparse").dmt.grad_through_rollout_steps
    )
    assert cfg.memory.size == 16 and cfg.optim.lr == small("user_sparse").optim.lr
    validate(cfg)


def test_the_rule_reads_the_tasks_properties_not_its_name():
    """The embedded text and images label every position: the dense teacher. delayed_recall's shift-register lever
    comes from its lag; stack, whose targets come every few steps, keeps the base; the tasks whose answers lie
    far from some positions (retrieval, copy, assoc_recall) get the far-answer part, the next Tf answers being as
    many as a row holds."""
    for task in ("text", "pixels", "parity", "modular_icl"):
        assert recipe(task, {"max_bytes": 10_000} if task == "text" else {}).teacher.decoder_positions == 0
    for task in ("delayed_recall", "stack"):
        assert recipe(task) == long_range_base(task)[0]
    for task, seq_len, answers in (
        ("retrieval", 256, 1),
        ("assoc_recall", 64, 2),
        ("copy", 64, 31),
        ("copy", 256, 127),
    ):
        cfg = recipe(task, seq_len=seq_len)
        expected, _ = long_range_base(task, seq_len=seq_len)
        assert cfg == with_answers_ahead(expected, answers)
        assert (cfg.teacher.decoder, cfg.teacher.future_len, cfg.task.seq_len) == ("next-targets", answers, seq_len)
    recall = recipe("delayed_recall", {"lag": 4})
    assert (recall.rnn.cell, recall.teacher.decoder, recall.teacher.future_len) == ("mlp-linear", "linear", 5)
    assert recall.memory.size == 16  # 4 symbols of 3 bits


def test_far_answers_counts_a_rows_targets_where_a_quarter_of_it_passes_without_one(user_tasks):
    assert far_answers(make_task("user_sparse"), 64) == 1
    assert far_answers(make_task("user_dense"), 64) == 0
    assert far_answers(make_task("stack"), 256) == 0
    assert far_answers(make_task("copy"), 64) == 31


def test_memory_size_is_the_next_power_of_two_of_the_bits_with_a_floor():
    assert [memory_size(b, 128) for b in (0.5, 4, 17, 48, 64, 65)] == [16, 16, 32, 64, 64, 128]
    assert memory_size(None, 128) == 128


def test_target_fraction_counts_positions_with_targets(user_tasks):
    assert target_fraction(make_task("user_dense"), 64) == 1.0
    assert target_fraction(make_task("user_sparse"), 64) == pytest.approx(1 / 64)


def test_decoder_positions_zero_trains_every_position_once():
    teacher = Teacher(
        MemoryConfig(tokens=1, width=8),
        TeacherConfig(width=16, depth=1, heads=2, decoder="linear", future_len=1, decoder_positions=0),
        5,
    )
    y = torch.zeros(3, 7, dtype=torch.long)
    assert torch.equal(teacher.sample_positions(y), torch.arange(7).expand(3, 7))
    sparse = Teacher(
        MemoryConfig(tokens=1, width=8), TeacherConfig(width=16, depth=1, heads=2, future_len=1, decoder_positions=2), 5
    )
    assert sparse.sample_positions(y).shape == (3, 2)


def test_the_cli_recipe_reads_the_tasks_final_parameters(capsys):
    """`--set task.params` comes after the preset; the rule still sees it (delayed_recall's lag sets Tf)."""
    code = main(
        [
            "train",
            "--preset",
            "recipe",
            "--task",
            "delayed_recall",
            "--set",
            'task.params={"lag": 3}',
            "--seq-len",
            "8",
            "--print-config",
        ]
    )
    assert code == 0
    config = json.loads(capsys.readouterr().out)
    validate(RunConfig.from_dict(config))
    assert config["teacher"]["future_len"] == 4 and config["memory"]["width"] == 16


def test_decoder_horizon_below_one_is_one_line(capsys, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--preset", "debug", "--set", "teacher.future_len=0", "--out", str(out)])
    assert code == 2 and "teacher.future_len must be > 0" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ConfigError, match="teacher.decoder_positions must be >= 0"):
        TeacherConfig(decoder_positions=-1).check()
