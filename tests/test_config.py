"""RunConfig: `validate` rejects inconsistent runs with a message naming the field; configs round-trip through
plain dicts (and JSON); `apply_overrides` coerces CLI strings to each field's type and names what it refuses."""

from __future__ import annotations

import json

import pytest

from smtrnn.config import RunConfig, apply_overrides, validate
from smtrnn.data.tasks import TASKS
from smtrnn.errors import ConfigError
from smtrnn.presets import PRESETS, debug


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_preset_is_valid_for_every_task(preset, task):
    validate(PRESETS[preset](task))


INVALID = {
    "teacher heads do not divide the width": ({"teacher.heads": 3}, "teacher.heads"),
    "teacher head size odd": ({"teacher.width": 30, "teacher.heads": 2}, "teacher.heads"),
    "rnn heads do not divide the memory width": ({"rnn.cell": "transformer", "rnn.heads": 3}, "rnn.heads"),
    "negative dynamics weight": ({"smt.dynamics_weight": -0.1}, "smt.dynamics_weight"),
    "negative decoder weight": ({"smt.decoder_weight": -1.0}, "smt.decoder_weight"),
    "teacher warm-up of the whole run": ({"smt.teacher_alone": 1.0}, "smt.teacher_alone"),
    "staged without a warm-up": ({"smt.schedule": "staged", "smt.teacher_alone": 0.0}, "smt.teacher_alone > 0"),
    "unknown smt schedule": ({"smt.schedule": "later"}, "smt.schedule"),
    "lstm with an odd memory size": ({"rnn.cell": "lstm", "memory.tokens": 1, "memory.width": 15}, "lstm"),
    "zero steps": ({"train.steps": 0}, "train.steps"),
    "zero memory tokens": ({"memory.tokens": 0}, "memory.tokens"),
    "negative truncation": ({"bptt.truncation": -1}, "bptt.truncation"),
    "beta2 of 1": ({"optim.beta2": 1.0}, "optim.beta2"),
    "unknown schedule": ({"optim.schedule": "linear"}, "optim.schedule"),
    "unknown cell": ({"rnn.cell": "rwkv"}, "rwkv"),
    "unknown method": ({"train.method": "dmt"}, "dmt"),
    "zero sequence length": ({"task.seq_len": 0}, "task.seq_len"),
    "one transition with a staged schedule": ({"smt.transitions": "one"}, "transitions='one'"),
}


@pytest.mark.parametrize("overrides, field", INVALID.values(), ids=INVALID.keys())
def test_validate_names_the_field(overrides, field):
    cfg = apply_overrides(debug("retrieval"), overrides)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(cfg)


def test_lstm_with_an_even_memory_size_is_valid():
    """The positive twin of the odd-size case: the rule is about parity, not about the lstm."""
    validate(apply_overrides(debug("retrieval"), {"rnn.cell": "lstm", "memory.tokens": 1, "memory.width": 16}))


def nondefault() -> RunConfig:
    return apply_overrides(
        RunConfig(),
        {
            "task.name": "delayed_recall",
            "task.seq_len": 33,
            "task.params": {"lag": 3, "num_symbols": 5},
            "memory.tokens": 3,
            "rnn.cell": "gru",
            "smt.schedule": "joint-detached",
            "smt.teacher_alone": 0.4,
            "optim.lr": 2e-4,
            "optim.schedule": "cosine",
            "train.max_seconds": 12.5,
            "train.seed": 9,
        },
    )


def test_round_trip_through_a_dict():
    cfg = nondefault()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_round_trip_through_json():
    cfg = nondefault()
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_from_dict_of_a_partial_config_keeps_the_other_defaults():
    cfg = RunConfig.from_dict({"rnn": {"cell": "elman"}})
    expected = RunConfig()
    expected.rnn.cell = "elman"
    assert cfg == expected


def test_from_dict_with_an_unknown_field_names_it():
    with pytest.raises(ConfigError, match=r"rnn\.nope"):
        RunConfig.from_dict({"rnn": {"nope": 1}})


@pytest.mark.parametrize(
    "text, value",
    [
        ("true", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
    ],
)
def test_bool_strings(text, value):
    cfg = RunConfig()
    cfg.dmt.teacher_learns = not value
    apply_overrides(cfg, {"dmt.teacher_learns": text})
    assert cfg.dmt.teacher_learns is value


COERCED = [
    ("train.steps", "12", 12),
    ("train.steps", 12.0, 12),
    ("optim.lr", "3e-4", 3e-4),
    ("optim.lr", "1", 1.0),
    ("optim.lr", 1, 1.0),
    ("rnn.cell", "gru", "gru"),
    ("task.params", '{"lag": 1, "num_symbols": 3}', {"lag": 1, "num_symbols": 3}),
    ("task.params", {"lag": 2}, {"lag": 2}),
]


@pytest.mark.parametrize("name, raw, value", COERCED)
def test_overrides_take_the_type_of_the_field(name, raw, value):
    cfg = apply_overrides(RunConfig(), {name: raw})
    section, field = name.split(".")
    got = getattr(getattr(cfg, section), field)
    assert got == value and type(got) is type(value)


REFUSED = [
    ("dmt.teacher_learns", "maybe"),
    ("train.steps", "1.5"),
    ("train.steps", 2.5),
    ("train.steps", "ten"),
    ("optim.lr", "fast"),
    ("task.params", "{lag: 1}"),
    ("task.params", "[1, 2]"),
    ("train.steps", True),  # YAML reads `steps: yes` as True; it must not become 1 step
    ("optim.lr", False),
]


@pytest.mark.parametrize("name, raw", REFUSED)
def test_overrides_refuse_values_of_the_wrong_type(name, raw):
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        apply_overrides(RunConfig(), {name: raw})


@pytest.mark.parametrize("name", ["rnn.nope", "nope.cell", "rnn", "to_dict.x"])
def test_overrides_of_unknown_fields_name_them(name):
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        apply_overrides(RunConfig(), {name: "1"})


def test_task_params_override_replaces_rather_than_aliases():
    """Two configs built from one dict must not share a mutable task.params."""
    params = {"lag": 1}
    a = apply_overrides(RunConfig(), {"task.params": params})
    params["lag"] = 5
    assert a.task.params == {"lag": 1}


# --- typed fields, their documentation, and configs written by an earlier smtrnn --------------------------------


def test_the_task_is_checked_where_it_is_built_not_by_validate():
    from smtrnn.data.tasks import build_task

    cfg = apply_overrides(debug("retrieval"), {"task.seq_len": 2})
    validate(cfg)  # no task is built: validating a config does no I/O
    with pytest.raises(ConfigError, match=r"task\.seq_len >= "):
        build_task(cfg)
    text = apply_overrides(debug("text"), {"task.params": {"path": "/nonexistent/corpus.txt"}})
    validate(text)  # a missing data file is found when the task is built, not here
    with pytest.raises(Exception, match="corpus.txt"):
        build_task(text)


def test_a_section_checks_its_fields_when_it_is_made():
    from smtrnn.config import OptimConfig, SMTConfig

    with pytest.raises(ConfigError, match=r"optim\.beta2 must be in \[0, 1\)"):
        OptimConfig(beta2=1.5)
    with pytest.raises(ConfigError, match=r"smt\.schedule"):
        SMTConfig(schedule="sometimes")


def test_every_field_is_documented_and_every_choice_is_typed():
    import dataclasses
    import typing

    from smtrnn import config

    for name in config.SECTIONS:
        section = type(getattr(RunConfig(), name))
        docs = config.field_docs(section)
        missing = [f.name for f in dataclasses.fields(section) if not docs.get(f.name)]
        assert not missing, f"{name}: {missing}"
    hints = typing.get_type_hints(config.RunConfig().smt.__class__)
    assert typing.get_args(hints["schedule"]) == ("joint", "joint-detached", "staged")
    assert typing.get_args(typing.get_type_hints(config.TrainConfig)["method"]) == config.METHODS


def test_train_help_lists_the_fields_with_their_documentation(capsys):
    from smtrnn.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert 'smt.schedule = "joint"' in out and "joint-detached: the same" in out
    assert "--seq-len SEQ_LEN     task.seq_len: T, the training sequence length." in out


def test_a_stored_config_with_a_field_of_an_earlier_version_is_refused_by_name():
    """No compatibility shims before 1.0: smt.teacher_warmup (now smt.teacher_alone) is an unknown field, named."""
    data = RunConfig().to_dict()
    data["smt"]["teacher_warmup"] = 0.25
    with pytest.raises(ConfigError, match="unknown config field 'smt.teacher_warmup'"):
        RunConfig.from_dict(data)


def test_a_stored_config_with_a_removed_lever_at_its_neutral_value_still_loads():
    """Runs saved before a lever was removed load; one that used the lever is refused naming the field."""
    stored = RunConfig().to_dict()
    stored["smt"] |= {"unroll_steps": 0, "unroll_weight": 1.0, "unroll_starts": 32}
    stored["teacher"]["future_weight"] = 1.0
    assert RunConfig.from_dict(stored) == RunConfig()
    stored["smt"]["unroll_steps"] = 3
    with pytest.raises(ConfigError, match="smt.unroll_steps was removed"):
        RunConfig.from_dict(stored)
