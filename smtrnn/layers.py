"""Transformer building blocks shared by the teacher and the transformer cell.

Pre-norm blocks (RMSNorm -> attention -> residual, RMSNorm -> MLP -> residual) with optional rotary positions,
attention through `scaled_dot_product_attention`. Shapes: N any batch of sequences, L sequence length, W width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rms_normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Scale each vector along the last axis to mean square 1 (no learned gain).

    Memories are normalized this way so that every memory token lies on the same sphere for the teacher and for
    every RNN cell: the dynamics MSE then compares like with like, and drift has a fixed scale (0 identical,
    about 2 unrelated).
    """
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: Tensor) -> Tensor:
        return rms_normalize(x, self.eps) * self.weight


def rotary_tables(length: int, head_dim: int, device, dtype) -> tuple[Tensor, Tensor]:
    """cos/sin tables (L, head_dim/2) for rotary position embeddings (RoFormer, base 10000)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs of x (N, H, L, head_dim) by position-dependent angles."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def project(self, x: Tensor, rotary: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
        """x (N, L, W) -> q, k, v (N, H, L, W/H), q and k rotated when rotary tables are given."""
        n, length, width = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        return q, k, v

    def forward(self, x: Tensor, causal: bool, rotary: tuple[Tensor, Tensor] | None) -> Tensor:
        q, k, v = self.project(x, rotary)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(x.shape))

    def step(self, x: Tensor, cache: KVCache, rotary: tuple[Tensor, Tensor] | None) -> Tensor:
        """One new position per sequence, x (N, 1, W), attending to itself and the cached keys/values (which it
        extends in place): the causal forward of the whole prefix, at O(L) cost instead of O(L²)."""
        q, k, v = self.project(x, rotary)
        cache.append(k, v)
        out = F.scaled_dot_product_attention(q, cache.keys, cache.values)
        return self.proj(out.transpose(1, 2).reshape(x.shape))


class KVCache:
    """The keys and values (N, H, L, head_dim) an attention layer has seen so far."""

    def __init__(self):
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    def append(self, k: Tensor, v: Tensor) -> None:
        self.keys = k if self.keys is None else torch.cat([self.keys, k], dim=2)
        self.values = v if self.values is None else torch.cat([self.values, v], dim=2)

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def nbytes(self) -> int:
        return 0 if self.keys is None else 2 * self.keys.numel() * self.keys.element_size()


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.up = nn.Linear(width, hidden)
        self.down = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = RMSNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = RMSNorm(width)
        self.mlp = MLP(width, mlp_ratio * width)

    def forward(self, x: Tensor, causal: bool, rotary: tuple[Tensor, Tensor] | None) -> Tensor:
        x = x + self.attn(self.norm1(x), causal, rotary)
        return x + self.mlp(self.norm2(x))

    def step(self, x: Tensor, cache: KVCache, rotary: tuple[Tensor, Tensor] | None) -> Tensor:
        x = x + self.attn.step(self.norm1(x), cache, rotary)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of blocks with a final norm. `rotary=True` gives relative positions inside attention."""

    def __init__(self, width: int, depth: int, heads: int, causal: bool, rotary: bool):
        super().__init__()
        self.causal, self.rotary, self.heads = causal, rotary, heads
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = RMSNorm(width)

    def forward(self, x: Tensor) -> Tensor:  # (N, L, W) -> (N, L, W)
        tables = None
        if self.rotary:
            tables = rotary_tables(x.shape[1], x.shape[2] // self.heads, x.device, x.dtype)
        for block in self.blocks:
            x = block(x, self.causal, tables)
        return self.norm(x)

    def step(self, x: Tensor, caches: list[KVCache]) -> Tensor:
        """Causal only: the output at the next position, x (N, 1, W) -> (N, 1, W), one KVCache per block."""
        tables = None
        if self.rotary:
            position = caches[0].length
            cos, sin = rotary_tables(position + 1, x.shape[2] // self.heads, x.device, x.dtype)
            tables = cos[position:], sin[position:]
        for block, cache in zip(self.blocks, caches):
            x = block.step(x, cache, tables)
        return self.norm(x)
