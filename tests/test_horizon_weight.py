"""`teacher.future_weight`: the decoder's CE weighs the next target 1 and each later target of the horizon w."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smtrnn.losses import masked_cross_entropy
from smtrnn.teacher import horizon_cross_entropy


def example():
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 7)
    targets = torch.randint(0, 7, (5, 3))
    targets[1, 2] = targets[3, 0] = -1  # unlabelled entries weigh nothing
    return logits, targets


def test_weight_one_is_the_plain_mean_and_zero_the_next_target_alone():
    logits, targets = example()
    torch.testing.assert_close(horizon_cross_entropy(logits, targets, 1.0), masked_cross_entropy(logits, targets))
    torch.testing.assert_close(
        horizon_cross_entropy(logits, targets, 0.0), masked_cross_entropy(logits[:, 0], targets[:, 0])
    )


def test_a_weight_between_mixes_the_columns_by_their_labelled_counts():
    logits, targets = example()
    ce = [F.cross_entropy(logits[:, j], targets[:, j], ignore_index=-1, reduction="sum") for j in range(3)]
    counts = [(targets[:, j] >= 0).sum() for j in range(3)]
    expected = (ce[0] + 0.25 * (ce[1] + ce[2])) / (counts[0] + 0.25 * (counts[1] + counts[2]))
    torch.testing.assert_close(horizon_cross_entropy(logits, targets, 0.25), expected)
