"""Reference tests of the Transformer layers against naive implementations: rotary positions make q·k depend only on
the offset i − j, and the attention equals a softmax written out by hand."""

from __future__ import annotations

import math

import torch

from smtrnn.layers import Attention, apply_rotary, rotary_tables


def test_rotary_scores_depend_only_on_the_offset():
    """The same q and k vectors placed at positions (i, j) and (i + s, j + s) give the same score."""
    torch.manual_seed(0)
    head_dim, length = 16, 40
    q, k = torch.randn(head_dim), torch.randn(head_dim)
    cos, sin = rotary_tables(length, head_dim, "cpu", torch.float32)

    def everywhere(v):  # v at every position
        return apply_rotary(v.expand(1, 1, length, head_dim), cos, sin)[0, 0]

    scores = everywhere(q) @ everywhere(k).T  # (L, L): q at i, k at j
    for offset in range(-5, 6):
        along = torch.diagonal(scores, offset=-offset)  # all (i, j) with i - j = offset
        torch.testing.assert_close(along, along[:1].expand_as(along), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(torch.diagonal(scores, 0)[:1], torch.diagonal(scores, -3)[:1])  # offsets do differ


def test_rotary_is_the_roformer_rotation_of_each_channel_pair():
    head_dim, position = 8, 5
    x = torch.randn(1, 1, position + 1, head_dim)
    cos, sin = rotary_tables(position + 1, head_dim, "cpu", torch.float32)
    out = apply_rotary(x, cos, sin)[0, 0, position]
    for pair in range(head_dim // 2):
        angle = position / 10000 ** (2 * pair / head_dim)
        a, b = x[0, 0, position, 2 * pair], x[0, 0, position, 2 * pair + 1]
        expected = torch.stack([a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle)])
        torch.testing.assert_close(out[2 * pair : 2 * pair + 2], expected, atol=1e-5, rtol=1e-5)


def test_causal_attention_equals_a_softmax_written_out():
    torch.manual_seed(1)
    width, heads, length = 16, 2, 7
    attention = Attention(width, heads)
    x = torch.randn(3, length, width)
    rotary = rotary_tables(length, width // heads, "cpu", torch.float32)
    q, k, v = attention.qkv(x).view(3, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    by_hand = attention.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(3, length, width))
    torch.testing.assert_close(attention(x, causal=True, rotary=rotary), by_hand, atol=1e-5, rtol=1e-5)
