"""The trainable pair: a teacher (SMT, DMT) and the RNN, built from the model configs."""

from __future__ import annotations

import torch
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

    def damage(self) -> str | None:
        """What makes a model unusable, or None: non-finite weights, or finite ones whose RNN writes non-finite
        memories or logits from m_∅ (an update of lr 1e30 leaves weights near 1e27, finite and useless)."""
        broken = [name for name, p in self.named_parameters() if not p.isfinite().all()]
        if broken:
            return f"{len(broken)} weight tensors are not finite (first {broken[0]})"
        x = torch.arange(8, device=next(self.parameters()).device)[None] % self.vocab_size  # (1, 8): every id < 8
        with torch.no_grad():
            memories, logits = self.rnn.rollout(x)
            outputs = [("the RNN's memories", memories), ("the RNN's logits", logits)]
            if self.teacher is not None:
                outputs.append(("the teacher's memories", self.teacher.encode(x)))
        for what, tensor in outputs:
            if not tensor.isfinite().all():
                largest = max(float(p.detach().abs().max()) for p in self.parameters())
                return f"{what} are not finite (largest |weight| {largest:.3g})"
        return None
