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
