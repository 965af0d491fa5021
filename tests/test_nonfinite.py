"""Non-finite steps: a non-finite loss term or gradient stops the run before the update, naming the step and the
term or module, with the last checkpoint untouched; or is skipped and logged, when train.skip_nonfinite_steps
allows."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from reliability_support import ALL_TERMS, TRAIN, folder_bytes, latest, one_line, records, run_cli
from support import debug_config, state_dicts_equal

import smtrnn.smt
from smtrnn.checkpoint import CHECKPOINTS_DIR, load_trainer_state, read_config
from smtrnn.errors import TrainingError
from smtrnn.trainer import Trainer

# --- non-finite steps -----------------------------------------------------------------------------------------


def poison(real, *calls: int):
    """`real`, except that its result is multiplied by NaN on the given calls (1-based)."""
    counter = itertools.count(1)

    def poisoned(*args, **kwargs):
        value = real(*args, **kwargs)
        return value * float("nan") if next(counter) in calls else value

    return poisoned


class _PoisonedF:
    """torch.nn.functional with a poisoned mse_loss (the SMT dynamics term)."""

    def __init__(self, *calls: int):
        self.mse_loss = poison(torch.nn.functional.mse_loss, *calls)

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)


POISONS = {
    "uniformity": lambda at: ("uniformity", poison(smtrnn.smt.uniformity, at)),
    "readout": lambda at: ("masked_cross_entropy", poison(smtrnn.smt.masked_cross_entropy, at)),
    "dynamics": lambda at: ("F", _PoisonedF(at)),
}


@pytest.mark.parametrize("term", POISONS)
def test_a_non_finite_term_stops_the_run_naming_step_and_term(term, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(smtrnn.smt, *POISONS[term](5))
    saved = {}
    original_save = Trainer.save

    def save_and_remember(self):
        original_save(self)
        saved[self.step] = folder_bytes(self.out_dir / CHECKPOINTS_DIR / latest(self.out_dir))

    monkeypatch.setattr(Trainer, "save", save_and_remember)
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *TRAIN, *ALL_TERMS, "--steps", 8, "--set", "train.save_every=2", "--out", out)
    assert code == 1 and stdout == ""
    line = one_line(err)
    assert line.startswith("smtrnn: error: non-finite loss at step 5: ") and f"{term}=nan" in line
    assert "last checkpoint is kept" in line
    assert sorted(saved) == [2, 4] and latest(out) == "step-00000004"
    assert folder_bytes(out / CHECKPOINTS_DIR / latest(out)) == saved[4]  # untouched since it was written
    assert read_config(out)[1]["step"] == 4
    assert records(out)[-1]["nonfinite"].startswith("non-finite loss at step 5")


def test_a_non_finite_gradient_is_caught_before_the_update(tmp_path):
    trainer = Trainer(debug_config("retrieval", "smt", steps=8), tmp_path / "run", show_progress=False)
    weight = dict(trainer.model.named_parameters())["rnn.readout_net.2.weight"]
    weight.register_hook(lambda grad: grad * float("nan") if trainer.step == 3 else grad)
    for _ in range(3):
        trainer.train_step()
    before = copy.deepcopy(trainer.model.state_dict())
    with pytest.raises(
        TrainingError,
        match=r"non-finite gradient at step 4: in rnn\.readout_net \(1 tensor, "
        r"first rnn\.readout_net\.2\.weight\); the loss terms were finite",
    ):
        trainer.train_step()
    assert state_dicts_equal(trainer.model.state_dict(), before)


def test_skipped_non_finite_steps_make_no_update_and_are_logged(tmp_path, monkeypatch):
    monkeypatch.setattr(smtrnn.smt, "uniformity", poison(smtrnn.smt.uniformity, 3, 5))
    cfg = debug_config(
        "retrieval",
        "smt",
        steps=8,
        train__skip_nonfinite_steps=2,
        smt__teacher_alone=0.0,
        smt__schedule="joint-detached",
    )
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    weights_before = {}
    original = trainer.train_step

    def step():
        weights_before[trainer.step + 1] = copy.deepcopy(trainer.model.state_dict())
        return original()

    trainer.train_step = step
    assert trainer.run() is not None
    for skipped in (3, 5):
        assert state_dicts_equal(weights_before[skipped], weights_before[skipped + 1])
    assert not state_dicts_equal(weights_before[2], weights_before[3])
    skips = [r for r in records(tmp_path / "run") if "skipped" in r]
    assert [r["step"] for r in skips] == [3, 5] and "uniformity=nan" in skips[0]["skipped"]
    assert {state["step"].item() for state in trainer.optimizer.state.values()} == {6}  # 8 steps, 2 without update
    assert load_trainer_state(tmp_path / "run")["skipped"] == 2


def test_one_non_finite_step_more_than_allowed_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(smtrnn.smt, "uniformity", poison(smtrnn.smt.uniformity, 2, 3, 6))
    cfg = debug_config(
        "retrieval",
        "smt",
        steps=8,
        train__skip_nonfinite_steps=2,
        smt__teacher_alone=0.0,
        smt__schedule="joint-detached",
    )
    with pytest.raises(TrainingError, match=r"at step 6: uniformity=nan .* \(after skipping 2, the most "):
        Trainer(cfg, tmp_path / "run", show_progress=False).run()
