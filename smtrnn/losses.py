"""Loss terms shared by the training methods."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from smtrnn.layers import rms_normalize


def masked_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean CE over entries with target >= 0: logits (..., V), targets (...). Zero, still attached to the graph,
    when no entry has a target. No host sync: the sum over labelled entries over their count (at least 1)."""
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    total = F.cross_entropy(flat_logits, flat_targets, ignore_index=-1, reduction="sum")
    return total / (flat_targets >= 0).sum().clamp_min(1)


def masked_accuracy(logits: Tensor, targets: Tensor) -> tuple[int, int]:
    """(correct, labelled) counts of argmax predictions over entries with target >= 0."""
    labelled = targets >= 0
    correct = (logits.argmax(-1) == targets) & labelled
    return int(correct.sum()), int(labelled.sum())


def uniformity(memory_tokens: Tensor, samples: int, temperature: float = 2.0, generator=None) -> Tensor:
    """Wang & Isola's uniformity, log E exp(-t‖a − b‖²) over pairs of L2-normalized memory tokens (paper §3,
    t = 2).

    memory_tokens (N, D); at most `samples` tokens are drawn so the pairwise cost stays bounded. Lower is more
    spread out; it is the term that keeps the dynamics loss from collapsing memories to a constant.
    """
    if memory_tokens.shape[0] > samples:
        pick = torch.randperm(memory_tokens.shape[0], device=memory_tokens.device, generator=generator)[:samples]
        memory_tokens = memory_tokens[pick]
    z = F.normalize(memory_tokens, dim=-1)
    sq_dist = torch.pdist(z).pow(2)
    return torch.logsumexp(-temperature * sq_dist, dim=0) - math.log(sq_dist.numel())


def memory_channel(m: Tensor, noise: float, dropout: float) -> Tensor:
    """What the decoder and readout read in training: m (..., Z) with Gaussian noise of std `noise` added and a
    fraction `dropout` of the floats zeroed (the rest scaled by 1/(1-dropout)); m itself when both are 0.

    A reader that must work through this channel needs the information spread with margins wider than the channel's
    perturbation — the margin an RNN's rollout, which never equals the teacher's memories exactly, relies on.
    """
    if noise:
        m = m + noise * torch.randn_like(m)
    if dropout:
        m = F.dropout(m, dropout, training=True)
    return m


def perturb_on_sphere(m: Tensor, sigma: float, tokens: int) -> Tensor:
    """m (..., Z) plus Gaussian noise of std sigma, each of the K memory tokens RMS-normalized again: a nearby
    memory of the same kind, from which a contractive update should return to the trajectory."""
    if not sigma:
        return m
    noisy = (m + sigma * torch.randn_like(m)).unflatten(-1, (tokens, -1))
    return rms_normalize(noisy).flatten(-2)
