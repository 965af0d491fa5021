"""The trainable pair: a teacher (SMT, DMT) and the RNN, built from the model configs."""

from __future__ import annotations

from torch import nn

from smtrnn.config import TEACHER_METHODS, MemoryConfig, RNNConfig, RunConfig, TeacherConfig
from smtrnn.rnn import RNN
from smtrnn.teacher import Teacher


class Model(nn.Module):
    """Holds `rnn` and, when given a teacher config, `teacher` (else None: BPTT and the label methods)."""

    def __init__(self, memory: MemoryConfig, rnn: RNNConfig, vocab_size: int, teacher: TeacherConfig | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.rnn = RNN(memory, rnn, vocab_size)
        self.teacher = Teacher(memory, teacher, vocab_size) if teacher is not None else None

    @classmethod
    def for_run(cls, cfg: RunConfig, vocab_size: int) -> Model:
        """The model a run trains: with a teacher for the methods that train or use one (smt, dmt, smt+dmt)."""
        teacher = cfg.teacher if cfg.train.method in TEACHER_METHODS else None
        return cls(cfg.memory, cfg.rnn, vocab_size, teacher)
