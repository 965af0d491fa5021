"""The teacher: a causal Transformer encoder that writes the memory m_t of every prefix in one pass, and a causal
decoder that predicts the future targets from m_t alone (the predictive-state objective, paper §3).

The paper's encoder re-reads a window with K appended register tokens and so yields one memory per window. Here
the encoder is causal and its per-position output is projected to the K memory tokens, so one forward pass over
x_0..x_{T-1} gives all T memories and m_t provably depends on x_≤t only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smtrnn.config import MemoryConfig, TeacherConfig
from smtrnn.errors import ConfigError
from smtrnn.layers import KVCache, Transformer, rms_normalize
from smtrnn.linear_attention import LinearCostTransformer
from smtrnn.losses import masked_cross_entropy

NO_INPUT = -100  # the last-input head's target before a row's first input: not read


class Encoder(nn.Module):
    def __init__(self, memory: MemoryConfig, cfg: TeacherConfig):
        super().__init__()
        self.tokens, self.width = memory.tokens, memory.width
        # Token shift: each position also sees its predecessor's embedding (causal), so "the token after X" is a
        # first-layer feature instead of a two-layer attention circuit the teacher must discover.
        self.shift = nn.Linear(cfg.width, cfg.width, bias=False) if cfg.token_shift else None
        if cfg.encoder == "linear":
            self.transformer = LinearCostTransformer(cfg.width, cfg.depth, cfg.heads, cfg.window)
        else:
            self.transformer = Transformer(cfg.width, cfg.depth, cfg.heads, causal=True, rotary=True)
        self.to_memory = nn.Linear(cfg.width, memory.size)

    def forward(self, embedded: Tensor) -> Tensor:
        """embedded inputs (B, T, W) -> memories (B, T, Z); each of the K tokens RMS-normalized."""
        if self.shift is not None:
            embedded = embedded + self.shift(F.pad(embedded, (0, 0, 1, 0))[:, :-1])
        h = self.transformer(embedded)
        return self._memory(h)

    def _memory(self, h: Tensor) -> Tensor:
        m = self.to_memory(h).unflatten(-1, (self.tokens, self.width))  # (B, T, K, D)
        return rms_normalize(m).flatten(-2)

    def step(self, embedded: Tensor, cache: EncoderCache) -> Tensor:
        """The next position's memory, embedded (B, W) -> m (B, Z), from a KV cache of the prefix (updated)."""
        if not isinstance(self.transformer, Transformer):
            raise ConfigError("the linear encoder (teacher.encoder=linear) has no KV cache; encode the prefix")
        x = embedded[:, None]
        if self.shift is not None:
            previous = torch.zeros_like(x) if cache.previous is None else cache.previous
            cache.previous = x
            x = x + self.shift(previous)
        return self._memory(self.transformer.step(x, cache.layers))[:, 0]


class EncoderCache:
    """What the encoder keeps to extend a prefix by one token: a KVCache per block and the last embedding."""

    def __init__(self, depth: int):
        self.layers = [KVCache() for _ in range(depth)]
        self.previous: Tensor | None = None

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)


class Decoder(nn.Module):
    """Causal Transformer over [K memory tokens; x_{t+1}..x_{t+Tf-1}]; the output at the last memory token
    predicts y_t and the output at x_{t+j} predicts y_{t+j}."""

    reads_future_inputs = True
    reads_targets_ahead = False  # trained on windows of Tf positions (NextTargetsDecoder is not)

    def __init__(self, memory: MemoryConfig, cfg: TeacherConfig, vocab_size: int):
        super().__init__()
        self.tokens, self.width = memory.tokens, memory.width
        self.from_memory = nn.Linear(memory.width, cfg.width)
        self.slot = nn.Parameter(torch.randn(memory.tokens, cfg.width) * 0.02)  # which memory token is which
        self.transformer = Transformer(cfg.width, cfg.decoder_depth, cfg.heads, causal=True, rotary=True)
        self.head = nn.Linear(cfg.width, vocab_size)

    def forward(self, m: Tensor, future: Tensor) -> Tensor:
        """m (N, Z), embedded future inputs (N, F, W) with 0 <= F -> logits (N, F+1, V) for y_t..y_{t+F}."""
        mem = self.from_memory(m.unflatten(-1, (self.tokens, self.width))) + self.slot  # (N, K, W)
        h = self.transformer(torch.cat([mem, future], dim=1))
        return self.head(h[:, self.tokens - 1 :])


class LinearDecoder(nn.Module):
    """Each future target y_{t+j}, j < Tf, read from m_t alone by its own linear map; the future inputs are not
    read. A memory this decoder can read holds the horizon's targets linearly (a superposition of codes), the form
    a linear map of the memory can update."""

    reads_future_inputs = False  # the teacher skips embedding them: (N, Tf-1, W) per step for nothing
    reads_targets_ahead = False

    def __init__(self, memory: MemoryConfig, cfg: TeacherConfig, vocab_size: int):
        super().__init__()
        self.future_len, self.vocab_size = cfg.future_len, vocab_size
        self.head = nn.Linear(memory.size, cfg.future_len * vocab_size)

    def forward(self, m: Tensor, future: Tensor) -> Tensor:
        """m (N, Z), embedded future inputs (N, F, W) (not read) -> logits (N, F+1, V) for y_t..y_{t+F}."""
        logits = self.head(m).unflatten(-1, (self.future_len, self.vocab_size))
        return logits[:, : future.shape[1] + 1]


class NextTargetsDecoder(nn.Module):
    """The next Tf targets after m_t's position (at or after t, however far, positions without a target skipped),
    each read from m_t alone by its own linear map: m_t must hold what the coming answers need in the same form
    wherever it stands, so a task whose answer is fixed once its needle has passed gets a memory that stays put
    until the answer, a form f can carry step to step. A decoder over positions t..t+Tf-1 (the others) supervises
    only the memories within Tf of a target, which the teacher may fill by reading the prefix there and then; with
    rows of one length, per-offset maps let each position keep the answer in a form of its own."""

    reads_future_inputs = False
    reads_targets_ahead = True  # the teacher's decoder_loss gives it `next_targets` targets, not windows of positions

    def __init__(self, memory: MemoryConfig, cfg: TeacherConfig, vocab_size: int):
        super().__init__()
        self.future_len, self.vocab_size = cfg.future_len, vocab_size
        self.head = nn.Linear(memory.size, cfg.future_len * vocab_size)

    def forward(self, m: Tensor, future: Tensor) -> Tensor:
        """m (N, Z), future (N, F, ·) (only its length read) -> logits (N, F+1, V) for the next F+1 targets; at a
        position with a target the first of them is its own."""
        logits = self.head(m).unflatten(-1, (self.future_len, self.vocab_size))
        return logits[:, : future.shape[1] + 1]


def next_targets(y: Tensor, count: int) -> Tensor:
    """y (B, T) -> (B, T, count): the first `count` targets at or after each position, in order, -1 past the
    row's last target."""
    length = y.shape[1]
    targeted = y >= 0
    steps = torch.arange(length, device=y.device)
    target_positions = torch.where(targeted, steps, length).sort(dim=1).values  # (B, T): targets first, in order
    rank = targeted.long().cumsum(1) - targeted.long()  # targets before t
    k = rank[..., None] + torch.arange(count, device=y.device)  # (B, T, count)
    valid = k < targeted.sum(1)[:, None, None]
    at = target_positions.gather(1, k.clamp(max=length - 1).flatten(1)).clamp(max=length - 1)
    return torch.where(valid, y.gather(1, at).view_as(k), -1)


DECODERS = {"transformer": Decoder, "linear": LinearDecoder, "next-targets": NextTargetsDecoder}


class Teacher(nn.Module):
    """Encoder and decoder sharing one token embedding (as in the paper)."""

    def __init__(self, memory: MemoryConfig, cfg: TeacherConfig, vocab_size: int):
        super().__init__()
        self.future_len, self.decoder_positions = cfg.future_len, cfg.decoder_positions
        self.future_input_dropout = cfg.future_input_dropout
        self.embedding = nn.Embedding(vocab_size, cfg.width)
        # the learned blank that replaces a dropped future input; only when the option is on, so that every parameter
        # gets a gradient (DDP, without find_unused_parameters, waits for one from each)
        self.blank = nn.Parameter(torch.zeros(cfg.width)) if cfg.future_input_dropout else None
        self.encoder = Encoder(memory, cfg)
        self.last_input_weight, self.last_inputs = cfg.last_input_weight, cfg.last_inputs
        self.last_input_head = nn.Linear(memory.size, cfg.last_inputs * vocab_size) if cfg.last_input_weight else None
        self.decoder = DECODERS[cfg.decoder](memory, cfg, vocab_size)

    def encode(self, x: Tensor) -> Tensor:
        """x (B, T) -> m (B, T, Z): m[:, t] summarizes x[:, :t+1]."""
        return self.encoder(self.embedding(x))

    def new_cache(self) -> EncoderCache:
        """An empty prefix for `encode_next`."""
        return EncoderCache(len(self.encoder.transformer.blocks))

    def encode_next(self, x: Tensor, cache: EncoderCache) -> Tensor:
        """x (B,) the next token of each sequence -> its memory m_t (B, Z), extending `cache`: the teacher run
        incrementally with a KV cache (O(t) per token) — equal to encode(prefix)[:, -1]."""
        return self.encoder.step(self.embedding(x), cache)

    def decode(self, m: Tensor, x_future: Tensor) -> Tensor:
        """m (N, Z), x_future (N, F) -> logits (N, F+1, V)."""
        return self.decoder(m, self.embedding(x_future))

    def sample_positions(self, y: Tensor) -> Tensor:
        """`decoder_positions` positions per sequence of y (B, T) -> (B, P), drawn among those whose window of Tf
        targets holds at least one, so a sparse task (one target at the end) does not spend the decoder on windows
        that carry no loss. With `decoder_positions` 0 or >= T, every position, once (P = T): a window without a
        target adds no loss, and a cheap decoder (the linear one) then trains on every memory of the batch."""
        batch, length = y.shape
        if self.decoder_positions == 0 or self.decoder_positions >= length:
            return torch.arange(length, device=y.device).expand(batch, length)
        if self.decoder.reads_targets_ahead:
            has_target = next_targets(y, 1)[..., 0] >= 0  # (B, T): a target at or after t
        else:
            _, y_win = future_windows(y, min(self.future_len, length))  # (B, T, Tf)
            has_target = (y_win >= 0).any(-1)  # (B, T)
        weights = has_target.float()
        weights[~has_target.any(-1)] = 1.0  # a sequence with no target at all: sample anywhere, it adds no loss
        return torch.multinomial(weights, self.decoder_positions, replacement=True)

    def decoder_loss(self, m: Tensor, x: Tensor, y: Tensor, positions: Tensor | None = None) -> Tensor:
        """Mean CE of the decoder's predictions of y_t..y_{t+Tf-1} from m_t and the teacher-forced future inputs,
        at `positions` (B, P) of each sequence (default: `sample_positions(y)`). m (B, T, Z), x and y (B, T)."""
        if self.decoder.reads_targets_ahead:
            return self._next_targets_loss(m, y, positions)
        batch, length = x.shape
        window = min(self.future_len, length)  # the decoder is causal: a horizon past the end changes no prediction
        idx, y_win = future_windows(y, window)  # (T, Tf), (B, T, Tf)
        t = self.sample_positions(y) if positions is None else positions  # (B, P)
        x_pad = F.pad(x, (0, window), value=0)
        x_future = x_pad[:, idx[:, 1:]]  # (B, T, Tf-1)
        rows = torch.arange(batch, device=x.device)[:, None]
        future_tokens = x_future[rows, t].flatten(0, 1)  # (B·P, Tf-1)
        if self.decoder.reads_future_inputs:
            future = self.embedding(future_tokens)  # (B·P, Tf-1, W)
            if self.blank is not None:  # the horizon without shortcuts: the memory must carry what a blank hides
                dropped = torch.rand(future.shape[:-1], device=x.device) < self.future_input_dropout
                future = torch.where(dropped[..., None], self.blank.to(future.dtype), future)
        else:  # only their count matters: an empty (B·P, Tf-1, 0) tensor
            future = m.new_empty(*future_tokens.shape, 0)
        logits = self.decoder(m[rows, t].flatten(0, 1), future)  # (B·P, Tf, V)
        return masked_cross_entropy(logits, y_win[rows, t].flatten(0, 1))

    def _next_targets_loss(self, m: Tensor, y: Tensor, positions: Tensor | None) -> Tensor:
        """NextTargetsDecoder's CE: each memory against the next Tf targets of its row, at `positions` (every
        position where `decoder_positions` is 0), without windows of future positions."""
        targets = next_targets(y, self.future_len)  # (B, T, Tf)
        if positions is None and 0 < self.decoder_positions < y.shape[1]:
            positions = self.sample_positions(y)
        if positions is not None:
            rows = torch.arange(y.shape[0], device=y.device)[:, None]
            m, targets = m[rows, positions], targets[rows, positions]
        logits = self.decoder.head(m).unflatten(-1, (self.future_len, -1))
        return masked_cross_entropy(logits, targets)

    def last_input_loss(self, m: Tensor, x: Tensor) -> Tensor:
        """Mean CE of the last-input head's readings of x_t, .., x_{t-n+1} from m_t (n = `teacher.last_inputs`;
        positions before the row's start are not read): m (B, T, Z), x (B, T) (`teacher.last_input_weight`)."""
        length = x.shape[1]
        earlier = [F.pad(x, (back, 0), value=NO_INPUT)[:, :length] for back in range(self.last_inputs)]
        logits = self.last_input_head(m).unflatten(-1, (self.last_inputs, -1))  # (B, T, n, V)
        return F.cross_entropy(logits.flatten(0, 2), torch.stack(earlier, -1).flatten(), ignore_index=NO_INPUT)

    def predict_next(self, m: Tensor) -> Tensor:
        """The teacher's own prediction of y_t from m_t alone: m (..., Z) -> logits (..., V)."""
        flat = m.reshape(-1, m.shape[-1])
        empty = flat.new_zeros(flat.shape[0], 0, dtype=torch.long)
        return self.decode(flat, empty)[:, 0].reshape(*m.shape[:-1], -1)


def future_windows(y: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Index table idx[t, j] = t + j (T, Tf) and the targets y_{t+j} (B, T, Tf), -1 past the end."""
    length = y.shape[1]
    idx = torch.arange(length, device=y.device)[:, None] + torch.arange(window, device=y.device)[None, :]
    return idx, F.pad(y, (0, window), value=-1)[:, idx]
