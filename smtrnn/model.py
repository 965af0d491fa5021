"""The trainable pair: a teacher (SMT only) and the RNN, built from one `RunConfig`."""

from __future__ import annotations

from torch import nn

from smtrnn.config import TEACHER_METHODS, RunConfig
from smtrnn.rnn import RNN
from smtrnn.teacher import Teacher


class Model(nn.Module):
    """Holds `rnn` and, for the methods that use one (SMT, DMT), `teacher`; None for BPTT."""

    def __init__(self, cfg: RunConfig, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.rnn = RNN(cfg.memory, cfg.rnn, vocab_size)
        self.teacher = Teacher(cfg.memory, cfg.teacher, vocab_size) if cfg.train.method in TEACHER_METHODS else None
