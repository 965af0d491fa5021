"""DAgger Memory Training (paper §3.3): train the RNN on the states it visits itself, relabelled by the teacher.

After SMT the RNN has only seen teacher memories; run alone, its one-step errors compound (drift). DMT rolls the
RNN out on its own memories, labels every visited state m̂_{t-1} with the teacher's next memory m_t, and regresses
f(m̂_{t-1}, x_t) onto m_t. The teacher is frozen.

`dmt_loss` is the time-parallel form: the rollout runs without an autograd graph (a cheap sequential pass), then
all T transitions are trained in ONE batched step. `reference.dmt_sequential_loss` is the paper's form, kept for
comparison: the graph is kept through the whole rollout and the MSE is taken every `label_every` steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from smtrnn.config import DMTConfig, SMTConfig
from smtrnn.losses import masked_cross_entropy
from smtrnn.model import Model
from smtrnn.smt import smt_loss


@torch.no_grad()
def visited_states(model: Model, x: Tensor, m: Tensor, restart_fraction: float) -> tuple[Tensor, Tensor]:
    """Roll the RNN over x (B, T) without a graph -> (inputs, outputs), both (B, T, Z): inputs[:, t] is the state
    step t starts from, outputs[:, t] the memory the RNN writes at step t.

    A `restart_fraction` of the sequences follow the teacher's memories m up to a random offset and the RNN's own
    from there; the rest run on the RNN's own memories from m_∅, exactly as at inference.
    """
    rnn = model.rnn
    batch, length, _ = m.shape
    restarts = torch.rand(batch, device=x.device) < restart_fraction
    offsets = torch.randint(0, length, (batch,), device=x.device)
    switch = torch.where(restarts, offsets, torch.full_like(offsets, -1))  # follow the teacher while t <= switch
    embedded = rnn.embedding(x)
    state = rnn.init_state(batch)
    inputs, outputs = [], []
    for t in range(length):
        inputs.append(state)
        written = rnn.cell(state, embedded[:, t])
        outputs.append(written)
        state = torch.where((t <= switch)[:, None], m[:, t], written)
    return torch.stack(inputs, dim=1), torch.stack(outputs, dim=1)


def predict_from_visited(model: Model, x: Tensor, visited: Tensor, k: int) -> Tensor:
    """The RNN's prediction of every memory m_t from visited states: (B, T, Z).

    Each m_t is reached by k + 1 updates (inputs x_{t-k}..x_t) from the visited state of step t-k, with the
    gradient through all k + 1 of them; targets with t < k start from the state of step 0 and take t + 1 updates.
    k = 0 is plain one-step regression.
    """
    rnn = model.rnn
    batch, length, size = visited.shape
    # The first visited state is m_∅ itself: take it with its graph so DMT keeps training the empty memory.
    visited = torch.cat([rnn.init_state(batch)[:, None], visited[:, 1:]], dim=1)
    k = min(k, length - 1)
    target_t = torch.arange(length, device=x.device)
    start = (target_t - k).clamp_min(0)  # (T,)
    state = visited[:, start].reshape(-1, size)
    for j in range(k + 1):
        step_t = (start + j).clamp_max(length - 1)
        updated = rnn.step(state, x[:, step_t].reshape(-1))
        reached = (start + j <= target_t).repeat(batch)[:, None]  # rows whose target step is not yet passed
        state = torch.where(reached, updated, state)
    return state.view(batch, length, size)


def dmt_loss(model: Model, x: Tensor, y: Tensor, cfg: DMTConfig, memories: Tensor | None = None) -> tuple[Tensor, dict]:
    """Time-parallel DMT on x, y (B, T) -> (loss, metrics): a graph-free rollout, then one batched regression of
    f(visited state, x_t) onto the teacher's m_t for all t, and readout CE on the RNN's own memories.

    `memories` (B, T, Z): the teacher's memories of x when they are stored labels (then no teacher is needed)."""
    rnn = model.rnn
    if memories is None:
        with torch.no_grad():
            memories = model.teacher.encode(x)
    m = memories.detach()  # (B, T, Z), the labels
    visited, written = visited_states(model, x, m, cfg.restart_fraction)
    predicted = predict_from_visited(model, x, visited, cfg.grad_through_rollout_steps)
    dynamics = F.mse_loss(predicted, m)
    readout = masked_cross_entropy(rnn.readout(written), y)  # on the RNN's own memories, as at inference
    loss = cfg.dynamics_weight * dynamics + cfg.readout_weight * readout
    metrics = {"dynamics": dynamics.detach(), "readout": readout.detach()}
    if cfg.onestep_readout_weight:  # the readout of f(visited state, x_t), with its gradient into f
        onestep = masked_cross_entropy(rnn.readout(predicted), y)
        loss = loss + cfg.onestep_readout_weight * onestep
        metrics["onestep_readout"] = onestep.detach()
    return loss, metrics | {"loss": loss.detach()}


def dmt_with_teacher_loss(
    model: Model, x: Tensor, y: Tensor, cfg: DMTConfig, smt_cfg: SMTConfig
) -> tuple[Tensor, dict]:
    """DMT while the teacher keeps learning (`dmt.teacher_learns`): the SMT objective on x, y (B, T) plus the
    time-parallel DMT loss on the same batch, relabelled by the teacher's current memories -> (loss, metrics).
    The DMT terms are reported as dmt_dynamics and dmt_readout."""
    smt, smt_metrics = smt_loss(model, x, y, smt_cfg, smt_progress=1.0)
    dmt, dmt_metrics = dmt_loss(model, x, y, cfg)
    loss = smt + dmt
    dmt_terms = {f"dmt_{k}": v for k, v in dmt_metrics.items() if k != "loss"}
    return loss, smt_metrics | dmt_terms | {"loss": loss.detach()}


def dmt_loss_on_labels(model: Model, x: Tensor, y: Tensor, m: Tensor, cfg: DMTConfig) -> tuple[Tensor, dict]:
    """DMT against stored teacher memories m (B, T, Z) of x (`smtrnn label`): the labels+dmt method."""
    return dmt_loss(model, x, y, cfg, memories=m)
