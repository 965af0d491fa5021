"""The recurrent network that SMT trains and that runs alone at inference: an update f(m, x) -> m' (a cell from
`smtrnn.cells`, or a BPTT baseline from `smtrnn.baselines`), a readout g(m) -> logits, and a learned empty memory
m_∅, the state before any input.

With m_∅ the RNN needs no teacher to start: `rollout(x)` runs from scratch, O(1) time and memory per token.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smtrnn.baselines import BASELINE_CELLS
from smtrnn.cells import CELL_TYPES
from smtrnn.config import MemoryConfig, RNNConfig
from smtrnn.layers import rms_normalize
from smtrnn.user_cell import UserCell, is_user_cell


class RNN(nn.Module):
    def __init__(self, memory: MemoryConfig, cfg: RNNConfig, vocab_size: int):
        super().__init__()
        self.tokens, self.width, self.size = memory.tokens, memory.width, memory.size
        self.embedding = nn.Embedding(vocab_size, cfg.embed)
        cell_type = UserCell if is_user_cell(cfg.cell) else (CELL_TYPES | BASELINE_CELLS)[cfg.cell]
        self.cell = cell_type(memory, cfg)
        self.empty_memory = nn.Parameter(torch.randn(memory.size))
        self.readout_net = nn.Sequential(
            nn.Linear(memory.size, cfg.readout_hidden), nn.GELU(), nn.Linear(cfg.readout_hidden, vocab_size)
        )

    def init_state(self, batch_size: int) -> Tensor:
        """m_∅ for a batch: (B, Z), RMS-normalized per memory token like every memory."""
        m = rms_normalize(self.empty_memory.view(self.tokens, self.width)).flatten()
        return m.expand(batch_size, -1)

    def step(self, m: Tensor, x: Tensor) -> Tensor:
        """One update: m (N, Z), x (N,) token ids -> m' (N, Z). N may be B or B·T (time-parallel SMT)."""
        return self.cell(m, self.embedding(x))

    def readout(self, m: Tensor) -> Tensor:
        """m (..., Z) -> logits (..., V) for the target at the position m was written."""
        return self.readout_net(m)

    def rollout(self, x: Tensor, m0: Tensor | None = None, detach_every: int = 0) -> tuple[Tensor, Tensor]:
        """Run the RNN over x (B, T) from m0 (default m_∅) -> memories (B, T, Z), logits (B, T, V).

        `detach_every` = k > 0 cuts the gradient path every k steps (truncated BPTT); 0 keeps the full graph. The
        cell runs the sequence (`Cell.sequence`: a loop, or a fused path for the baselines).
        """
        m = self.init_state(x.shape[0]) if m0 is None else m0
        memories = self.cell.sequence(self.embedding(x), m, detach_every)  # (B, T, Z)
        return memories, self.readout(memories)

    def previous_memories(self, m: Tensor) -> Tensor:
        """The state each step starts from when the memories m (B, T, Z) are given: m_∅, m_0, .., m_{T-2}."""
        return torch.cat([self.init_state(m.shape[0])[:, None], m[:, :-1]], dim=1)

    def step_each(self, previous: Tensor, x: Tensor) -> Tensor:
        """Every step of a batch at once, each from its own given state: previous (B, T, Z), x (B, T) -> (B, T, Z).
        With previous = `previous_memories(m)` these are SMT's one-step predictions of m."""
        return self.step(previous.flatten(0, 1), x.flatten()).view_as(previous)
