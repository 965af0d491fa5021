"""Checkpoints are plain data that round-trip exactly, refuse anything damaged or foreign with a CheckpointError,
never unpickle code, never overwrite a run by accident, and resume a run where it stopped."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from support import debug_config, snapshot, state_dicts_equal

from smtrnn.checkpoint import (
    CONFIG_FILE,
    METRICS_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    checkpoint_dir,
    load_model,
    load_trainer_state,
    load_weights,
)
from smtrnn.errors import CheckpointError
from smtrnn.model import Model
from smtrnn.trainer import Trainer


def probe(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (3, 12), generator=torch.Generator().manual_seed(7))


# --- round trip -------------------------------------------------------------------------------------------


def test_load_model_restores_the_trained_weights_exactly(smt_run):
    run_dir, trainer = smt_run
    cfg, model = load_model(run_dir)
    assert cfg.to_dict() == trainer.cfg.to_dict()
    assert state_dicts_equal(model.state_dict(), trainer.model.state_dict())


def test_loaded_model_computes_the_same_outputs(smt_run):
    run_dir, trainer = smt_run
    _, model = load_model(run_dir)
    x = probe(model.vocab_size)
    for got, want in zip(model.rnn.rollout(x), trainer.model.rnn.rollout(x)):
        torch.testing.assert_close(got, want, atol=0, rtol=0)
    torch.testing.assert_close(model.teacher.encode(x), trainer.model.teacher.encode(x), atol=0, rtol=0)


def test_a_fresh_model_differs_until_loaded(smt_run):
    """Guards the round-trip tests above against passing because every model starts out the same."""
    run_dir, trainer = smt_run
    torch.manual_seed(trainer.cfg.train.seed + 1)
    fresh = Model.for_run(trainer.cfg, trainer.model.vocab_size)
    x = probe(fresh.vocab_size)
    assert not state_dicts_equal(fresh.state_dict(), trainer.model.state_dict())
    assert not torch.allclose(fresh.rnn.rollout(x)[1], trainer.model.rnn.rollout(x)[1])
    load_weights(run_dir, fresh)
    assert state_dicts_equal(fresh.state_dict(), trainer.model.state_dict())


def test_bptt_checkpoint_has_no_teacher(bptt_run):
    run_dir, trainer = bptt_run
    _, model = load_model(run_dir)
    assert model.teacher is None
    assert state_dicts_equal(model.state_dict(), trainer.model.state_dict())


# --- damaged or foreign files -------------------------------------------------------------------------------


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 4)


def empty(path: Path) -> None:
    path.write_bytes(b"")


def bad_header(path: Path) -> None:  # a plausible 8-byte length followed by a header that is not JSON
    path.write_bytes((16).to_bytes(8, "little") + b"{not json at all")


@pytest.mark.parametrize("damage", [truncate, garbage, empty, bad_header])
def test_corrupt_weights_are_a_checkpoint_error(smt_run_copy, damage):
    damage(checkpoint_dir(smt_run_copy) / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(smt_run_copy)


def test_missing_weights_are_a_checkpoint_error(smt_run_copy):
    (checkpoint_dir(smt_run_copy) / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_model(smt_run_copy)


def rewrite_config(run_dir: Path, edit) -> None:
    path = checkpoint_dir(run_dir) / CONFIG_FILE
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


CONFIG_DAMAGE = {
    "not json": lambda p: p.write_text("{ this is not json"),
    "binary": lambda p: p.write_bytes(bytes(range(256))),
    "empty": lambda p: p.write_text(""),
    "a list": lambda p: p.write_text("[1, 2, 3]"),
    "no format tag": lambda p: rewrite_config(p.parent, lambda m: m.pop("format")),
    "no config": lambda p: rewrite_config(p.parent, lambda m: m.pop("config")),
    "no vocab_size": lambda p: rewrite_config(p.parent, lambda m: m.pop("vocab_size")),
    "vocab_size not a number": lambda p: rewrite_config(p.parent, lambda m: m.update(vocab_size="six")),
    "config not a mapping": lambda p: rewrite_config(p.parent, lambda m: m.update(config=[1])),
    "invalid field value": lambda p: rewrite_config(p.parent, lambda m: m["config"]["rnn"].update(cell="nope")),
    "unknown field": lambda p: rewrite_config(p.parent, lambda m: m["config"]["rnn"].update(nope=1)),
}


@pytest.mark.parametrize("damage", CONFIG_DAMAGE.values(), ids=CONFIG_DAMAGE.keys())
def test_damaged_config_is_a_checkpoint_error(smt_run_copy, damage):
    damage(checkpoint_dir(smt_run_copy) / CONFIG_FILE)
    with pytest.raises(CheckpointError):
        load_model(smt_run_copy)


def test_missing_run_dir_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_config_that_does_not_match_the_weights_is_a_checkpoint_error(smt_run_copy):
    rewrite_config(smt_run_copy, lambda m: m["config"]["memory"].update(width=8))  # weights were saved with 16
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(smt_run_copy)


# --- trainer state is loaded without unpickling code --------------------------------------------------------


class _Payload:
    """Unpickling this (with a full unpickler) creates the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_the_payload_would_run_if_unpickled(tmp_path):
    """Guards the next test: the payload really executes under a full unpickler."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(marker))).close()
    assert marker.exists()


def test_malicious_trainer_state_is_refused_without_running(smt_run_copy, tmp_path):
    marker = tmp_path / "pwned"
    state = load_trainer_state(smt_run_copy)  # the genuine state loads ...
    state["step"] = _Payload(marker)
    torch.save(state, checkpoint_dir(smt_run_copy) / STATE_FILE)
    with pytest.raises(CheckpointError, match="unsafe"):
        load_trainer_state(smt_run_copy)
    assert not marker.exists()
    cfg = debug_config("retrieval", "smt", steps=8)
    with pytest.raises(CheckpointError):
        Trainer(cfg, smt_run_copy, resume=True, show_progress=False)
    assert not marker.exists()


# --- never overwrite, and resume --------------------------------------------------------------------------


def test_second_trainer_without_resume_refuses_and_touches_nothing(smt_run_copy):
    before = snapshot(smt_run_copy)
    with pytest.raises(CheckpointError, match="resume"):
        Trainer(debug_config("retrieval", "smt"), smt_run_copy, show_progress=False)
    assert snapshot(smt_run_copy) == before


def test_resume_continues_from_the_saved_step(smt_run_copy, smt_run):
    saved_steps = smt_run[1].step
    cfg = debug_config("retrieval", "smt", steps=saved_steps + 3)
    trainer = Trainer(cfg, smt_run_copy, resume=True, show_progress=False)
    assert trainer.step == saved_steps
    assert state_dicts_equal(trainer.model.state_dict(), smt_run[1].model.state_dict())
    trainer.run()
    assert trainer.step == saved_steps + 3
    assert json.loads((checkpoint_dir(smt_run_copy) / CONFIG_FILE).read_text())["step"] == saved_steps + 3
    logged = [json.loads(line)["step"] for line in (smt_run_copy / METRICS_FILE).read_text().splitlines()]
    assert [s for s in logged if s > saved_steps][:3] == [saved_steps + 1, saved_steps + 2, saved_steps + 3]


def test_resume_with_a_different_config_is_refused(smt_run_copy):
    cfg = debug_config("retrieval", "smt", steps=10, optim__lr=1e-2)
    with pytest.raises(CheckpointError, match="different config"):
        Trainer(cfg, smt_run_copy, resume=True, show_progress=False)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """Optimizer moments, step, and both RNG streams (data, and the decoder's position sampling) are restored."""
    cfg = debug_config("retrieval", "smt", steps=8)
    straight = Trainer(cfg, tmp_path / "straight", show_progress=False)
    straight.run()

    first = Trainer(cfg, tmp_path / "split", show_progress=False)
    for _ in range(4):
        first.train_step()
    first.save()
    second = Trainer(cfg, tmp_path / "split", resume=True, show_progress=False)
    second.run()
    assert state_dicts_equal(second.model.state_dict(), straight.model.state_dict())
