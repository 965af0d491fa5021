"""Backpropagation through time on the same RNN and readout: the baseline every SMT claim is measured against."""

from __future__ import annotations

from torch import Tensor

from smtrnn.config import BPTTConfig
from smtrnn.losses import masked_cross_entropy
from smtrnn.model import Model


def bptt_loss(model: Model, x: Tensor, y: Tensor, cfg: BPTTConfig) -> tuple[Tensor, dict]:
    """Unroll the RNN from m_∅ over x (B, T) and take the CE at every labelled step -> (loss, metrics).

    `cfg.truncation` = k > 0 detaches the state every k steps (truncated BPTT).
    """
    _, logits = model.rnn.rollout(x, detach_every=cfg.truncation)
    loss = masked_cross_entropy(logits, y)
    return loss, {"readout": loss.detach(), "loss": loss.detach()}
