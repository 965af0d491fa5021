"""Sampling with the RNN alone: read a prompt into the memory from m_∅, then generate token by token, feeding each
prediction back as the next input. O(1) time and memory per token; no teacher involved."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from smtrnn.rnn import RNN


@torch.no_grad()
def continue_prompt(
    rnn: RNN, prompt: Tensor, length: int, temperature: float = 0.0, generator: torch.Generator | None = None
) -> Tensor:
    """prompt (B, P) token ids, P >= 0 -> the next `length` tokens (B, length).

    temperature 0 takes the argmax; > 0 samples from softmax(logits / temperature).
    """
    out = list(stream_continuation(rnn, prompt, length, temperature, generator))
    return torch.stack(out, dim=1) if out else prompt.new_zeros(prompt.shape[0], 0)


def stream_continuation(
    rnn: RNN, prompt: Tensor, length: int, temperature: float = 0.0, generator: torch.Generator | None = None
) -> Iterator[Tensor]:
    """prompt (B, P) token ids -> the next `length` tokens one at a time, each (B,), as they are drawn. Holds only
    the memory, so a caller can print a continuation of any length as it goes (`smtrnn sample`); `continue_prompt`
    collects it."""
    with torch.no_grad():  # per step, not around the generator: the caller's code between steps keeps its grad mode
        m = rnn.init_state(prompt.shape[0])
        for t in range(prompt.shape[1]):
            m = rnn.step(m, prompt[:, t])
    for _ in range(length):
        with torch.no_grad():
            logits = rnn.readout(m)
            if temperature > 0:
                probs = torch.softmax(logits.float() / temperature, dim=-1)
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            else:
                token = logits.argmax(-1)
        yield token
        with torch.no_grad():
            m = rnn.step(m, token)


@torch.no_grad()
def complete_images(
    rnn: RNN, task, count: int, temperature: float = 1.0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """For a `pixels` task: the first `count` held-out images, the RNN's completion of their lower half given the
    upper half, and `count` unconditional samples — three (count, H, W) level tensors.

    Unconditional samples start from the START token; a task without one is started from each held-out image's
    first pixel instead.
    """
    images = task.held_out().images()
    count = min(count, len(images))
    originals = images.pixels[:count].long()
    height, width = originals.shape[1:]
    device = next(rnn.parameters()).device
    x, _ = task.sequences(originals, height * width)
    x = x.to(device)
    upper = (height // 2) * width  # pixels given as the prompt
    prompt_len = upper + int(task.start_token)  # the inputs that carry those pixels
    lower = continue_prompt(rnn, x[:, :prompt_len], height * width - upper, temperature, generator)
    completed = torch.cat([originals.flatten(1)[:, :upper], lower.cpu().clamp_max(images.levels - 1)], dim=1)
    start = x[:, :1]
    drawn = continue_prompt(rnn, start, height * width - (0 if task.start_token else 1), temperature, generator)
    if not task.start_token:
        drawn = torch.cat([start, drawn], dim=1)
    shape = (count, height, width)
    return originals, completed.view(shape), drawn.cpu().view(shape).clamp_max(images.levels - 1)
