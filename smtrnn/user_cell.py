"""Bring your own cell: any `nn.Module` that satisfies the user-cell protocol trains by SMT, DMT and BPTT.

The protocol (what a user's class must offer):

    class MyCell(nn.Module):
        def __init__(self, tokens: int, width: int, embed: int, **cell_args): ...
            # tokens K and width D of the memory (Z = K·D floats), E the width of the embedded input token;
            # cell_args come from the config field rnn.cell_args (`--set rnn.cell_args='{"hidden": 64}'`)
        def forward(self, m, e):  # m (N, Z) the memory, RMS-normalized per token; e (N, E) -> m' (N, Z)

smtrnn wraps it (`UserCell`): the output is RMS-normalized per memory token, so every state lives on the teacher's
sphere as SMT needs, and a whole sequence is the step in a loop (`Cell.sequence`). The cell is named in the config
as an import path, `package.module:ClassName` (the working folder is searched too), or a file,
`path/to/file.py:ClassName` (`--cell`; in Python, `use_cell(cfg, MyCell, **cell_args)`); a checkpoint
records that name and its cell_args, and loading it imports the class again: a class that is missing, or whose
parameters no longer match the stored weights, is refused in one line.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

from torch import Tensor, nn

from smtrnn.cells import Cell
from smtrnn.config import MemoryConfig, RNNConfig, RunConfig
from smtrnn.errors import ConfigError

USER_CELL = re.compile(r"(?P<module>[^:]+):(?P<name>[A-Za-z_]\w*)")


def is_user_cell(name: str) -> bool:
    """Whether rnn.cell names a user's class (`module:Class` or `file.py:Class`) rather than a built-in cell."""
    return USER_CELL.fullmatch(name) is not None


def import_cell(name: str) -> type[nn.Module]:
    """The class `name` (module:Class or file.py:Class) names; a ConfigError in one line when it cannot be had."""
    match = USER_CELL.fullmatch(name)
    if match is None:
        raise ConfigError(f"rnn.cell {name!r} is neither a built-in cell nor MODULE:CLASS or FILE.py:CLASS")
    module_name, class_name = match["module"], match["name"]
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"cell {name!r}: no file {path}")
            key = f"smtrnn_user_cell_{abs(hash(str(path.resolve())))}"
            spec = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module  # dataclasses and pickling-free introspection look modules up there
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:  # as `python -m` would: the working folder
                sys.path.append(str(Path.cwd()))
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:  # ImportError, or whatever the user's module raised while loading
        raise ConfigError(f"cannot import cell {name!r}: {type(exc).__name__}: {exc}") from exc
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


class UserCell(Cell):
    """A user's cell under smtrnn's protocol: its output RMS-normalized per memory token; state keys `inner.*`."""

    def __init__(self, memory: MemoryConfig, cfg: RNNConfig):
        super().__init__(memory)
        cls = import_cell(cfg.cell)
        try:
            self.inner = cls(memory.tokens, memory.width, cfg.embed, **cfg.cell_args)
        except TypeError as exc:
            raise ConfigError(f"cell {cfg.cell!r} cannot be built with tokens={memory.tokens}, "
                              f"width={memory.width}, embed={cfg.embed} and rnn.cell_args {cfg.cell_args}: "
                              f"{exc}") from exc

    def forward(self, m: Tensor, e: Tensor) -> Tensor:
        out = self.inner(m, e)
        if out.shape != m.shape:
            raise ConfigError(f"cell {type(self.inner).__name__} returned a memory of shape {tuple(out.shape)}; "
                              f"the protocol needs the shape of its input memory {tuple(m.shape)}")
        return self.normalize(out)
