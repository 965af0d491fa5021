"""Supervised Memory Training: the SMT objective over every timestep of a batch in one pass (paper §3).

    loss = λ_dec · decoder CE  +  λ_dyn · MSE(f(m_{t-1}, x_t), m_t)  +  λ_unif · uniformity  +  λ_read · readout CE
           (+ λ_in · CE of x_t read from m_t, `teacher.last_input_weight`, off by default)

The dynamics term covers all t = 0..T-1, the first transition starting from the RNN's empty memory m_∅, and each
transition is an independent regression example: no gradient crosses more than one step. `labels_loss` is the
same RNN half on memories stored once by a trained teacher (`smtrnn.data.labels`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from smtrnn.config import SMTConfig
from smtrnn.losses import masked_cross_entropy, memory_channel, perturb_on_sphere, uniformity
from smtrnn.model import Model
from smtrnn.rnn import RNN


def dynamics_input_sigma(cfg: SMTConfig, smt_progress: float) -> float:
    """The contraction lever's σ at this point of the SMT share (0..1): linear from σ to σ·final."""
    decay = 1.0 + (cfg.dynamics_input_noise_final - 1.0) * min(max(smt_progress, 0.0), 1.0)
    return cfg.dynamics_input_noise * decay


def smt_loss(
    model: Model, x: Tensor, y: Tensor, cfg: SMTConfig, rnn_active: bool = True, smt_progress: float = 0.0
) -> tuple[Tensor, dict]:
    """x, y (B, T) -> (scalar loss, metrics). Like every objective, the metrics are detached 0-d tensors, so a step
    makes no host sync of its own; the trainer reads them all at once (`Trainer.train_step`).

    `rnn_active=False` is the teacher warm-up of the staged schedule: decoder and uniformity only, no RNN cost.
    Once the RNN is active, the staged schedule (`cfg.schedule`) stops the teacher's own losses and runs the encoder
    without a graph: the RNN then regresses onto fixed targets, at a fraction of the cost of a joint step.
    Under `joint` the dynamics MSE also trains the encoder through m_{t-1} and m_t (the paper's joint training);
    under `joint-detached` and `staged` the RNN regresses onto stop-gradient memories. `smt_progress` (0..1 over
    the SMT share) sets the σ of `cfg.dynamics_input_noise`.
    """
    teacher, rnn = model.teacher, model.rnn
    teacher_learns = not (rnn_active and cfg.freezes_teacher)
    with torch.set_grad_enabled(teacher_learns and torch.is_grad_enabled()):
        m = teacher.encode(x)  # (B, T, Z)
    loss, metrics = m.new_zeros(()), {}
    if teacher_learns:
        decoder = teacher.decoder_loss(memory_channel(m, cfg.memory_noise, cfg.memory_dropout), x, y)
        unif = uniformity(m.reshape(-1, rnn.width), cfg.uniformity_samples)
        loss = cfg.decoder_weight * decoder + cfg.uniformity_weight * unif
        metrics = {"decoder": decoder.detach(), "uniformity": unif.detach()}
        if teacher.last_input_head is not None:
            last_input = teacher.last_input_loss(m, x)
            loss = loss + teacher.last_input_weight * last_input
            metrics["last_input"] = last_input.detach()
    if rnn_active:
        target = m if cfg.dynamics_trains_teacher else m.detach()
        rnn_loss, rnn_metrics = rnn_terms(rnn, x, y, target, cfg, dynamics_input_sigma(cfg, smt_progress))
        loss = loss + rnn_loss
        metrics |= rnn_metrics
    metrics["loss"] = loss.detach()
    return loss, metrics


def rnn_terms(
    rnn: RNN, x: Tensor, y: Tensor, m: Tensor, cfg: SMTConfig, input_sigma: float = 0.0
) -> tuple[Tensor, dict]:
    """The RNN's half of SMT on memories m (B, T, Z): λ_dyn · MSE(f(m_{t-1}, x_t), m_t) with m_{-1} = m_∅, plus
    λ_read · readout CE on m read through the memory channel (and the optional one-step readout CE). When m
    carries the teacher's graph, the dynamics MSE trains the encoder too; the readout terms never do.
    `input_sigma` > 0: each transition starts from a perturbed m_{t-1} (the contraction lever), m_∅ included."""
    previous = perturb_on_sphere(rnn.previous_memories(m), input_sigma, rnn.tokens)  # m_∅, m_0..m_{T-2}
    predicted = rnn.step_each(previous, x)
    dynamics = F.mse_loss(predicted, m)
    read = memory_channel(m.detach(), cfg.memory_noise, cfg.memory_dropout)
    readout = masked_cross_entropy(rnn.readout(read), y)
    loss = cfg.dynamics_weight * dynamics + cfg.readout_weight * readout
    metrics = {"dynamics": dynamics.detach(), "readout": readout.detach()}
    if cfg.onestep_readout_weight:  # trains f and g only: from stop-gradient teacher memories
        if m.requires_grad:
            predicted = rnn.step_each(previous.detach(), x)
        onestep = masked_cross_entropy(rnn.readout(predicted), y)
        loss = loss + cfg.onestep_readout_weight * onestep
        metrics["onestep_readout"] = onestep.detach()
    return loss, metrics


def labels_loss(
    model: Model, x: Tensor, y: Tensor, m: Tensor, cfg: SMTConfig, smt_progress: float = 0.0
) -> tuple[Tensor, dict]:
    """x, y (B, T) and stored teacher memories m (B, T, Z) -> (scalar loss, metrics): SMT's RNN terms on labels
    written once by `smtrnn.data.labels`, with no teacher in the model (label once, train many)."""
    loss, metrics = rnn_terms(model.rnn, x, y, m, cfg, dynamics_input_sigma(cfg, smt_progress))
    return loss, metrics | {"loss": loss.detach()}
