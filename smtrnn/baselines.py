"""BPTT baselines: the recurrent cells a user would otherwise pick, each with a whole-sequence path that avoids a
Python loop over time. They train by BPTT only (`--method bptt --cell NAME`).

Unlike the cells of `smtrnn.cells`, these do NOT RMS-normalize the memory after each step: they are the plain
modules, which is the point of a baseline, so their memories do not live on the teacher's sphere and SMT/DMT cannot
regress onto them (`config.validate` refuses that pairing). Their starting state h0 is the RNN's learned m_∅, which
`RNN.init_state` still RMS-normalizes (only the start; later states are free).

Each cell follows the cell protocol of `smtrnn.cells`: `forward(m, e) -> m'` for one step (sampling) and
`sequence(embedded, m0, detach_every)` for the whole sequence, fused unless the gradient is cut (truncated BPTT then
takes the base class's loop); the two agree up to float rounding (tests/test_baselines.py, tests/test_shapes.py).
Shapes: B batch, T time, E input embedding width, Z memory size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smtrnn.cells import Cell
from smtrnn.config import MemoryConfig, RNNConfig


def linear_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """All states of h_t = a_t ⊙ h_{t-1} + b_t: a, b (B, T, Z), h0 (B, Z) -> h (B, T, Z).

    A Hillis–Steele associative scan over the pairs (a, b), composed as (a1, b1)·(a2, b2) = (a1·a2, a2·b1 + b2):
    ⌈log2 T⌉ elementwise steps, no loop over t (O(T log T) work and saved activations, depth O(log T)). It works in
    linear space, so b and h0 may have any sign (the LSTM's cell state needs that) and products of a in (0, 1) may
    underflow harmlessly to 0.
    """
    b = torch.cat([a[:, :1] * h0[:, None] + b[:, :1], b[:, 1:]], dim=1)  # fold h0 into the first step
    shift = 1
    while shift < a.shape[1]:  # invariant: (a_t, b_t) compose steps max(0, t-shift+1)..t
        b = torch.cat([b[:, :shift], a[:, shift:] * b[:, :-shift] + b[:, shift:]], dim=1)
        a = torch.cat([a[:, :shift], a[:, shift:] * a[:, :-shift]], dim=1)
        shift *= 2
    return b


class FusedGRUCell(Cell):
    """`nn.GRU` (one layer, hidden size Z) run over the whole sequence in one fused call (cuDNN on GPU)."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.gru = nn.GRU(cfg.embed, memory.size, batch_first=True)

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        memories, _ = self.gru(e[:, None], m[None].contiguous())
        return memories[:, 0]

    def sequence(self, embedded: Tensor, m0: Tensor, detach_every: int = 0) -> Tensor:
        """embedded (B, T, E), m0 (B, Z) -> memories (B, T, Z); in one fused call unless the gradient is cut."""
        if detach_every:
            return super().sequence(embedded, m0, detach_every)
        memories, _ = self.gru(embedded, m0[None].contiguous())
        return memories


class FusedLSTMCell(Cell):
    """`nn.LSTM` (one layer, hidden size Z/2) run over the whole sequence in one fused call. The memory is [h; c]
    (h the first Z/2 entries, c the last Z/2) like `cells.LSTMCell`, but not normalized.

    `nn.LSTM` returns h_t for every t but c_t only for the last step, so `sequence` rebuilds every c_t from the
    gates: with all h_{t-1} known, the gates of all steps are one batched matmul, and c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    is a linear recurrence solved by `linear_scan`. That recomputation is the same function of the weights, so the
    gradients are exact. (On GPU, cuDNN's own c_t uses TF32 matmuls by default, so the step path's c_t can differ
    from the rebuilt one at about 1e-3 relative; with `torch.backends.cudnn.allow_tf32 = False` they agree to 1e-5.)
    """

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.lstm = nn.LSTM(cfg.embed, memory.size // 2, batch_first=True)

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        h, c = m.chunk(2, dim=-1)
        _, (h, c) = self.lstm(e[:, None], (h[None].contiguous(), c[None].contiguous()))
        return torch.cat([h[0], c[0]], dim=-1)

    def sequence(self, embedded: Tensor, m0: Tensor, detach_every: int = 0) -> Tensor:
        """embedded (B, T, E), m0 (B, Z) -> memories (B, T, Z); in one fused call unless the gradient is cut."""
        if detach_every:
            return super().sequence(embedded, m0, detach_every)
        h0, c0 = m0.chunk(2, dim=-1)
        h, _ = self.lstm(embedded, (h0[None].contiguous(), c0[None].contiguous()))  # (B, T, Z/2)
        previous = torch.cat([h0[:, None], h[:, :-1]], dim=1)  # h_{t-1}
        lstm = self.lstm
        gates = embedded @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + previous @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
        i, f, g, _ = gates.chunk(4, dim=-1)  # PyTorch's gate order: input, forget, cell, output
        c = linear_scan(torch.sigmoid(f), torch.sigmoid(i) * torch.tanh(g), c0)
        return torch.cat([h, c], dim=-1)  # (B, T, Z)


class MinGRUCell(Cell):
    """minGRU (Feng et al. 2024, "Were RNNs all we needed?", §3.1): h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t with
    z_t = σ(W_z e_t + b_z) and h̃_t = W_h e_t + b_h — the paper's plain minGRU, without the g(·) of its log-space
    variant (our scan works in linear space, so h̃ needs no sign constraint). The gates read the input only, so the
    whole sequence is the linear recurrence a_t = 1 − z_t, b_t = z_t ⊙ h̃_t, computed by a parallel scan.
    """

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.to_gate_and_candidate = nn.Linear(cfg.embed, 2 * memory.size)

    def coefficients(self, e: Tensor) -> tuple[Tensor, Tensor]:
        """e (..., E) -> (a, b) (..., Z) of the recurrence h = a ⊙ h_prev + b."""
        gate, candidate = self.to_gate_and_candidate(e).chunk(2, dim=-1)
        z = torch.sigmoid(gate)
        return 1 - z, z * candidate

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        a, b = self.coefficients(e)
        return a * m + b

    def sequence(self, embedded: Tensor, m0: Tensor, detach_every: int = 0) -> Tensor:
        """embedded (B, T, E), m0 (B, Z) -> memories (B, T, Z); in one fused call unless the gradient is cut."""
        if detach_every:
            return super().sequence(embedded, m0, detach_every)
        return linear_scan(*self.coefficients(embedded), m0)


BASELINE_CELLS: dict[str, type[Cell]] = {
    "gru-fused": FusedGRUCell,
    "lstm-fused": FusedLSTMCell,
    "mingru": MinGRUCell,
}
