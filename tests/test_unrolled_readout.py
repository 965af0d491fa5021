"""`smt.unroll_steps`: the readout CE of H teacher-forced steps of the update from each start memory."""

from __future__ import annotations

import torch
from support import debug_config

from smtrnn.data.tasks import make_task
from smtrnn.losses import masked_cross_entropy
from smtrnn.model import Model
from smtrnn.smt import unrolled_readout


def setup(length: int = 9):
    cfg = debug_config("text", "smt")
    task = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(0)
    model = Model.for_run(cfg, task.vocab_size)
    x, y = task.sample(3, length, torch.Generator().manual_seed(1))
    m = torch.nn.functional.normalize(torch.randn(3, length, model.rnn.size), dim=-1) * model.rnn.size**0.5
    return model.rnn, m, x, y


def by_hand(rnn, m, x, y, steps: int) -> torch.Tensor:
    """Every start t with `steps` positions after it, unrolled one sequence and one start at a time."""
    logits, targets = [], []
    for b in range(x.shape[0]):
        for t in range(x.shape[1] - steps):
            state = m[b, t][None]
            for j in range(1, steps + 1):
                state = rnn.step(state, x[b, t + j][None])
                logits.append(rnn.readout(state)[0])
                targets.append(y[b, t + j])
    return masked_cross_entropy(torch.stack(logits), torch.stack(targets))


def test_every_start_equals_the_loop_by_hand():
    rnn, m, x, y = setup()
    for steps in (1, 3):
        torch.testing.assert_close(unrolled_readout(rnn, m, x, y, steps, starts=0), by_hand(rnn, m, x, y, steps))


def test_a_horizon_past_the_sequence_is_cut_to_it():
    rnn, m, x, y = setup(length=4)
    torch.testing.assert_close(unrolled_readout(rnn, m, x, y, 50, starts=0), by_hand(rnn, m, x, y, 3))


def test_sampled_starts_give_a_loss_from_memories_that_have_the_horizon_after_them():
    """With P starts the loss is a mean over P·H predictions; a memory with fewer than H steps after it is never a
    start, so changing the last H memories leaves the loss unchanged."""
    rnn, m, x, y = setup()
    torch.manual_seed(5)
    before = unrolled_readout(rnn, m, x, y, 3, starts=4)
    changed = m.clone()
    changed[:, -3:] = -changed[:, -3:]
    torch.manual_seed(5)
    assert torch.equal(unrolled_readout(rnn, changed, x, y, 3, starts=4), before)
    changed[:, 0] = -changed[:, 0]
    differs = []
    for seed in range(8):  # draws that start at t = 0 see the change
        torch.manual_seed(seed)
        mine = unrolled_readout(rnn, changed, x, y, 3, starts=4)
        torch.manual_seed(seed)
        differs.append(bool(mine != unrolled_readout(rnn, m, x, y, 3, starts=4)))
    assert any(differs)
