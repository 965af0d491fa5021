"""The comparison-only variants, kept to measure smtrnn's forms against: the reference release's SMT step (one
transition per sequence per step, `smt.transitions='one'`) and the paper's sequential DMT (`dmt.time_parallel=false`).
Neither is what smtrnn recommends; both are what its benchmarks compare with (benchmarks/speed.py, and the DMT study,
benchmarks/plans/dmt.txt).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from smtrnn.config import DMTConfig, SMTConfig
from smtrnn.losses import masked_cross_entropy, uniformity
from smtrnn.model import Model


def smt_one_transition_loss(
    model: Model, x: Tensor, y: Tensor, cfg: SMTConfig, t: int | None = None
) -> tuple[Tensor, dict]:
    """The reference release's SMT step, kept for comparison: ONE transition per sequence per step.

    A random t (one per step, shared by the batch); the teacher encodes the prefixes x_0..x_t and x_0..x_{t+1} in
    two passes and keeps only their last memories m_t and m_{t+1}; the decoder predicts y_t.. from m_t and the
    future inputs; the RNN regresses f(m_t, x_{t+1}) onto m_{t+1}. B supervised transitions per step, where
    `smt_loss` trains B·T from a single encoding.
    """
    teacher, rnn = model.teacher, model.rnn
    t = int(torch.randint(0, x.shape[1] - 1, ())) if t is None else t  # the transition trained (drawn by default)
    m_t = teacher.encode(x[:, : t + 1])[:, -1]  # (B, Z)
    m_next = teacher.encode(x[:, : t + 2])[:, -1]
    logits = teacher.decode(m_t, x[:, t + 1 : t + teacher.future_len])  # (B, F, V), F <= Tf
    decoder = masked_cross_entropy(logits, y[:, t : t + logits.shape[1]])
    unif = uniformity(m_t.reshape(-1, rnn.width), cfg.uniformity_samples)
    target = m_next if cfg.dynamics_trains_teacher else m_next.detach()
    source = m_t if cfg.dynamics_trains_teacher else m_t.detach()
    dynamics = F.mse_loss(rnn.step(source, x[:, t + 1]), target)
    readout = masked_cross_entropy(rnn.readout(m_next.detach()), y[:, t + 1])
    loss = (
        cfg.decoder_weight * decoder
        + cfg.uniformity_weight * unif
        + cfg.dynamics_weight * dynamics
        + cfg.readout_weight * readout
    )
    return loss, {
        "decoder": decoder.detach(),
        "uniformity": unif.detach(),
        "dynamics": dynamics.detach(),
        "readout": readout.detach(),
        "loss": loss.detach(),
    }


def dmt_sequential_loss(model: Model, x: Tensor, y: Tensor, cfg: DMTConfig) -> tuple[Tensor, dict]:
    """The paper's DMT: one rollout from m_∅ with its graph kept, MSE to the teacher every `label_every` steps,
    readout CE on the detached rollout memories. Sequential in both directions, for comparison only."""
    teacher, rnn = model.teacher, model.rnn
    with torch.no_grad():
        m = teacher.encode(x)
    rolled, _ = rnn.rollout(x)  # (B, T, Z), graph through time
    labelled = torch.arange(x.shape[1] - 1, -1, -cfg.label_every, device=x.device)  # every k-th, ending at T-1
    dynamics = F.mse_loss(rolled[:, labelled], m[:, labelled])
    readout = masked_cross_entropy(rnn.readout(rolled.detach()), y)
    loss = cfg.dynamics_weight * dynamics + cfg.readout_weight * readout
    return loss, {"dynamics": dynamics.detach(), "readout": readout.detach(), "loss": loss.detach()}
