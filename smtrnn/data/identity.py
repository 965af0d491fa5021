"""Which data a run trained on: the source's absolute path and a fingerprint of its contents.

A run stores its `--data` as an absolute path (`absolute_source`), so scoring it from another directory reads the same
file, and records a fingerprint of what was there (`fingerprint`, in every checkpoint's config.json as `data`): the
total size and a sha256 over each file's name within a folder, size and contents, whole up to WHOLE_BYTES in all
and then SAMPLED_BLOCKS blocks of BLOCK_BYTES per file, so a large corpus is never read whole. `check_same_data`
refuses, in one line naming both, data whose fingerprint differs from the recorded one. Sources that are not local paths
(`builtin:`, `hf:`, `torchvision:`) have no fingerprint: they are named, not located.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from smtrnn.errors import DataError

NAMED_SOURCES = ("builtin:", "hf:", "torchvision:")  # data named by a library, not a path on this machine
WHOLE_BYTES = 16 << 20  # files are hashed whole until this many bytes have been read
SAMPLED_BLOCKS = 8  # then each further file contributes this many evenly spaced blocks (and its size)
BLOCK_BYTES = 1 << 16


def is_local(source: str | None) -> bool:
    return isinstance(source, str) and bool(source) and not source.startswith(NAMED_SOURCES)


def absolute_source(source: str | None) -> str | None:
    """A local path made absolute (not resolving links: a path the user gave stays recognisable); named sources
    and None unchanged."""
    return os.path.abspath(source) if is_local(source) else source


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file())


def fingerprint(source: str | None) -> dict | None:
    """{"path", "bytes", "sha256"} of a local file or folder; None for a named source or a path that is not there."""
    if not is_local(source):
        return None
    root = Path(source)
    if not root.exists():
        return None
    digest, total, whole_left = hashlib.sha256(), 0, WHOLE_BYTES
    for file in _files(root):
        size = file.stat().st_size
        total += size
        digest.update(f"{file.relative_to(root) if file != root else ''}\0{size}\0".encode())  # moved: same hash
        with open(file, "rb") as handle:
            if size <= whole_left:
                digest.update(handle.read())
                whole_left -= size
                continue
            for index in range(SAMPLED_BLOCKS):
                handle.seek(max(size - BLOCK_BYTES, 0) * index // max(SAMPLED_BLOCKS - 1, 1))
                digest.update(handle.read(BLOCK_BYTES))
    return {"path": str(source), "bytes": total, "sha256": digest.hexdigest()}


def check_same_data(recorded: dict | None, source: str | None, now: dict | None = None) -> None:
    """Raise a DataError unless `source` holds the data `recorded` describes (a run without a record passes); `now`
    is `fingerprint(source)` where the caller has it already."""
    if not isinstance(recorded, dict) or not is_local(source):
        return
    now = fingerprint(source) if now is None else now
    if now is None:
        raise DataError(f"the run's data {source} is not there; point it at the moved data with --data PATH")
    if (now["bytes"], now["sha256"]) != (recorded.get("bytes"), recorded.get("sha256")):
        raise DataError(
            f"{source} is not the data this run trained on ({recorded.get('path')}: {recorded.get('bytes')} bytes, "
            f"sha256 {str(recorded.get('sha256'))[:12]}…; now {now['bytes']} bytes, sha256 {now['sha256'][:12]}…)"
        )
