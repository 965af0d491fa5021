"""Export the trained RNN alone (no teacher) as a step function with its state as explicit input and output, to run
outside smtrnn: TorchScript (`torch.jit.load`, no smtrnn import needed) or ONNX (onnxruntime).

    step(state (B, Z) float32, token (B,) int64) -> next_state (B, Z), logits (B, V)   the update f, then g
    readout(state (B, Z)) -> logits (B, V)                                           g alone
    initial state m_∅ (1, Z)                                                         where every sequence starts

TorchScript: one module with `forward` = step, `readout`, and the buffer `initial_state`. ONNX: the step graph
(inputs `state`, `token`; outputs `next_state`, `logits`; the batch dimension dynamic), with m_∅, Z and V in the
model's metadata (`initial_state` as a JSON list). Reading a prompt is then: state = m_∅; for each token,
state, logits = step(state, token); the last logits predict what follows.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from smtrnn.errors import ConfigError
from smtrnn.files import temporary_file
from smtrnn.rnn import RNN

FORMATS = ("torchscript", "onnx")


class StepFunction(nn.Module):
    """The RNN as a pure function of its state: forward(state, token) -> (next_state, logits)."""

    def __init__(self, rnn: RNN):
        super().__init__()
        self.rnn = rnn
        self.register_buffer("initial_state", rnn.init_state(1).detach().clone())  # m_∅, (1, Z)

    def forward(self, state: Tensor, token: Tensor) -> tuple[Tensor, Tensor]:
        next_state = self.rnn.step(state, token)
        return next_state, self.rnn.readout(next_state)

    def readout(self, state: Tensor) -> Tensor:
        return self.rnn.readout(state)


def _examples(rnn: RNN) -> tuple[Tensor, Tensor]:
    return rnn.init_state(2).detach().clone(), torch.zeros(2, dtype=torch.long)


def export_torchscript(rnn: RNN, out: Path) -> None:
    step = StepFunction(rnn).eval()
    state, token = _examples(rnn)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # nn.GRU/LSTM's own shape checks, traced as constants
        traced = torch.jit.trace_module(step, {"forward": (state, token), "readout": (state,)})
    traced.save(str(out))


def export_onnx(rnn: RNN, out: Path) -> None:
    try:
        import onnx
    except ImportError as exc:
        raise ConfigError("--format onnx needs the onnx and onnxscript packages: pip install 'smtrnn[export]'") from exc
    step = StepFunction(rnn).eval()
    state, token = _examples(rnn)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" and the like
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(
            step,
            (state, token),
            input_names=["state", "token"],
            output_names=["next_state", "logits"],
            dynamo=True,
            verbose=False,
            dynamic_shapes={"state": {0: batch}, "token": {0: batch}},
        )
    model = program.model_proto
    for key, value in (
        ("initial_state", json.dumps(step.initial_state[0].tolist())),
        ("memory_size", str(rnn.size)),
        ("vocab_size", str(rnn.readout_net[-1].out_features)),
        ("producer", "smtrnn export: the RNN alone; start from initial_state"),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))


def export(rnn: RNN, fmt: str, out: str | Path) -> Path:
    """Write the RNN's step function to `out` in `fmt` (torchscript or onnx); refuses to overwrite a file."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose from: {', '.join(FORMATS)}")
    out = Path(out)
    if os.path.lexists(out):  # lexists: a link to a missing file is there too, and would be replaced
        what = " (a link to a missing file)" if not out.exists() else ""
        raise ConfigError(f"--out {out} exists{what}; choose a new file")
    if out.parent.exists() and not out.parent.is_dir():
        raise ConfigError(f"--out {out}: {out.parent} is a file, not a folder")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")
    tmp = temporary_file(out)  # a fresh name: a file NAME.tmp of the user's is never written over
    rnn = rnn.cpu().eval()
    try:
        (export_torchscript if fmt == "torchscript" else export_onnx)(rnn, tmp)
        try:
            os.link(tmp, out)  # unlike a rename, refuses a file that appeared at `out` while the export ran
        except FileExistsError as exc:
            raise ConfigError(f"--out {out} appeared while exporting; choose a new file") from exc
        except OSError:  # a filesystem without hard links
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
