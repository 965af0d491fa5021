"""Bring your own cell: any `nn.Module` that satisfies the user-cell protocol trains by SMT, DMT and BPTT.

The protocol (what a user's class must offer):

    class MyCell(nn.Module):
        def __init__(self, tokens: int, width: int, embed: int, **cell_args): ...
            # tokens K and width D of the memory (Z = K·D floats), E the width of the embedded input token;
            # cell_args come from the config field rnn.cell_args (`--set rnn.cell_args='{"hidden": 64}'`)
        def forward(self, m, e):  # m (N, Z) the memory, RMS-normalized per token; e (N, E) -> m' (N, Z), floating

smtrnn wraps it (`UserCell`): the output is RMS-normalized per memory token, so every state lives on the teacher's
sphere as SMT needs, and a whole sequence is the step in a loop (`Cell.sequence`). The cell is named in the config
as an import path, `package.module:ClassName` (the working folder is searched too), or a file,
`path/to/file.py:ClassName` (`--cell`; in Python, `use_cell(cfg, MyCell, **cell_args)`); a checkpoint
records that name and its cell_args, and loading it imports the class again: a class that is missing, or whose
parameters no longer match the stored weights, is refused in one line.

A run directory is data that people share, but the cell it names is code, and importing code runs it. So loading a
run (eval, sample, export, label, `train --init/--labels` without their own `--cell`, `load_model`) whose cell is a
user's class is refused in one line unless the user trusts it (`--trust-cell-code`; in Python
`trust_cell_code=True`): `require_trusted_cell`. The line names the file or module and the sha256 of the class's
source file, which every checkpoint records at training (`source_record`, config.json's `cell_code`, copied into a
label store's manifest). Training with `--cell` is the user naming their own code, and needs no flag.

The user's code is the user's to debug: when it raises (or calls sys.exit) while it is imported, built or stepped,
smtrnn stops with one line naming the cell, then the cell's own traceback (`UserCodeError`; running out of memory
stays what it is). A forward that returns anything but a floating tensor of its input memory's shape is refused in
one line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from smtrnn.cells import Cell
from smtrnn.config import MemoryConfig, RNNConfig, RunConfig
from smtrnn.errors import CheckpointError, ConfigError, UserCodeError, out_of_memory

USER_CELL = re.compile(r"(?P<module>[^:]+):(?P<name>[A-Za-z_]\w*)")
# Frames of smtrnn, torch and the import machinery: those before the user's first frame are left out of their traceback
_NOT_USERS = (
    str(Path(__file__).parent) + os.sep,
    str(Path(torch.__file__).parent) + os.sep,
    str(Path(importlib.__file__).parent) + os.sep,
    "<frozen ",
)


def is_user_cell(name: str) -> bool:
    """Whether rnn.cell names a user's class (`module:Class` or `file.py:Class`) rather than a built-in cell."""
    return USER_CELL.fullmatch(name) is not None


def import_cell(name: str) -> type[nn.Module]:
    """The class `name` (module:Class or file.py:Class) names; a ConfigError in one line when it cannot be had."""
    match = USER_CELL.fullmatch(name)
    if match is None:
        raise ConfigError(f"rnn.cell {name!r} is neither a built-in cell nor MODULE:CLASS or FILE.py:CLASS")
    module_name, class_name = match["module"], match["name"]
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ConfigError(f"cell {name!r}: no file {path}")
        key = f"smtrnn_user_cell_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # dataclasses and pickling-free introspection look modules up there
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            sys.modules.pop(key, None)
            raise _blame(exc, name, "while importing it")
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:  # as `python -m` would: the working folder
            sys.path.append(str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (module_name + ".").startswith(exc.name + "."):  # the module's own import
                raise _blame(exc, name, "while importing it")
            raise ConfigError(f"cannot import cell {name!r}: {type(exc).__name__}: {exc}") from exc
        except (Exception, SystemExit) as exc:
            raise _blame(exc, name, "while importing it")
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ConfigError(f"cell {name!r}: {module_name} has no nn.Module class {class_name}")
    return cls


def cell_name(cls: type[nn.Module]) -> str:
    """The name under which a class is recorded in rnn.cell: MODULE:CLASS, or FILE.py:CLASS for a class defined in
    the script being run (whose module is __main__ and cannot be imported by name)."""
    if cls.__module__ == "__main__":
        return f"{Path(inspect.getfile(cls)).resolve()}:{cls.__name__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def use_cell(cfg: RunConfig, cls: type[nn.Module], **cell_args) -> RunConfig:
    """Train `cfg` with a user's cell class (the Python API's way to pass one): records its name and arguments in
    the config, so the checkpoint knows what to import again."""
    import_cell(cell_name(cls))  # the name must lead back to the class
    cfg.rnn.cell, cfg.rnn.cell_args = cell_name(cls), dict(cell_args)
    return cfg


def source_record(cls: type[nn.Module]) -> dict[str, str | None]:
    """{"file", "sha256"} of the source file that defines a user's cell class, taken when it is imported: a
    checkpoint records it (config.json's `cell_code`), so whoever loads the run later sees what code they would run."""
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:  # no source file (a class built at run time)
        path = None
    path = path or getattr(sys.modules.get(cls.__module__), "__file__", None)
    if path is None:
        return {"file": None, "sha256": None}
    return {"file": str(Path(path).resolve()), "sha256": _sha256(path)}


def _sha256(path: str | Path) -> str | None:
    """The hex sha256 of a regular file's bytes (never a FIFO or a device, whose read may not end), else None."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).is_file() else None
    except OSError:
        return None


def require_trusted_cell(cfg: RunConfig, record: Any, source: str | Path, trust: bool) -> None:
    """Refuse, in one line, to build a stored config's model (a run's, a label store's: `source`) whose cell is a
    user's class, unless the user trusts it: importing it runs its module's code, so a shared run could run anything.
    `record` is what training stored (`source_record`; absent in older runs): the line shows its sha256, so the user
    sees what they would trust. Built-in cells pass."""
    name = cfg.rnn.cell
    if trust or not is_user_cell(name):
        return
    module = USER_CELL.fullmatch(name)["module"]
    a_file = module.endswith(".py")
    record = record if isinstance(record, dict) else {}
    file, digest = record.get("file"), record.get("sha256")
    where = str(Path(module).absolute()) if a_file else file if isinstance(file, str) else None
    if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest):
        seen = f"sha256 {digest} at training"
        now = _sha256(module) if a_file else None  # the file that would be imported (only read, never run)
        if now is not None and now != digest:
            seen += f"; the file has changed since: sha256 {now} now"
    else:
        seen = "no sha256 recorded at training"
    seen = f"{where}, {seen}" if where else seen
    runs = "runs that file" if a_file else f"imports module {module}, which runs its code"
    raise CheckpointError(
        _printable(
            f"{source}: the cell is user code, {name} ({seen}); loading it {runs}: pass "
            "--trust-cell-code (Python: trust_cell_code=True) if you trust it"
        )
    )


class UserCell(Cell):
    """A user's cell under smtrnn's protocol: its output RMS-normalized per memory token; state keys `inner.*`.
    `code` is its source record (`source_record`), for the checkpoint."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        self.name = cfg.cell
        cls = import_cell(cfg.cell)
        self.code = source_record(cls)
        try:
            self.inner = cls(memory.tokens, memory.width, cfg.embed, **cfg.cell_args)
        except TypeError as exc:
            if _user_frames(exc):  # raised inside the user's __init__, not by the call's arguments
                raise _blame(exc, cfg.cell, "in __init__")
            raise ConfigError(
                f"cell {cfg.cell!r} cannot be built with tokens={memory.tokens}, "
                f"width={memory.width}, embed={cfg.embed} and rnn.cell_args {cfg.cell_args}: "
                f"{exc}"
            ) from exc
        except (Exception, SystemExit) as exc:
            raise _blame(exc, cfg.cell, "in __init__")

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        try:
            out = self.inner(m, e)
        except (Exception, SystemExit) as exc:
            raise _blame(exc, self.name, "in forward")
        if not isinstance(out, Tensor) or not out.is_floating_point() or out.shape != m.shape:
            raise ConfigError(
                _printable(
                    f"cell {self.name} returned {_describe(out)}; the protocol needs a floating "
                    f"tensor of its input memory's shape {tuple(m.shape)}"
                )
            )
        return self.normalize(out)


def _blame(exc: BaseException, name: str, phase: str) -> BaseException:
    """What to raise for an exception (or sys.exit) out of a user's cell code: a UserCodeError naming the cell and
    the phase, with the cell's own traceback; running out of memory is the machine's problem, and stays as it is."""
    if out_of_memory(exc):
        return exc
    if isinstance(exc, SystemExit):
        message = f"cell {name} called sys.exit({'' if exc.code is None else repr(exc.code)}) {phase}"
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"cell {name} raised {type(exc).__name__} {phase}" + (f": {first}" if first else "")
    error = UserCodeError(_printable(message), _own_traceback(exc))
    error.__cause__ = exc
    return error


def _own_traceback(exc: BaseException) -> str:
    """The traceback of `exc` from the user's first frame on (smtrnn's, torch's and the import machinery's frames
    before it left out), ending with the exception itself."""
    shown = traceback.format_list(_user_frames(exc))
    head = ["Traceback (most recent call last):\n", *shown] if shown else []
    return "".join(head + traceback.format_exception_only(type(exc), exc)).rstrip("\n")


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of `exc`'s traceback from the first that is not smtrnn's, torch's or the import machinery's on."""
    frames = traceback.extract_tb(exc.__traceback__)
    first = next((i for i, frame in enumerate(frames) if not frame.filename.startswith(_NOT_USERS)), len(frames))
    return list(frames[first:])


def _describe(out: Any) -> str:
    """What a cell's forward returned, for the one-line refusal: type, and a tensor's shape and dtype."""
    if isinstance(out, Tensor):
        return f"a memory of shape {tuple(out.shape)}, dtype {str(out.dtype).removeprefix('torch.')}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items ({', '.join(type(item).__name__ for item in out[:4])})"
    return "None" if out is None else f"a {type(out).__name__}"


def _printable(text: str) -> str:
    """One line, whatever a config (or a user's message) holds: control characters escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
