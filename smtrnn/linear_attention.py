"""A causal Transformer of linear cost in T: the teacher's encoder for long sequences (`teacher.encoder=linear`).

Each block reads the prefix two ways, both causal and time-parallel, with no recurrence through time:
- **local**: softmax attention over the last `window` positions (rotary positions), computed in chunks of `window`
  (each chunk's queries against itself and the chunk before it): O(T·window);
- **global**: linear attention over the whole prefix with the second-order Taylor feature map of exp(q·k/√d)
  (φ(q)·φ(k) = 1 + q·k/√d + (q·k)²/(2d) > 0, as in Based, Arora et al. 2024), each position's key weighted by a
  learned write gate w_s = sigmoid(a·h_s + b) in (0, 1): the kernel is at least 1/2 for every pair, so without the
  gate every position of a long prefix keeps a share of the read and one needle drowns in T others; the gate lets
  the teacher write only what matters. Computed chunkwise: within a chunk as masked attention, across chunks through
  the exclusive prefix sum of the chunks' Σ w_s φ(k_s) v_sᵀ: O(T·F·d), with F the feature size. A prefix sum is
  not a recurrence: the gradient from m_t reaches every x_s, s ≤ t, in one sum, so SMT's one-step gradient path
  stays one step.

So m_t depends on x_≤t only (the sequence is padded at the end), sees the whole prefix, and the cost per token does
not grow with T. Shapes: N sequences, H heads, T time, C chunks of W = window, d head width, F = 1 + f + f² features
of the f-wide feature projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smtrnn.layers import MLP, RMSNorm, apply_rotary, rotary_tables

FEATURE_WIDTH = 8  # f: the query/key width of the global (linear) attention, per head; F = 1 + f + f² = 73


def taylor_features(x: Tensor) -> Tensor:
    """(..., f) -> (..., 1 + f + f²): φ with φ(q)·φ(k) = 1 + u + u²/2, u = q·k/√f (exp(u) to second order)."""
    x = (x / x.shape[-1] ** 0.25).contiguous()
    half = x * 2**-0.25  # the outer product of these carries the 1/2 of u²/2
    outer = torch.einsum("...a,...b->...ab", half, half).flatten(-2)
    return torch.cat([torch.ones_like(x[..., :1]), x, outer], dim=-1)


def taylor_kernel(q: Tensor, k: Tensor) -> Tensor:
    """φ(q)·φ(k) for all pairs without the features: q (..., L, f), k (..., S, f) -> (..., L, S), 1 + u + u²/2."""
    u = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return 1 + u + u * u / 2


def causal_linear_attention(q: Tensor, k: Tensor, v: Tensor, chunk: int, gate: Tensor | None = None) -> Tensor:
    """Normalized causal linear attention with the Taylor kernel κ(q, k) = φ(q)·φ(k), chunkwise: q, k (N, H, T, f),
    v (N, H, T, d), gate w (N, H, T) > 0 or None (1), T a multiple of `chunk` ->
    out_t = Σ_{s≤t} w_s κ(q_t, k_s) v_s / Σ_{s≤t} w_s κ(q_t, k_s), (N, H, T, d).
    Within a chunk κ is taken directly (f-wide products); across chunks through the features (F-wide states)."""
    n, h, length, f = q.shape
    chunks = length // chunk
    v = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # the last column sums the normalizer
    if gate is not None:
        v = v * gate[..., None]
    qc, kc = q.view(n, h, chunks, chunk, f), k.view(n, h, chunks, chunk, f)
    vc = v.view(n, h, chunks, chunk, v.shape[-1])
    within = taylor_kernel(qc, kc).tril() @ vc  # s ≤ t inside the chunk
    states = taylor_features(kc).transpose(-1, -2) @ vc  # (N, H, C, F, d+1): each chunk's Σ φ(k_s) v_sᵀ
    before = torch.cat([torch.zeros_like(states[:, :, :1]), states[:, :, :-1].cumsum(dim=2)], dim=2)  # chunks < c
    out = (within + taylor_features(qc) @ before).view(n, h, length, v.shape[-1])
    return out[..., :-1] / out[..., -1:].clamp_min(1e-6)


def window_mask(chunks: int, window: int, device) -> Tensor:
    """(C, W, 2W) bool: query i of chunk c may see key j of [chunk c-1; chunk c] iff it lies in the last `window`
    positions up to and including its own (i < j ≤ W + i); chunk 0 has no chunk before it."""
    i = torch.arange(window, device=device)[:, None]
    j = torch.arange(2 * window, device=device)[None, :]
    band = (j > i) & (j <= window + i)
    mask = band.expand(chunks, window, 2 * window).clone()
    mask[0, :, :window] = False
    return mask


def local_attention(q: Tensor, k: Tensor, v: Tensor, window: int, mask: Tensor | None = None) -> Tensor:
    """Causal softmax attention over the last `window` positions: q, k, v (N, H, T, d), T a multiple of window;
    `mask` = window_mask(T // window, window) where the caller has it already."""
    n, h, length, d = q.shape
    chunks = length // window
    mask = window_mask(chunks, window, q.device) if mask is None else mask
    qc = q.view(n, h, chunks, window, d)

    def with_previous(t: Tensor) -> Tensor:  # (N, H, C, 2W, d): each chunk after the one before it
        tc = t.view(n, h, chunks, window, d)
        return torch.cat([F.pad(tc, (0, 0, 0, 0, 1, 0))[:, :, :-1], tc], dim=3)

    out = F.scaled_dot_product_attention(qc, with_previous(k), with_previous(v), attn_mask=mask)
    return out.view(n, h, length, d)


class LinearCostBlock(nn.Module):
    """Pre-norm block: x + local attention + global linear attention, then x + MLP."""

    def __init__(self, width: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.norm_local, self.norm_global, self.norm_mlp = RMSNorm(width), RMSNorm(width), RMSNorm(width)
        self.local_qkv = nn.Linear(width, 3 * width, bias=False)
        self.local_proj = nn.Linear(width, width, bias=False)
        self.global_qk = nn.Linear(width, 2 * heads * FEATURE_WIDTH, bias=False)
        self.global_v = nn.Linear(width, width, bias=False)
        self.global_gate = nn.Linear(width, heads)
        nn.init.zeros_(self.global_gate.weight)  # w = 1/2 everywhere at the start: the ungated read
        nn.init.zeros_(self.global_gate.bias)
        self.global_proj = nn.Linear(width, width, bias=False)
        self.mlp = MLP(width, 4 * width)

    def _heads(self, x: Tensor, parts: int) -> Tensor:  # (N, T, parts·H·e) -> (parts, N, H, T, e)
        n, length, _ = x.shape
        return x.view(n, length, parts, self.heads, -1).permute(2, 0, 3, 1, 4)

    def forward(self, x: Tensor, rotary: tuple[Tensor, Tensor], mask: Tensor) -> Tensor:
        """x (N, T, W), T a multiple of the window; rotary tables and the window mask of T."""
        n, length, width = x.shape
        q, k, v = self._heads(self.local_qkv(self.norm_local(x)), 3)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        local = local_attention(q, k, v, self.window, mask).transpose(1, 2).reshape(n, length, width)
        h = self.norm_global(x)
        fq, fk = self._heads(self.global_qk(h), 2)
        (gv,) = self._heads(self.global_v(h), 1)
        gate = torch.sigmoid(self.global_gate(h)).transpose(1, 2)  # (N, H, T)
        global_ = causal_linear_attention(fq, fk, gv, self.window, gate).transpose(1, 2).reshape(n, length, width)
        x = x + self.local_proj(local) + self.global_proj(global_)
        return x + self.mlp(self.norm_mlp(x))


class LinearCostTransformer(nn.Module):
    """A causal stack of `LinearCostBlock`s with a final norm: (N, L, W) -> (N, L, W), O(L) time and memory."""

    def __init__(self, width: int, depth: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.blocks = nn.ModuleList(LinearCostBlock(width, heads, window) for _ in range(depth))
        self.norm = RMSNorm(width)

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[1]
        x = F.pad(x, (0, 0, 0, -length % self.window))  # at the end: causal, so no earlier position sees it
        tables = rotary_tables(x.shape[1], x.shape[2] // self.heads, x.device, x.dtype)
        mask = window_mask(x.shape[1] // self.window, self.window, x.device)
        for block in self.blocks:
            x = block(x, tables, mask)
        return self.norm(x[:, :length])
