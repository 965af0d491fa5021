"""The failure diagnostics of `smtrnn.diagnostics` on constructed cases with known answers (a contractive and an
expansive update, an exact and a broken Markov step, a planted symbol and noise), the tasks' needed symbols, and
`smtrnn eval`'s diagnostics, plots and bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from smtrnn.cli import main
from smtrnn.data.tasks import TaskError, make_task
from smtrnn.diagnostics import DIAGNOSTICS_SEED, diagnostics, error_growth, markov_gap, probe_accuracy
from smtrnn.layers import rms_normalize
from smtrnn.rnn import RNN

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ScaledUpdate:
    """A toy RNN whose update multiplies the memory by `factor`: m' = factor · m (inputs ignored)."""

    tokens = 1

    def __init__(self, factor: float, size: int = 8):
        self.factor, self.size = factor, size

    def step(self, m, x):
        return self.factor * m

    def init_state(self, batch):
        return torch.ones(batch, self.size)

    previous_memories = RNN.previous_memories  # the RNN's helpers need only init_state and step
    step_each = RNN.step_each


def toy(factor: float = 1.0):
    return SimpleNamespace(rnn=ScaledUpdate(factor))


def sphere(*shape):
    return rms_normalize(torch.randn(*shape))


# --- error growth ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.5, 2.0])
@pytest.mark.parametrize("epsilon", [1e-3, 0.5])  # the local and the finite perturbation
def test_error_growth_measures_the_per_step_factor_of_a_linear_update(factor, epsilon):
    x = torch.zeros(16, 40, dtype=torch.long)
    m = sphere(16, 40, 8)
    growth = error_growth(toy(factor), x, m, steps=6, epsilon=epsilon)
    assert growth["median"] == pytest.approx(factor, rel=1e-3) and growth["max"] == pytest.approx(factor, rel=1e-3)
    assert len(growth["positions"]) == len(growth["by_position"]) > 1


def test_error_growth_of_a_contractive_cell_is_below_one_and_of_an_expansive_one_above():
    x = torch.zeros(8, 30, dtype=torch.long)
    m = sphere(8, 30, 8)
    assert error_growth(toy(0.7), x, m)["max"] < 1 < error_growth(toy(1.5), x, m)["median"]


# --- Markov gap --------------------------------------------------------------------------------------------------


def test_markov_gap_is_zero_where_the_update_is_exact_and_high_where_new_information_arrives():
    """Teacher memories that stay constant except for a fresh random memory at t = 7: an identity update predicts
    every step but step 7 (and step 0, from m_∅)."""
    batch, length = 64, 12
    first, second = sphere(batch, 1, 8), sphere(batch, 1, 8)
    m = torch.cat([first.expand(batch, 7, 8), second.expand(batch, length - 7, 8)], dim=1)
    x = torch.zeros(batch, length, dtype=torch.long)
    gap = markov_gap(toy(1.0), x, m)
    values = torch.tensor(gap["by_position"])
    assert gap["worst_position"] in (0, 7) and values[7] > 1.0
    assert values[1:7].abs().max() < 1e-6 and values[8:].abs().max() < 1e-6
    assert gap["teacher_update_by_position"][7] > 1.0


def test_markov_gap_stays_finite_where_every_sequence_has_the_same_memory():
    """Like a blank image border: the first 5 memories are the same in every sequence (no spread) and change from
    step to step, so the identity update errs there. The gap is the ratio of the sums, and a position without spread
    counts as 1 % of the mean spread instead of dividing by zero."""
    batch, length = 64, 12
    border = sphere(1, 5, 8).expand(batch, 5, 8)
    m = torch.cat([border, sphere(batch, length - 5, 8)], dim=1)
    x = torch.zeros(batch, length, dtype=torch.long)
    gap = markov_gap(toy(1.0), x, m)
    error = (toy(1.0).rnn.step_each(toy(1.0).rnn.previous_memories(m), x) - m).pow(2).mean(dim=(0, 2))
    spread = m.var(dim=0, unbiased=False).mean(-1)
    assert gap["mean"] == pytest.approx(float(error.sum() / spread.sum()), rel=1e-5)
    floor = float(spread.mean()) * 0.01
    assert gap["by_position"][2] == pytest.approx(float(error[2]) / floor, rel=1e-4)
    assert max(gap["by_position"]) < 1e3


# --- information probe -------------------------------------------------------------------------------------------


def test_probe_finds_a_planted_symbol_and_not_noise():
    generator = torch.Generator().manual_seed(0)
    batch, length, size, classes = 64, 20, 16, 4
    symbols = torch.randint(0, classes, (batch, length), generator=generator)
    symbols[:, :3] = -1  # undefined at the start, as before a needle is read
    codes = torch.randn(classes, size, generator=generator)
    planted = torch.randn(batch, length, size, generator=generator) * 0.3 + codes[symbols.clamp_min(0)]
    noise = torch.randn(batch, length, size, generator=generator)
    half = batch // 2
    found, by_position = probe_accuracy(planted[:half], symbols[:half], planted[half:], symbols[half:], classes)
    assert found > 0.95
    assert torch.isnan(by_position[:3]).all() and (by_position[3:] > 0.8).all()
    missed, _ = probe_accuracy(noise[:half], symbols[:half], noise[half:], symbols[half:], classes)
    assert missed < 0.25 + 0.08  # chance is 1/4


# --- needed symbols ----------------------------------------------------------------------------------------------


def test_needed_symbols_of_the_three_probed_tasks():
    g = torch.Generator().manual_seed(0)
    retrieval = make_task("retrieval", num_symbols=4)
    x, y = retrieval.sample(16, 20, g)
    needed = retrieval.needed_symbol(x, y)
    for row in range(16):
        needle_at = int((x[row] == retrieval.marker).nonzero()) + 1
        assert (needed[row, :needle_at] == -1).all() and (needed[row, needle_at:] == y[row, -1]).all()
    copy = make_task("copy", num_symbols=4, copy_len=3)
    x = torch.tensor([[3, 1, 2, 4, 5, 5, 5, 6, 6]])
    assert copy.needed_symbol(x, x).tolist() == [[3, 3, 3, 3, 1, 2, -1, -1, -1]]
    recall = make_task("delayed_recall", num_symbols=4, lag=2)
    x, y = recall.sample(4, 10, g)
    needed = recall.needed_symbol(x, y)
    assert (needed[:, :-1] == y[:, 1:]).all() and (needed[:, 0] == -1).all()  # the target of the next step


def test_a_task_without_a_needed_symbol_says_so():
    parity = make_task("parity")
    x, y = parity.sample(2, 8, torch.Generator().manual_seed(0))
    with pytest.raises(TaskError, match="information probe"):
        parity.needed_symbol(x, y)


# --- on a trained run, and through the CLI ---------------------------------------------------------------------


def test_diagnostics_of_a_trained_smt_run_measure_its_teacher_memories_and_its_rollout(smt_run):
    """On a trained run, each diagnostic is the measurement above applied by hand to the same held-out sequences
    (their own stream): the gap and growth on the teacher's memories, the probe fitted on the first half of the batch
    from the teacher's memories and from the RNN's own rollout, chance the most frequent needed symbol's share."""
    _, trainer = smt_run
    model, task, length = trainer.model, trainer.task, trainer.cfg.task.seq_len
    result = diagnostics(model, task, length, batch_size=16)
    assert set(result) == {"markov_gap", "growth", "growth_finite", "probe"}
    assert result["growth_finite"]["epsilon"] > result["growth"]["epsilon"]
    assert len(result["markov_gap"]["by_position"]) == length
    x, y = task.held_out().sample(16, length, torch.Generator().manual_seed(DIAGNOSTICS_SEED))
    with torch.no_grad():
        m, rolled = model.teacher.encode(x), model.rnn.rollout(x)[0]
        assert result["markov_gap"] == markov_gap(model, x, m)
        assert result["growth"] == error_growth(model, x, m, steps=min(8, length - 1))
    needed = task.needed_symbol(x, y)
    for name, memories in (("teacher", m), ("rollout", rolled)):
        accuracy, _ = probe_accuracy(memories[:8], needed[:8], memories[8:], needed[8:], model.vocab_size)
        assert result["probe"][name] == accuracy, name
    scored = needed[8:][needed[8:] >= 0]
    assert result["probe"]["chance"] == pytest.approx(scored.bincount().max().item() / scored.numel())
    assert result["probe"]["teacher"] != result["probe"]["rollout"]  # so the two cannot be swapped unseen


def test_diagnostics_refuse_a_run_without_teacher(bptt_run):
    from smtrnn.errors import ConfigError

    _, trainer = bptt_run
    with pytest.raises(ConfigError, match="no teacher"):
        diagnostics(trainer.model, trainer.task, trainer.cfg.task.seq_len)


def test_eval_json_and_plots_carry_the_diagnostics(smt_run, capsys, tmp_path):
    run_dir, _ = smt_run
    code = main(
        [
            "eval",
            str(run_dir),
            "--json",
            "--batches",
            "1",
            "--device",
            "cpu",
            "--probe",
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and {"markov_gap", "growth", "probe"} <= set(result["diagnostics"])
    for name in ("markov_gap.png", "growth.png", "probe.png"):
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG_SIGNATURE)
    assert main(["eval", str(run_dir), "--json", "--batches", "1", "--device", "cpu", "--no-diagnostics"]) == 0
    assert "diagnostics" not in json.loads(capsys.readouterr().out)


def test_eval_of_a_bptt_run_has_no_diagnostics_and_refuses_the_probe(bptt_run, capsys):
    run_dir, _ = bptt_run
    assert main(["eval", str(run_dir), "--json", "--batches", "1", "--device", "cpu"]) == 0
    assert "diagnostics" not in json.loads(capsys.readouterr().out)
    assert main(["eval", str(run_dir), "--probe", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no teacher" in err


def test_probe_on_a_task_without_a_needed_symbol_is_one_line_exit_2(capsys, tmp_path):
    out = tmp_path / "parity"
    assert (
        main(
            [
                "train",
                "--preset",
                "debug",
                "--task",
                "parity",
                "--steps",
                "2",
                "--quiet",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", str(out), "--probe", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("smtrnn: error:") and "parity" in err
    assert main(["eval", str(out), "--json", "--batches", "1", "--device", "cpu"]) == 0  # without --probe: null
    assert json.loads(capsys.readouterr().out)["diagnostics"]["probe"] is None
