"""Gradient paths: ‖∂L/∂m_t‖ against t for SMT and for BPTT on the same RNN (the paper's O(1)-path claim, measured).

In BPTT the loss reaches m_t through every later step, so ∂L/∂m_t sums products of up to T − t step Jacobians and
its norm vanishes or explodes with the distance to the end of the sequence. In SMT the memories are given (the
teacher's), and m_t enters the RNN's loss only as the input of step t + 1, the regression target of step t and
the readout's input: every path has length one, whatever T is.

Both functions return gradients of batch-mean losses and leave the parameters' `.grad` untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from smtrnn.data.tasks import Task
from smtrnn.evaluate import EVAL_SEED
from smtrnn.losses import masked_cross_entropy
from smtrnn.model import Model
from smtrnn.rnn import RNN


def smt_memory_gradients(
    rnn: RNN, m: Tensor, x: Tensor, y: Tensor, dynamics_weight: float = 1.0, readout_weight: float = 1.0
) -> Tensor:
    """Mean over the batch of ‖∂L/∂m_t‖ for the RNN's SMT loss on given memories m (B, T, Z) -> (T,).

    L = dynamics_weight · MSE(f(m_{t-1}, x_t), m_t) + readout_weight · CE(g(m_t), y_t), with m_{-1} = m_∅.
    """
    with torch.enable_grad():
        m = m.detach().requires_grad_(True)
        predicted = rnn.step_each(rnn.previous_memories(m), x)
        loss = dynamics_weight * F.mse_loss(predicted, m) + readout_weight * masked_cross_entropy(rnn.readout(m), y)
        (grad,) = torch.autograd.grad(loss, m)
    return grad.norm(dim=-1).mean(0)


def bptt_memory_gradients(rnn: RNN, x: Tensor, y: Tensor) -> Tensor:
    """Mean over the batch of ‖∂L/∂m_t‖ for the BPTT loss, m_t the RNN's own states from m_∅ -> (T,)."""
    with torch.enable_grad():
        state, embedded = rnn.init_state(x.shape[0]), rnn.embedding(x)
        states = []
        for t in range(x.shape[1]):
            state = rnn.cell(state, embedded[:, t])
            states.append(state)
        loss = masked_cross_entropy(rnn.readout(torch.stack(states, dim=1)), y)
        grads = torch.autograd.grad(loss, states, allow_unused=True)
    return torch.stack(
        [torch.zeros(x.shape[0], device=x.device) if g is None else g.norm(dim=-1) for g in grads], dim=1
    ).mean(0)


def gradient_curves(model: Model, task: Task, seq_len: int, batch_size: int, seed: int = EVAL_SEED) -> dict:
    """‖∂L/∂m_t‖ for t = 0..T-1 on one held-out batch: "bptt" always, "smt" (on the teacher's memories, unit loss
    weights) when the model has a teacher."""
    device = next(model.parameters()).device
    x, y = (t.to(device) for t in task.sample(batch_size, seq_len, torch.Generator().manual_seed(seed)))
    curves = {"bptt": bptt_memory_gradients(model.rnn, x, y).tolist()}
    if model.teacher is not None:
        with torch.no_grad():
            m = model.teacher.encode(x)
        curves["smt"] = smt_memory_gradients(model.rnn, m, x, y).tolist()
    return curves
