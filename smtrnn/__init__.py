"""smtrnn: train nonlinear recurrent networks without backpropagation through time, by Supervised Memory
Training (Kumar & Isola, "Pretraining Recurrent Networks without Recurrence", arXiv 2606.06479).

Shape legend, used in every docstring of the package:
    B batch, T time, Tf future length (decoder), P decoder positions per sequence,
    K memory tokens, D memory token width, Z = K·D memory size, E input-embedding width, V vocabulary.
Memories are flat (..., Z) tensors whose K tokens of width D are each RMS-normalized.
"""

import importlib

# The public names and the modules that define them, imported on first use (PEP 562): `import smtrnn` costs nothing,
# so the command line can start (and be interrupted) before torch is loaded.
_WHERE = {
    "bptt_loss": "smtrnn.bptt",
    "RunConfig": "smtrnn.config",
    "validate": "smtrnn.config",
    "TASKS": "smtrnn.data.tasks",
    "make_task": "smtrnn.data.tasks",
    "evaluate": "smtrnn.evaluate",
    "Model": "smtrnn.model",
    "debug": "smtrnn.presets",
    "recipe": "smtrnn.presets",
    "small": "smtrnn.presets",
    "staged": "smtrnn.presets",
    "RNN": "smtrnn.rnn",
    "continue_prompt": "smtrnn.sample",
    "smt_loss": "smtrnn.smt",
    "Teacher": "smtrnn.teacher",
    "Trainer": "smtrnn.trainer",
    "train": "smtrnn.trainer",
    "use_cell": "smtrnn.user_cell",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'smtrnn' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


__version__ = "0.1.0"

__all__ = sorted(_WHERE)
