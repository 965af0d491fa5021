"""Evaluation of the RNN alone, rolled out from m_∅ on fresh sequences, plus the SMT diagnostics.

What decides success is the RNN alone. For SMT runs the teacher's own scores sit beside it, together with the two
failure modes to watch: drift (δ_t = mean over the Z entries of (m̂_t − m_t)², where m̂ is the RNN's own rollout and
m the teacher's memory; 0 = identical, about 2 = unrelated unit-RMS memories) and collapse (effective rank and
uniformity of a batch of teacher memories). One-step accuracy — the readout of f(m_{t-1}, x_t) on teacher
memories — separates a poor one-step fit from compounding drift.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from smtrnn.config import TEACHER_METHODS, RunConfig
from smtrnn.data.tasks import Task
from smtrnn.losses import masked_accuracy, uniformity
from smtrnn.model import Model

EVAL_SEED = 1_000_003  # held-out stream: training streams use the run's seed, evaluation always this one
TEST_SEED = 2_000_003  # a synthetic task's test stream (final numbers), apart from the validation stream above
SPLIT_SEEDS = {"valid": EVAL_SEED, "test": TEST_SEED}


def evaluation_bytes(cfg: RunConfig, vocab_size: int, seq_len: int, batch_size: int) -> int:
    """About the peak memory `evaluate` needs for batches of `batch_size` sequences of `seq_len`: it holds whole
    sequences, so the cost grows with B·T, and a length of a billion must be refused before it is tried, not found
    out by the kernel's OOM killer.

    Per position, in float32: the RNN's rollout (memories (B, T, Z) and logits (B, T, V)); with a teacher, its
    memories, the one-step predictions' input and its logits too (3Z + 2V held); plus the largest of the transient
    working sets: the rollout's stacking and readout (Z + 2 readout widths), the teacher's Transformer (about 13
    activations of its width per token: norms, q/k/v, attention output, the 4x MLP and its GELU) over the T inputs
    in the encoder and over the K memory tokens in the decoder (a linear decoder: Tf·V logits instead), the cell's
    MLP on every step at once (3 hidden widths). Attention adds no T²: scaled_dot_product_attention's fused kernels
    never hold the (T, T) scores. Against the peak RSS on CPU (debug and small presets, the transformer cell,
    BPTT): within 20 %."""
    z, v = cfg.memory.size, vocab_size
    readout = z + 2 * cfg.rnn.readout_hidden
    if cfg.train.method not in TEACHER_METHODS:
        floats = z + v + readout
    else:
        width = cfg.teacher.width
        decoder = cfg.teacher.future_len * v if cfg.teacher.decoder != "transformer" else 13 * width * cfg.memory.tokens
        floats = 3 * z + 2 * v + max(readout, 13 * width, decoder, 3 * cfg.rnn.hidden + z)
    return batch_size * seq_len * (4 * floats + 16)  # + x and y, int64


STREAM_FLOATS = 1 << 23  # floats one chunk of a streamed rollout may hold (memories and logits): 32 MB


def stream_chunk(batch_size: int, memory_size: int, vocab_size: int) -> int:
    """Steps per chunk of a streamed rollout of `batch_size` sequences: as many as keep its memories and logits
    within STREAM_FLOATS, at least 1."""
    return max(1, STREAM_FLOATS // (batch_size * (memory_size + vocab_size)))


def rnn_alone_bytes(cfg: RunConfig, vocab_size: int, seq_len: int, sequences: int) -> int:
    """About the peak memory `evaluate_rnn_alone` needs for `sequences` sequences of `seq_len`: their inputs and
    targets (int64), and one chunk of the streamed rollout (memories, logits and the cell's working set); the
    RNN's own state is O(1) per token."""
    z, v = cfg.memory.size, vocab_size
    chunk = min(seq_len, stream_chunk(sequences, z, v))
    working = z + 2 * v + 3 * cfg.rnn.hidden + 2 * cfg.rnn.readout_hidden
    return sequences * (16 * seq_len + 4 * chunk * working)


class _Score:
    """Accumulates accuracy and CE (bits) over labelled positions."""

    def __init__(self):
        self.correct = self.labelled = 0
        self.nats = 0.0

    def add(self, logits: Tensor, y: Tensor) -> None:
        correct, labelled = masked_accuracy(logits, y)
        self.correct += correct
        self.labelled += labelled
        mask = y >= 0
        if labelled:
            self.nats += F.cross_entropy(logits[mask].float(), y[mask], reduction="sum").item()

    def accuracy(self) -> float:
        return self.correct / max(self.labelled, 1)

    def bits(self) -> float:
        return self.nats / max(self.labelled, 1) / math.log(2)


class _AnswerScore:
    """Accuracy on a task's answer targets alone (`Task.answer_mask`: passkey's key digits), per target and per
    sequence (every answer target of the sequence right)."""

    def __init__(self):
        self.correct = self.labelled = self.exact = self.sequences = 0

    def add(self, right: Tensor, answers: Tensor) -> None:
        """right (B, T): argmax == target over whole sequences; answers (B, T): which targets are answers."""
        self.correct += int((right & answers).sum())
        self.labelled += int(answers.sum())
        asked = answers.any(-1)
        self.exact += int(((right | ~answers).all(-1) & asked).sum())
        self.sequences += int(asked.sum())

    def report(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_answer_accuracy": self.correct / max(self.labelled, 1),
            f"{prefix}_answer_exact": self.exact / max(self.sequences, 1),
        }


class _PositionBits:
    """CE (bits) per position t of a document: how much the context read so far helps (long context is where an
    RNN reading whole documents should keep improving). Grows with the longest document seen."""

    def __init__(self):
        self.nats = torch.zeros(0, dtype=torch.float64)
        self.labelled = torch.zeros(0, dtype=torch.float64)

    def add(self, logits: Tensor, y: Tensor, offset: int = 0) -> None:
        """logits (B, T, V), y (B, T): the scores of positions offset .. offset + T - 1."""
        mask = y >= 0
        nats = F.cross_entropy(logits.float().transpose(1, 2), y.clamp_min(0), reduction="none") * mask
        end = offset + y.shape[1]
        if end > len(self.nats):
            grow = end - len(self.nats)
            self.nats = torch.cat([self.nats, torch.zeros(grow, dtype=torch.float64)])
            self.labelled = torch.cat([self.labelled, torch.zeros(grow, dtype=torch.float64)])
        self.nats[offset:end] += nats.sum(0).double().cpu()
        self.labelled[offset:end] += mask.sum(0).double().cpu()

    def by_bucket(self) -> dict[str, float]:
        """{"0": bits, "1": ..., "2-3": ..., "4-7": ...}: bits per token in power-of-two buckets of t."""
        out = {}
        for a, b in drift_buckets(len(self.nats)):
            labelled = float(self.labelled[a:b].sum())
            if labelled:
                out[_bucket_name(a, b)] = float(self.nats[a:b].sum()) / labelled / math.log(2)
        return out


def drift_buckets(length: int) -> list[tuple[int, int]]:
    """Position buckets [0,1), [1,2), [2,4), [4,8), ... covering 0..T-1."""
    buckets, start = [(0, 1)], 1
    while start < length:
        buckets.append((start, min(2 * start, length)))
        start *= 2
    return buckets


def singular_spectrum(memories: Tensor) -> Tensor:
    """Singular values of centered memories (N, Z), normalized to sum 1: the shape of the memory cloud."""
    centered = memories.float() - memories.float().mean(0, keepdim=True)
    s = torch.linalg.svdvals(centered)
    return s / s.sum().clamp_min(1e-12)


def effective_rank(memories: Tensor) -> float:
    """exp(entropy) of the normalized singular values of centered memories (N, Z): 1 = collapsed to a line."""
    p = singular_spectrum(memories)
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))


class _PositionScore:
    """Correct and labelled counts per position t, reported per drift bucket."""

    def __init__(self, length: int):
        self.correct, self.labelled = torch.zeros(length), torch.zeros(length)

    def add(self, logits: Tensor, y: Tensor) -> None:
        mask = y >= 0
        self.correct += ((logits.argmax(-1) == y) & mask).sum(0).float().cpu()
        self.labelled += mask.sum(0).float().cpu()

    def by_bucket(self) -> dict[str, float]:
        out = {}
        for a, b in drift_buckets(len(self.labelled)):
            labelled = float(self.labelled[a:b].sum())
            if labelled:
                out[_bucket_name(a, b)] = float(self.correct[a:b].sum()) / labelled
        return out


@torch.no_grad()
def evaluate(
    model: Model,
    task: Task,
    seq_len: int,
    batches: int,
    batch_size: int,
    seed: int | None = None,
    curves: bool = False,
    split: str = "valid",
) -> dict:
    """Score the RNN alone (and, when present, the teacher) on `batches` fresh batches of the held-out `split`
    ("valid" during training and for choosing settings, "test" for final numbers), drawn with `seed` (default: the
    split's own, SPLIT_SEEDS).

    `curves` adds result["curves"]: drift δ_t for every t, accuracy per position bucket (rollout, one-step on
    teacher memories, teacher) and the normalized singular spectra of RNN and teacher memories (the data behind
    `smtrnn eval --plots`).
    """
    device = next(model.parameters()).device
    held_out = task.held_out(split)  # a data task's split; a synthetic task itself, under the split's seed
    generator = torch.Generator().manual_seed(SPLIT_SEEDS[split] if seed is None else seed)
    rnn, teacher = model.rnn, model.teacher
    rnn_score, teacher_score, onestep_score, readout_score = _Score(), _Score(), _Score(), _Score()
    rnn_answers, teacher_answers = _AnswerScore(), _AnswerScore()
    positions = {name: _PositionScore(seq_len) for name in ("rnn", "onestep", "teacher")}
    drift_sum = torch.zeros(seq_len, dtype=torch.float64)
    spread_sum = torch.zeros(seq_len, dtype=torch.float64)  # variance of teacher memories across sequences
    labelled_at = torch.zeros(seq_len, dtype=torch.bool)
    first_batch = None
    for _ in range(batches):
        x, y = (t.to(device) for t in held_out.sample(batch_size, seq_len, generator))
        answers = held_out.answer_mask(x, y)
        rolled, logits = rnn.rollout(x)  # the RNN alone, from m_∅
        rnn_score.add(logits, y)
        positions["rnn"].add(logits, y)
        if answers is not None:
            rnn_answers.add(logits.argmax(-1) == y, answers)
        if teacher is None:
            first_batch = first_batch or {"rnn": rolled}
            continue
        m = teacher.encode(x)
        teacher_logits = teacher.predict_next(m)
        teacher_score.add(teacher_logits, y)
        if answers is not None:
            teacher_answers.add(teacher_logits.argmax(-1) == y, answers)
        positions["teacher"].add(teacher_logits, y)
        readout_score.add(rnn.readout(m), y)
        onestep_logits = rnn.readout(rnn.step_each(rnn.previous_memories(m), x))
        onestep_score.add(onestep_logits, y)
        positions["onestep"].add(onestep_logits, y)
        drift_sum += (rolled - m).pow(2).mean(dim=(0, 2)).double().cpu()
        spread_sum += m.var(dim=0, unbiased=False).mean(dim=-1).double().cpu()
        labelled_at |= (y >= 0).any(dim=0).cpu()
        first_batch = first_batch or {"rnn": rolled, "teacher": m}
    result = {
        "rnn_accuracy": rnn_score.accuracy(),
        "rnn_bits_per_token": rnn_score.bits(),
        "labelled_tokens": rnn_score.labelled,
        "rnn_effective_rank": effective_rank(first_batch["rnn"].flatten(0, 1)),
    } | (rnn_answers.report("rnn") if rnn_answers.sequences else {})
    if curves:
        result["curves"] = {
            "accuracy_by_position": {
                name: score.by_bucket() for name, score in positions.items() if score.labelled.any()
            },
            "singular_values": {
                name: singular_spectrum(memories.flatten(0, 1)).tolist() for name, memories in first_batch.items()
            },
        }
    if teacher is None:
        return result
    drift = drift_sum / batches
    if curves:
        result["curves"]["drift"] = drift.tolist()
    teacher_memories = first_batch["teacher"]
    result |= teacher_answers.report("teacher") if teacher_answers.sequences else {}
    result |= {
        "teacher_accuracy": teacher_score.accuracy(),
        "teacher_bits_per_token": teacher_score.bits(),
        "readout_on_teacher_accuracy": readout_score.accuracy(),
        "onestep_accuracy": onestep_score.accuracy(),
        # the gap between teacher and RNN alone in bits, step by step: the readout on the teacher's own memories,
        # then the cell's one step from them, then the rollout from m_∅ (rnn_bits_per_token): where the bits go
        "readout_on_teacher_bits_per_token": readout_score.bits(),
        "onestep_bits_per_token": onestep_score.bits(),
        "drift": {_bucket_name(a, b): float(drift[a:b].mean()) for a, b in drift_buckets(seq_len)},
        "drift_final": float(drift[-1]),
        # where the answers are read: the drift there, and as a multiple of how much teacher memories differ
        # between sequences at those positions (>= 1: the RNN's error is as large as the signal), a ratio of sums
        # over those positions, so one where every sequence has the same memory (a blank border) divides nothing
        "drift_labelled": float(drift[labelled_at].mean()) if labelled_at.any() else 0.0,
        "drift_relative": float(drift_sum[labelled_at].sum() / spread_sum[labelled_at].sum().clamp_min(1e-12))
        if labelled_at.any()
        else 0.0,
        "memory_effective_rank": effective_rank(teacher_memories.flatten(0, 1)),
        "memory_uniformity": float(
            uniformity(
                teacher_memories.reshape(-1, rnn.width), 512, generator=torch.Generator(device=device).manual_seed(0)
            )
        ),
    }
    return result


def _bucket_name(start: int, stop: int) -> str:
    return str(start) if stop == start + 1 else f"{start}-{stop - 1}"


@torch.no_grad()
def evaluate_documents(
    model: Model, task: Task, seq_len: int, batch_size: int, max_tokens: int = 0, split: str = "valid"
) -> dict:
    """Bits per token over the whole documents (text) or images (pixels) of a data task's held-out `split`.

    The RNN alone reads each document from m_∅ to its end, O(1) memory per token, in chunks of T. The teacher, a
    Transformer trained on windows of T, scores the same tokens in consecutive windows of T (its context restarts
    at each window). `max_tokens` > 0 stops after that many tokens (documents in order, the last one cut), and the
    report says so. `rnn_bits_by_position` gives the RNN's bits by position t in the document (power-of-two
    buckets), `teacher_bits_by_position` the teacher's by position within its window: whether more context keeps
    helping.
    """
    device = next(model.parameters()).device
    pairs, total = [], 0
    for x, y in task.held_out(split).documents_xy():
        if max_tokens and total + x.numel() > max_tokens:
            x, y = x[: max_tokens - total], y[: max_tokens - total]
        if x.numel():
            pairs.append((x, y))
            total += x.numel()
        if max_tokens and total >= max_tokens:
            break
    rnn_score, teacher_score = _Score(), _Score()
    rnn_positions, teacher_positions = _PositionBits(), _PositionBits()
    pairs.sort(key=lambda pair: pair[0].numel())  # similar lengths share a batch: little padding
    for start in range(0, len(pairs), batch_size):
        group = pairs[start : start + batch_size]
        x = torch.nn.utils.rnn.pad_sequence([p[0] for p in group], batch_first=True).to(device)
        y = torch.nn.utils.rnn.pad_sequence([p[1] for p in group], batch_first=True, padding_value=-1).to(device)
        for t, logits in stream_rollout(model.rnn, x, seq_len):
            rnn_score.add(logits, y[:, t : t + seq_len])
            rnn_positions.add(logits, y[:, t : t + seq_len], offset=t)
        if model.teacher is not None:
            pad = -x.shape[1] % seq_len
            windows = F.pad(x, (0, pad)).view(-1, seq_len)
            targets = F.pad(y, (0, pad), value=-1).view(-1, seq_len)
            for w in range(0, windows.shape[0], batch_size):
                m = model.teacher.encode(windows[w : w + batch_size])
                teacher_logits = model.teacher.predict_next(m)
                teacher_score.add(teacher_logits, targets[w : w + batch_size])
                teacher_positions.add(teacher_logits, targets[w : w + batch_size])  # t within its window of T
    result = {
        "documents": len(pairs),
        "tokens": rnn_score.labelled,
        "truncated": bool(max_tokens) and total >= max_tokens,
        "rnn_bits_per_token": rnn_score.bits(),
        "rnn_nats_per_token": rnn_score.bits() * math.log(2),
        "rnn_accuracy": rnn_score.accuracy(),
        "rnn_bits_by_position": rnn_positions.by_bucket(),
    }
    if model.teacher is not None:
        result |= {
            "teacher_bits_per_token": teacher_score.bits(),
            "teacher_accuracy": teacher_score.accuracy(),
            "teacher_bits_by_position": teacher_positions.by_bucket(),
        }
    return result


def stream_rollout(rnn, x: Tensor, chunk: int):
    """The RNN alone from m_∅ over x (B, T), `chunk` steps at a time, carrying only the state between chunks ->
    yields (start, logits (B, chunk, V)) for x[:, start : start + chunk]: O(1) memory per token, whatever T."""
    state = None
    for start in range(0, x.shape[1], chunk):
        memories, logits = rnn.rollout(x[:, start : start + chunk], state)
        state = memories[:, -1]
        yield start, logits


@torch.no_grad()
def evaluate_rnn_alone(
    model: Model, task: Task, seq_len: int, batches: int, batch_size: int, split: str = "valid", seed: int | None = None
) -> dict:
    """The RNN alone from m_∅ at any length, streamed and without the teacher: the `batches` batches of `batch_size`
    sequences that `evaluate` draws (so the same scores), run together chunk by chunk (`stream_rollout`). What it
    holds is the sequences' token ids and one chunk (`rnn_alone_bytes`), so T = 65,536 and beyond fit a laptop ->
    {"rnn_accuracy", "rnn_bits_per_token", "labelled_tokens"}, and the answer scores where the task has answers
    (with lures, `Task.lured_rows`: their share and the exact answer accuracy of rows with and without one)."""
    device = next(model.parameters()).device
    held_out = task.held_out(split)
    held_out.check_seq_len(seq_len)
    generator = torch.Generator().manual_seed(SPLIT_SEEDS[split] if seed is None else seed)
    drawn = [held_out.sample(batch_size, seq_len, generator) for _ in range(batches)]
    x, y = (torch.cat(parts).to(device) for parts in zip(*drawn))
    answers = held_out.answer_mask(x, y)
    right = torch.zeros_like(x, dtype=torch.bool) if answers is not None else None
    score = _Score()
    chunk = stream_chunk(x.shape[0], model.rnn.size, model.vocab_size)
    for start, logits in stream_rollout(model.rnn, x, chunk):
        targets = y[:, start : start + chunk]
        score.add(logits, targets)
        if right is not None:
            right[:, start : start + chunk] = logits.argmax(-1) == targets
    result = {
        "rnn_accuracy": score.accuracy(),
        "rnn_bits_per_token": score.bits(),
        "labelled_tokens": score.labelled,
    }
    if answers is not None:
        answer_score = _AnswerScore()
        answer_score.add(right, answers)
        result |= answer_score.report("rnn")
        lured = held_out.lured_rows(x, y)
        if lured is not None:  # where the answer fails: after a lure (a token like it, read first) or without one
            result["lured_rows"] = float(lured.float().mean())
            for name, rows in (("lured", lured), ("unlured", ~lured)):
                apart = _AnswerScore()
                apart.add(right[rows], answers[rows])
                result[f"rnn_answer_exact_{name}"] = apart.report("rnn")["rnn_answer_exact"] if rows.any() else None
    return result


def evaluate_lengths(
    model: Model,
    task: Task,
    lengths: list[int],
    batches: int,
    batch_size: int,
    split: str = "valid",
    teacher: bool = False,
) -> dict:
    """Length generalization: the RNN alone scored at each of `lengths`, which may differ from the training length,
    streamed (`evaluate_rnn_alone`) -> {str(T): {"rnn_accuracy", "rnn_bits_per_token", ...}}. `teacher` also scores
    the teacher there, with drift and the one-step accuracy (`evaluate`: its attention holds whole sequences, so
    check `evaluation_bytes` first). A length the task cannot give (below its minimum, or past a data split) is a
    TaskError naming it, before anything is scored."""
    held_out = task.held_out(split)
    for length in lengths:
        held_out.check_seq_len(length)
    keep = (
        "rnn_accuracy",
        "rnn_bits_per_token",
        "labelled_tokens",
        "rnn_answer_accuracy",
        "rnn_answer_exact",
        "teacher_accuracy",
        "teacher_bits_per_token",
        "teacher_answer_accuracy",
        "teacher_answer_exact",
        "onestep_accuracy",
        "drift_final",
        "drift_labelled",
    )
    scores = {}
    for length in lengths:
        if teacher and model.teacher is not None:  # one pass over whole sequences scores both
            full = evaluate(model, task, length, batches, batch_size, split=split)
            scores[str(length)] = {k: v for k, v in full.items() if k in keep}
        else:
            scores[str(length)] = evaluate_rnn_alone(model, task, length, batches, batch_size, split)
    return scores
