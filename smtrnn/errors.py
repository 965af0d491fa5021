"""Errors that reach the user as one line on stderr and exit code 2 (see `smtrnn.cli`)."""


class SmtrnnError(Exception):
    """Base class: a problem with the user's input, named in one line."""


class ConfigError(SmtrnnError):
    """An invalid or inconsistent run configuration or command-line argument."""


class CheckpointError(SmtrnnError):
    """A missing, corrupt or mismatched checkpoint, or an output directory that must not be overwritten."""


class DataError(SmtrnnError):
    """Missing, empty, malformed or too-short data (text, token files, images)."""
