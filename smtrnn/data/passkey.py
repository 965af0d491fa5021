"""Passkey retrieval in prose: the standard long-context test for recurrent language models, over real text.

A sequence is T + 1 bytes w of English prose (bytes, vocab 256) with two insertions: the statement
``" The pass key is 48213. "`` at a uniformly random position p such that the whole statement lies in the first half
(positions p .. p + |statement| - 1 < T // 2), and at the end the question ``" What is the pass key? The pass key is "``
followed by the key's k digits. x = w_0..w_{T-1}, y = w_1..w_T: the key's digits are the last k targets, and the
first of them is predictable only from the statement, T/2 or more bytes back. The key is k random decimal digits
(a leading 0 allowed), stated once; the prose around it is a window of the split's own bytes (any text source that
`text` reads: a file, a folder, `builtin:english`), its own digits left where they were.

`statement_at` places the statement at that byte of every row instead of at random (None, the default): a probe of
where the RNN alone can still write the key, after how much prose (`smtrnn eval --key-at`).

`targets` picks what is labelled: "all" (default) every byte, the language model with the key inside it; "key" only
the key's digits at the end, retrieval in prose. Either way `answer_mask` marks the key's digits, and evaluation
reports their accuracy on its own (`rnn_answer_accuracy` per digit, `rnn_answer_exact` per key).

The splits are spans of the prose's bytes, documents in order: the first 1 - `valid_fraction` for training, then
validation and test halves of the rest, so the validation and test keys sit in prose training never read. Spans rather
than whole documents (as `text` splits) so that a long window fits each split: with `builtin:english` (the default,
about 470 KB) and `valid_fraction` = 0.4 each held-out split holds about 94 KB, enough for T = 65,536.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
from torch import Tensor

from smtrnn.data.data_task import DataTask
from smtrnn.data.real import load_corpus
from smtrnn.data.tasks import NO_TARGET, TaskError, register
from smtrnn.data.text import ENGLISH
from smtrnn.errors import DataError

STATEMENT = " The pass key is {key}. "
QUESTION = " What is the pass key? The pass key is "
TARGETS = ("all", "key")


@dataclass(frozen=True)
class Passkey(DataTask):
    """A key of `digits` digits stated once in the first half of a window of prose, asked for at the end (see the
    module docstring). Example with digits = 3, T = 48 (bytes shown as text, ``|`` the middle)::

        x:  "ed. The pass key is 507. It wo|rks by the What is the pass key? The pass key is 50"
        y:  every next byte ("all"); with "key" only the last three: 5, 0, 7
    """

    name: ClassVar[str] = "passkey"
    path: str | None = ENGLISH
    digits: int = 5
    targets: str = "all"
    max_bytes: int | None = None
    valid_fraction: float = 0.4
    split: str = "train"
    statement_at: int | None = None

    def __post_init__(self):
        self._check_split()
        self._require("digits", 1)
        if self.statement_at is not None and (isinstance(self.statement_at, bool) or self.statement_at < 0):
            raise TaskError(f"task 'passkey': statement_at must be a byte position >= 0, got {self.statement_at!r}")
        if self.targets not in TARGETS:
            raise TaskError(f"task 'passkey': targets must be one of {', '.join(TARGETS)}, got {self.targets!r}")
        if self.path is not None and self.path.endswith((".npy", ".bin")):
            raise TaskError(f"task 'passkey': path must be text (bytes), not a token file: {self.path}")

    def prose(self) -> Tensor:
        """This split's prose, a 1-D uint8 tensor of bytes."""
        try:
            return _prose_splits(self.path, self.max_bytes, self.valid_fraction)[self.split]
        except DataError as exc:
            raise TaskError(f"task 'passkey': {exc}") from exc

    @property
    def vocab_size(self) -> int:
        return 256

    def statement_len(self) -> int:
        return len(STATEMENT.format(key="0" * self.digits))

    def min_seq_len(self) -> int:
        """The statement fits in the first half, and the statement, question and key in the whole."""
        inserted = self.statement_len() + len(QUESTION) + self.digits
        return max(2 * self.statement_len(), inserted)

    def max_seq_len(self) -> int:
        """The prose between the insertions comes from one window of the split."""
        inserted = self.statement_len() + len(QUESTION) + self.digits
        return self.prose().numel() + inserted - 1  # T + 1 - inserted bytes of prose, at most the whole split

    def check_seq_len(self, seq_len: int) -> None:
        """The task's bounds, and a `statement_at` that leaves the statement, the question and the key room."""
        super().check_seq_len(seq_len)
        latest = self.prose_len(seq_len)
        if self.statement_at is not None and self.statement_at > latest:
            raise TaskError(
                f"task 'passkey': statement_at {self.statement_at} leaves no room for the question at seq_len "
                f"{seq_len} (at most {latest})"
            )

    def prose_len(self, seq_len: int) -> int:
        """The bytes of prose in a row of seq_len: T + 1 less the statement, the question and the key."""
        return seq_len + 1 - self.statement_len() - len(QUESTION) - self.digits

    def memory_bits(self) -> float | None:
        """With targets "key": the key and whether it has been stated; "all" also needs the language model's state,
        which the task cannot size."""
        return self.digits * math.log2(10) + 1 if self.targets == "key" else None

    def answer_mask(self, x: Tensor, y: Tensor) -> Tensor:
        mask = torch.zeros_like(y, dtype=torch.bool)
        mask[:, -self.digits :] = True
        return mask

    def lured_rows(self, x: Tensor, y: Tensor) -> Tensor:
        """Rows with a digit in the prose before the statement: a memory that keeps the first digit it reads
        answers that digit (`Task.lured_rows`)."""
        cue = torch.tensor(list(STATEMENT.split("{")[0].encode()), device=x.device)
        found = torch.ones(x.shape[0], x.shape[1] - len(cue) + 1, dtype=torch.bool, device=x.device)
        for offset, byte in enumerate(cue.tolist()):  # one (B, T) comparison at a time: no (B, T, |cue|) tensor
            found &= x[:, offset : offset + found.shape[1]] == byte
        statement = found.float().argmax(1)  # the first match: prose cannot hold the statement's words
        before = torch.arange(x.shape[1], device=x.device) < statement[:, None]
        return (before & (x >= ord("0")) & (x <= ord("9"))).any(1)

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        statement_len, question = self.statement_len(), torch.tensor(list(QUESTION.encode()), dtype=torch.long)
        prose_len = self.prose_len(seq_len)
        flat = self.prose()
        starts = torch.randint(0, flat.numel() - prose_len + 1, (batch_size,), generator=generator).tolist()
        keys = torch.randint(0, 10, (batch_size, self.digits), generator=generator)
        at = torch.randint(0, seq_len // 2 - statement_len + 1, (batch_size,), generator=generator).tolist()
        if self.statement_at is not None:  # drawn all the same, so the keys and prose match the random placement's
            at = [self.statement_at] * batch_size
        rows = []
        for start, key, p in zip(starts, keys, at):
            prose = flat[start : start + prose_len].to(torch.long)
            digits = "".join(str(int(d)) for d in key)
            statement = torch.tensor(list(STATEMENT.format(key=digits).encode()), dtype=torch.long)
            rows.append(torch.cat([prose[:p], statement, prose[p:], question, ord("0") + key]))
        w = torch.stack(rows)  # (B, T + 1)
        x, y = w[:, :-1].clone(), w[:, 1:].clone()
        if self.targets == "key":
            y[:, : -self.digits] = NO_TARGET
        return x.to(generator.device), y.to(generator.device)


@lru_cache(maxsize=4)
def _prose_splits(path: str | None, max_bytes: int | None, valid_fraction: float) -> dict[str, Tensor]:
    """{split: bytes}: the corpus's documents concatenated in order and cut into train, valid and test spans."""
    corpus = load_corpus(path, max_bytes=max_bytes)
    if corpus.vocab_size != 256:
        raise DataError(f"{path}: passkey reads prose as bytes; this source holds tokens of vocab {corpus.vocab_size}")
    flat = torch.cat([d.to(torch.uint8) for d in corpus.documents])
    train_end = round(flat.numel() * (1 - valid_fraction))
    valid_end = train_end + (flat.numel() - train_end) // 2
    return {"train": flat[:train_end], "valid": flat[train_end:valid_end], "test": flat[valid_end:]}


register({Passkey.name: Passkey})
