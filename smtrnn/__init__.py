"""smtrnn: train nonlinear recurrent networks without backpropagation through time, by Supervised Memory
Training (Kumar & Isola, "Pretraining Recurrent Networks without Recurrence", arXiv 2606.06479).

Shape legend, used in every docstring of the package:
    B batch, T time, Tf future length (decoder), P decoder positions per sequence,
    K memory tokens, D memory token width, Z = K·D memory size, E input-embedding width, V vocabulary.
Memories are flat (..., Z) tensors whose K tokens of width D are each RMS-normalized.
"""

from smtrnn.bptt import bptt_loss
from smtrnn.config import RunConfig, validate
from smtrnn.data.tasks import TASKS, make_task
from smtrnn.evaluate import evaluate
from smtrnn.model import Model
from smtrnn.presets import contractive, debug, long, recipe, small
from smtrnn.rnn import RNN
from smtrnn.sample import continue_prompt
from smtrnn.smt import smt_loss
from smtrnn.teacher import Teacher
from smtrnn.trainer import Trainer, train
from smtrnn.user_cell import use_cell

__version__ = "0.1.0"

__all__ = [
    "RNN",
    "TASKS",
    "Model",
    "RunConfig",
    "Teacher",
    "Trainer",
    "bptt_loss",
    "continue_prompt",
    "contractive",
    "debug",
    "evaluate",
    "long",
    "make_task",
    "recipe",
    "small",
    "smt_loss",
    "train",
    "use_cell",
    "validate",
]
