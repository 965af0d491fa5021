"""Diagnostics that name why an SMT run's RNN alone fails where its teacher succeeds (`smtrnn eval --diagnostics`).

Three measurements, each by position t along held-out sequences:

- **Markov gap**: the one-step error of the update on teacher memories, MSE(f(m_{t-1}, x_t), m_t), over the spread
  of the teacher's m_t between sequences (1 = the prediction is no closer than another sequence's memory). Where it
  is high the teacher's memory gained information that (m_{t-1}, x_t) did not hold, or that f has not learned to
  write: no rollout can follow the teacher there. Beside it, the teacher's own update size ‖m_t − m_{t-1}‖² over the
  spread shows where the teacher writes.
- **Error growth**: how a small perturbation of m_t grows over k RNN steps from the teacher's memory, by finite
  differences (per-step factor (‖Δ_k‖ / ‖Δ_0‖)^(1/k), in the tangent space of the memory sphere). Above 1 the update
  amplifies drift: a near-perfect one-step fit still leaves the teacher's trajectory. `growth_finite` does the same
  with a perturbation of RMS 0.2 per float carried 32 steps: below 1 a rollout that has left the teacher by that much
  comes back; the local factor alone cannot say so.
- **Information probe**: whether the symbol the targets need (retrieval: the needle; delayed_recall: x_{t-lag+1};
  copy: the string symbol to come; `Task.needed_symbol`) is decodable by a small fitted MLP probe from teacher
  memories and from the RNN's own rollout. The probe is fitted on one set of sequences and scored on another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smtrnn.data.tasks import Task, TaskError
from smtrnn.errors import ConfigError
from smtrnn.layers import rms_normalize
from smtrnn.model import Model

DIAGNOSTICS_SEED = 2_000_003  # its own held-out stream, apart from training and evaluation
SPREAD_FLOOR = 0.01  # a position's spread counts as at least this fraction of the mean spread over positions
FINITE_PERTURBATION = 0.2  # RMS per float of the finite perturbation (the recipe's noise channel)


def markov_gap(model: Model, x: Tensor, m: Tensor) -> dict:
    """x (B, T), teacher memories m (B, T, Z) -> one-step error and teacher update size per position, both over the
    spread of m_t between sequences. The spread is floored at SPREAD_FLOOR of its mean over positions, so a position
    where every sequence has the same memory (a blank image border) does not divide by zero; "mean" is the ratio of
    the sums over positions."""
    rnn = model.rnn
    previous = rnn.previous_memories(m)
    predicted = rnn.step_each(previous, x)
    spread = m.var(dim=0, unbiased=False).mean(-1)  # (T,)
    floored = spread.clamp_min(float(spread.mean()) * SPREAD_FLOOR + 1e-12)
    error = (predicted - m).pow(2).mean(dim=(0, 2))
    gap = error / floored
    update = (m - previous).pow(2).mean(dim=(0, 2)) / floored
    worst = int(gap.argmax())
    return {
        "by_position": gap.tolist(),
        "mean": float(error.sum() / spread.sum().clamp_min(1e-12)),
        "worst": float(gap[worst]),
        "worst_position": worst,
        "teacher_update_by_position": update.tolist(),
    }


def tangent_direction(m: Tensor, tokens: int, generator: torch.Generator) -> Tensor:
    """A random unit direction (N, Z) orthogonal, per memory token, to m (N, Z): a move along the memory sphere."""
    noise = torch.randn(m.shape, generator=generator).to(m)
    mt, nt = m.unflatten(-1, (tokens, -1)), noise.unflatten(-1, (tokens, -1))
    nt = nt - (nt * mt).sum(-1, keepdim=True) / mt.pow(2).sum(-1, keepdim=True).clamp_min(1e-12) * mt
    direction = nt.flatten(-2)
    return direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def error_growth(
    model: Model, x: Tensor, m: Tensor, steps: int = 8, positions: int = 16, epsilon: float = 1e-3, seed: int = 0
) -> dict:
    """Per-step growth factor of a perturbation of size `epsilon` placed on the teacher's m_t and carried k = `steps`
    RNN updates (inputs x_{t+1}..x_{t+k}) beside the unperturbed memory, at `positions` evenly spaced t.

    Memories that the cell RMS-normalizes stay on that sphere: the perturbation is tangent and renormalized, so a
    growth of 1 means neutral, below 1 contractive (drift is pulled back), above 1 expansive.
    """
    rnn = model.rnn
    batch, length, size = m.shape
    if length <= steps:
        raise ConfigError(f"error growth over {steps} steps needs sequences longer than {steps}, got {length}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.linspace(0, length - steps - 1, min(positions, length - steps)).round().long().unique()
    factors = []
    for t in starts.tolist():
        base = m[:, t]
        direction = tangent_direction(base, rnn.tokens, generator)
        perturbed = rms_normalize((base + epsilon * direction).unflatten(-1, (rnn.tokens, -1))).flatten(-2)
        initial = (perturbed - base).norm(dim=-1)
        a, b = base, perturbed
        for j in range(1, steps + 1):
            a, b = rnn.step(a, x[:, t + j]), rnn.step(b, x[:, t + j])
        ratio = (b - a).norm(dim=-1) / initial.clamp_min(1e-12)
        factors.append(float(ratio.clamp_min(1e-12).log().mean().div(steps).exp()))  # geometric mean per step
    values = torch.tensor(factors)
    return {
        "positions": starts.tolist(),
        "by_position": factors,
        "steps": steps,
        "epsilon": epsilon,
        "median": float(values.median()),
        "max": float(values.max()),
    }


def fit_probe(
    memories: Tensor, symbols: Tensor, classes: int, hidden: int = 64, iterations: int = 300, seed: int = 0
) -> nn.Module:
    """A small MLP probe memories (N, Z) -> symbol logits (N, classes), fitted full-batch with Adam."""
    torch.manual_seed(seed)
    probe = nn.Sequential(nn.Linear(memories.shape[-1], hidden), nn.GELU(), nn.Linear(hidden, classes))
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    with torch.enable_grad():
        for _ in range(iterations):
            loss = F.cross_entropy(probe(memories), symbols)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return probe


def probe_accuracy(
    train_m: Tensor, train_s: Tensor, test_m: Tensor, test_s: Tensor, classes: int, seed: int = 0, max_fit: int = 20_000
) -> tuple[float, Tensor]:
    """Fit a probe on memories (B, T, Z) for symbols (B, T) (-1 = undefined) and score it on the test set ->
    (accuracy over defined entries, accuracy per position (T,), NaN where no entry is defined)."""
    keep = torch.nonzero(train_s >= 0)
    if len(keep) > max_fit:  # an even subsample of the defined entries keeps the full-batch fit cheap
        keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))[:max_fit]]
    rows, cols = keep.unbind(-1)
    probe = fit_probe(train_m[rows, cols].float(), train_s[rows, cols], classes, seed=seed)
    with torch.no_grad():
        correct = (probe(test_m.float()).argmax(-1) == test_s) & (test_s >= 0)
    defined = (test_s >= 0).sum(0)
    by_position = correct.sum(0).float() / defined.clamp_min(1)
    by_position[defined == 0] = float("nan")
    return float(correct.sum() / (test_s >= 0).sum().clamp_min(1)), by_position


def information_probe(model: Model, task: Task, x: Tensor, y: Tensor, m: Tensor, rolled: Tensor, fit: int) -> dict:
    """Probe accuracy for `task.needed_symbol` from teacher memories m and from the RNN's rollout (both (B, T, Z)),
    fitted on the first `fit` sequences and scored on the rest. A task without such a symbol raises ConfigError."""
    try:
        needed = task.needed_symbol(x, y)
    except TaskError as exc:
        raise ConfigError(str(exc)) from exc
    classes = model.vocab_size
    out = {"chance": _chance(needed[fit:]), "positions": list(range(x.shape[1]))}
    for name, memories in (("teacher", m), ("rollout", rolled)):
        accuracy, by_position = probe_accuracy(memories[:fit], needed[:fit], memories[fit:], needed[fit:], classes)
        out[name] = accuracy
        out[f"{name}_by_position"] = [None if v != v else float(v) for v in by_position.tolist()]
    return out


def _chance(symbols: Tensor) -> float:
    """Accuracy of always answering the most frequent defined symbol."""
    defined = symbols[symbols >= 0]
    return float(defined.bincount().max() / defined.numel()) if defined.numel() else 0.0


@torch.no_grad()
def diagnostics(
    model: Model, task: Task, seq_len: int, batch_size: int = 128, seed: int = DIAGNOSTICS_SEED, growth_steps: int = 8
) -> dict:
    """All three diagnostics of an SMT run on fresh held-out sequences: {"markov_gap", "growth", "probe"}; "probe"
    is None for a task without a needed symbol. The probe is fitted on half the batch, scored on the other half."""
    if model.teacher is None:
        raise ConfigError("the diagnostics compare the RNN with its teacher; this run has no teacher (BPTT)")
    if batch_size < 4:
        raise ConfigError(f"the diagnostics need a batch of at least 4 sequences, got {batch_size}")
    device = next(model.parameters()).device
    x, y = (t.to(device) for t in task.held_out().sample(batch_size, seq_len, torch.Generator().manual_seed(seed)))
    chunks = [(model.teacher.encode(xc), model.rnn.rollout(xc)[0]) for xc in x.split(32)]  # bounded attention memory
    m, rolled = torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])
    # the local regime (a tiny perturbation, 8 steps) and a finite one: a perturbation the size of the noise
    # channel (RMS 0.2 per float) carried 32 steps, which says whether a rollout that has left the teacher comes back
    finite_steps = min(4 * growth_steps, seq_len - 1)
    result = {
        "markov_gap": markov_gap(model, x, m),
        "growth": error_growth(model, x, m, steps=min(growth_steps, seq_len - 1)),
        "growth_finite": error_growth(
            model, x, m, steps=finite_steps, epsilon=FINITE_PERTURBATION * m.shape[-1] ** 0.5
        ),
    }
    try:
        result["probe"] = information_probe(model, task, x, y, m, rolled, fit=batch_size // 2)
    except ConfigError:
        result["probe"] = None
    return result
