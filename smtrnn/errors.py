"""Errors that reach the user as one line on stderr: exit code 2 for bad input and for a resource the command
cannot have (disk space, permission, memory; see `smtrnn.cli`), 1 for a training run that fails on its own."""


class SmtrnnError(Exception):
    """Base class: a problem with the user's input, named in one line."""


class ConfigError(SmtrnnError):
    """An invalid or inconsistent run configuration or command-line argument."""


class CheckpointError(SmtrnnError):
    """A missing, corrupt or mismatched checkpoint, or an output directory that must not be overwritten."""


class DataError(SmtrnnError):
    """Missing, empty, malformed or too-short data (text, token files, images)."""


class TrainingError(SmtrnnError):
    """Training cannot go on: a non-finite loss or gradient (beyond `train.skip_nonfinite_steps`). The run's last
    checkpoint is left as it was; `smtrnn train` exits 1."""


class SaveError(TrainingError):
    """A checkpoint cannot be written (a full disk, a file-size limit, a read-only filesystem, no permission); the
    previous checkpoint is left whole. A resource problem, not the run's own: `smtrnn train` exits 2."""


class UserCodeError(SmtrnnError):
    """A user's own code (a cell, `smtrnn.user_cell`) raised, or called sys.exit, while smtrnn ran it. The message
    is one line naming that code; `traceback` holds its own frames (from the user's first on): what the user needs
    to fix their code, without smtrnn's internals. `smtrnn` prints both and exits 2."""

    def __init__(self, message: str, traceback: str):
        super().__init__(message)
        self.traceback = traceback


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocator's out-of-memory error (MemoryError, torch.OutOfMemoryError and the CPU
    allocator's are RuntimeErrors saying so): a resource problem, never blamed on the code that asked."""
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and any(words in str(exc) for words in ("can't allocate memory", "out of memory"))
    )
