"""Files written whole or not at all, and read only when they are what they claim: the storage primitives that
checkpoints (`smtrnn.checkpoint`), best-checkpoint records and label stores (`smtrnn.data.labels`) share. A leaf:
it imports nothing of smtrnn but its errors."""

from __future__ import annotations

import glob
import io
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from smtrnn.errors import CheckpointError

TMP = ".tmp"


def fsync_dir(path: Path) -> None:
    """Make the renames inside `path` durable (POSIX; where a folder cannot be opened this is a no-op)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """The one place a checkpoint's or a label shard's bytes reach the disk. Serializers write to memory first, so
    a full disk, a file-size limit or a read-only filesystem is an OSError naming its cause here (torch.save and
    safetensors would report it as an opaque RuntimeError or SafetensorError)."""
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        if exc.filename is None:  # a failed write names no file; this one does
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def safetensors_file(tensors: dict[str, torch.Tensor], format_name: str) -> Callable[[Path], None]:
    """A writer for `atomic_write`/`write_synced`: the tensors as a safetensors file with its format tag."""
    return lambda path: write_bytes(path, safetensors_bytes(tensors, metadata={"format": format_name}))


def torch_file(obj: Any) -> Callable[[Path], None]:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return lambda path: write_bytes(path, buffer.getvalue())


def write_synced(path: Path, write: Callable[[Path], Any]) -> None:
    write(path)
    # safetensors creates its files 0600; every file of a run gets the usual mode (0644 under a 022 umask)
    os.chmod(path, 0o666 & ~_umask())
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write to a temporary name, fsync, rename over `path`: readers see the old file or the new one, never half.
    The temporary file is created exclusively under a fresh name (`temporary_file`), so no file already there is
    ever written over or renamed into place. For the folders smtrnn owns (a run directory, a label store): the
    temporary files of `path` that a crash left are deleted first, so that they do not pile up."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}{TMP}"):  # mkstemp's 8 random characters
        stale.unlink(missing_ok=True)
    tmp = temporary_file(path)
    try:
        write_synced(tmp, write)
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: free what was written, and name the file asked for
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def temporary_file(path: Path) -> Path:
    """A new, empty file beside `path` (`.NAME.XXXXXXXX.tmp`, created with O_EXCL by `tempfile.mkstemp`) to be
    written and renamed onto `path`: a fixed name like NAME.tmp could be a file of the user's, lost to the rename.
    It gets the usual mode (0644 under a 022 umask), not mkstemp's 0600."""
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        os.fchmod(handle, 0o666 & ~_umask())
    finally:
        os.close(handle)
    return Path(name)


def regular_file(path: Path) -> bool:
    """Whether `path` is a regular file (or a link to one); False when nothing is there. Anything else (a FIFO, a
    device, a folder) is a CheckpointError naming it, found by stat alone: opening a FIFO to read it would wait
    forever for a writer."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise CheckpointError(f"{path} is unreadable: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path} is not a regular file")
    return True


def read_json(path: Path) -> Any:
    """The JSON in path; unparsable text is a one-line CheckpointError naming the file, and so is a path that is not
    a regular file (never opened)."""
    regular_file(path)
    try:
        return json.loads(path.read_text())
    # ValueError: bad JSON, bad UTF-8, or an integer past Python's digit limit; RecursionError: nested too deeply
    except (ValueError, RecursionError) as exc:  # (not Python's advice to raise its own digit limit)
        raise CheckpointError(f"{path} is corrupt: {str(exc).splitlines()[0].partition('; use sys.')[0]}") from exc
