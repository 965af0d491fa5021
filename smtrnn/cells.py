"""RNN update functions f(m, e) -> m'. Every cell's state is the memory vector itself (N, Z) and every cell
ends by RMS-normalizing each of the K memory tokens, so RNN states live on the same sphere as the teacher's
memories. Inputs arrive already embedded: e (N, E).

The cell protocol (`Cell`), one entry point for a step and one for a whole sequence:
    cell(m, e) -> m'                          one update, m (N, Z), e (N, E); N may be B or B·T (time-parallel)
    cell.sequence(embedded, m0, k) -> (B, T, Z)  every state of a sequence, embedded (B, T, E), from m0 (B, Z);
                                              k > 0 cuts the gradient every k steps (truncated BPTT)
The base class loops over the step; a cell with a faster whole-sequence path (the fused baselines of
`smtrnn.baselines`) overrides `sequence`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smtrnn.config import MemoryConfig, RNNConfig
from smtrnn.layers import Transformer, rms_normalize


class Cell(nn.Module):
    """The base of every update f: subclasses define `forward(m, e) -> m'` (the step)."""

    def __init__(self, memory: MemoryConfig):
        super().__init__()
        self.tokens, self.width, self.size = memory.tokens, memory.width, memory.size

    def sequence(self, embedded: Tensor, m0: Tensor, detach_every: int = 0) -> Tensor:
        """embedded (B, T, E), m0 (B, Z) -> every state (B, T, Z), stepping one input at a time."""
        m, memories = m0, []
        for t in range(embedded.shape[1]):
            m = self(m, embedded[:, t])
            memories.append(m)
            if detach_every and (t + 1) % detach_every == 0:
                m = m.detach()
        return torch.stack(memories, dim=1)

    def normalize(self, m: Tensor) -> Tensor:
        """RMS-normalize each memory token of a flat memory (N, Z)."""
        return rms_normalize(m.unflatten(-1, (self.tokens, self.width))).flatten(-2)


class TransformerCell(Cell):
    """The paper's cell: a small bidirectional Transformer over [K memory tokens; the input token]; its first K
    outputs are the next memory. Learned slot embeddings tell the tokens apart (no positions needed)."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.from_input = nn.Linear(cfg.embed, memory.width)
        self.slot = nn.Parameter(torch.randn(memory.tokens + 1, memory.width) * 0.02)
        self.transformer = Transformer(memory.width, cfg.depth, cfg.heads, causal=False, rotary=False)

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        tokens = torch.cat([m.unflatten(-1, (self.tokens, self.width)), self.from_input(e)[:, None]], dim=1)
        out = self.transformer(tokens + self.slot)  # (N, K+1, D)
        return rms_normalize(out[:, : self.tokens]).flatten(-2)


def update_mlp(memory: MemoryConfig, cfg: RNNConfig) -> nn.Sequential:
    """The MLP of the MLP cells: [m; e] (Z + E) -> rnn.depth GELU layers of width rnn.hidden -> Z."""
    layers: list[nn.Module] = [nn.Linear(memory.size + cfg.embed, cfg.hidden), nn.GELU()]
    for _ in range(cfg.depth - 1):
        layers += [nn.Linear(cfg.hidden, cfg.hidden), nn.GELU()]
    layers.append(nn.Linear(cfg.hidden, memory.size))
    return nn.Sequential(*layers)


class MLPCell(Cell):
    """Residual MLP: m' = norm(m + MLP([m; e]))."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.net = update_mlp(memory, cfg)

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        return self.normalize(m + self.net(torch.cat([m, e], dim=-1)))


class LinearMLPCell(Cell):
    """Residual MLP with a learned linear skip: m' = norm(W m + MLP([m; e])), W the identity at initialization.
    A linear map of the memory (a shift of its contents, a rotation) is exact in W, where the plain residual MLP can
    only approximate it through its nonlinear layers."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.skip = nn.Linear(memory.size, memory.size, bias=False)
        nn.init.eye_(self.skip.weight)
        self.mlp = update_mlp(memory, cfg)

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        return self.normalize(self.skip(m) + self.mlp(torch.cat([m, e], dim=-1)))


class GatedMLPCell(Cell):
    """The MLP cell with a GRU-style update gate: m' = norm((1 - z) ⊙ m + z ⊙ MLP([m; e])), z = σ(W [m; e] + b).
    The MLP writes as freely as the MLP cell's; where the gate closes (z -> 0) the memory is held exactly, the
    standing memory of a filler that an additive update can only approximate."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.mlp = update_mlp(memory, cfg)
        self.gate = nn.Linear(memory.size + cfg.embed, memory.size)

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        both = torch.cat([m, e], dim=-1)
        z = torch.sigmoid(self.gate(both))
        return self.normalize(m + z * (self.mlp(both) - m))


class GRUCell(Cell):
    """`nn.GRUCell` with hidden size Z; the memory is its hidden state, RMS-normalized after each step."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.cell = nn.GRUCell(cfg.embed, memory.size)

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        return self.normalize(self.cell(e, m))


class LSTMCell(Cell):
    """`nn.LSTMCell` with hidden size Z/2. The memory is the concatenation [h; c] (h the first Z/2 entries, c the
    last Z/2); after each step the whole memory is RMS-normalized per memory token like every other cell's, so
    the LSTM sees a rescaled (h, c) — the gates learn that scale."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.cell = nn.LSTMCell(cfg.embed, memory.size // 2)

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        h, c = m.chunk(2, dim=-1)
        h, c = self.cell(e, (h, c))
        return self.normalize(torch.cat([h, c], dim=-1))


class ElmanCell(Cell):
    """Elman RNN: m' = norm(tanh(W m + U e + b))."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.recurrent = nn.Linear(memory.size, memory.size)
        self.input = nn.Linear(cfg.embed, memory.size, bias=False)

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        return self.normalize(torch.tanh(self.recurrent(m) + self.input(e)))


CELL_TYPES: dict[str, type[Cell]] = {
    "transformer": TransformerCell,
    "mlp": MLPCell,
    "mlp-linear": LinearMLPCell,
    "mlp-gated": GatedMLPCell,
    "gru": GRUCell,
    "lstm": LSTMCell,
    "elman": ElmanCell,
}
