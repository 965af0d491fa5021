"""Sampling with the RNN alone: read a prompt into the memory from m_∅, then generate token by token, feeding each
prediction back as the next input. O(1) time and memory per token; no teacher involved."""

from __future__ import annotations

import torch
from torch import Tensor

from smtrnn.rnn import RNN


@torch.no_grad()
def continue_prompt(rnn: RNN, prompt: Tensor, length: int, temperature: float = 0.0,
                    generator: torch.Generator | None = None) -> Tensor:
    """prompt (B, P) token ids, P >= 0 -> the next `length` tokens (B, length).

    temperature 0 takes the argmax; > 0 samples from softmax(logits / temperature).
    """
    m = rnn.init_state(prompt.shape[0])
    for t in range(prompt.shape[1]):
        m = rnn.step(m, prompt[:, t])
    out = []
    for _ in range(length):
        logits = rnn.readout(m)
        if temperature > 0:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        else:
            token = logits.argmax(-1)
        out.append(token)
        m = rnn.step(m, token)
    return torch.stack(out, dim=1) if out else prompt.new_zeros(prompt.shape[0], 0)
