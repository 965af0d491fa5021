"""Text and token-file corpora, loaded from local paths: nothing here downloads.

A corpus is a list of documents, each a 1-D tensor of token ids, with one name per document. Two kinds of source:

- **Bytes** (vocab 256): a text file's document is its raw bytes, never decoded, so multi-byte UTF-8 and any
  non-ASCII byte are kept exactly. ``load_text`` reads a file or a folder; ``embedded_corpus`` is the running
  Python's own standard-library source, which exists on every machine with no download (on CPython 3.11: about
  4.0 MB of source in 233 files at the default cap, of about 12 MB in 731 files; the exact text depends on the
  Python version, so it is a smoke-test corpus, not a benchmark to compare across machines). ``english_corpus``
  (path ``builtin:english``) is English prose with no download: the Python documentation's topics that ship with
  the standard library (``pydoc_data/topics.py``; about 470 KB in 79 topics on CPython 3.11), one document per
  topic, read as data and never imported.
  ``load_hf_text`` turns a Hugging Face dataset's text column into byte documents, one per row.
- **Token files** (``load_tokens``): ids from an external tokenizer, as a ``.npy`` array or a raw ``.bin`` in
  the nanoGPT convention, memory-mapped rather than read, with dtype and vocab from the arguments or a sidecar
  ``<file>.json``.

``split_corpus`` holds out whole documents, chosen by a hash of their names, so adding a file to a folder never
moves another file between train and validation.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import sysconfig
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from smtrnn.errors import DataError

BYTE_VOCAB = 256
ENGLISH = "builtin:english"  # the path that names `english_corpus`
EMBEDDED_MAX_BYTES = 4_000_000
BINARY_PROBE = 8192  # a NUL byte in a file's first BINARY_PROBE bytes marks it as binary, not text
TOKEN_DTYPES = ("uint8", "uint16", "uint32", "int32", "int64")
_EMBEDDED_SKIP_DIRS = frozenset({"site-packages", "test", "tests", "idle_test", "__pycache__"})
_SPLIT_BUCKETS = 10_000
_SCAN_CHUNK = 1 << 24  # token ids checked per step, so a large memmap is never loaded whole


@dataclass(frozen=True)
class Corpus:
    """Documents of token ids, with one name per document.

    Each document is a 1-D integer tensor: uint8 for bytes; for token files the file's dtype, possibly a
    memory-mapped view, so consumers index a window and call ``.long()`` on it. Names are relative file paths,
    a file name, or ``"<name>#<i>"`` for pieces of one source.
    """

    documents: list[Tensor]
    names: list[str]
    vocab_size: int

    def __post_init__(self) -> None:
        if len(self.documents) != len(self.names):
            raise DataError(f"corpus has {len(self.documents)} documents but {len(self.names)} names")

    @property
    def num_tokens(self) -> int:
        return sum(doc.numel() for doc in self.documents)


# ----------------------------------------------------------------------------------------------------------------
# Bytes


def embedded_corpus(max_bytes: int = EMBEDDED_MAX_BYTES) -> Corpus:
    """The running Python's standard-library ``*.py`` source as byte documents, in sorted order, up to `max_bytes`.

    Skips ``site-packages``, ``test``/``tests``/``idle_test`` directories, ``__pycache__`` and empty files; the
    last document is truncated to fit the cap.
    """
    _require_max_bytes(max_bytes)
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataError(f"{root}: the standard-library folder for the embedded corpus does not exist")
    files = [rel for rel in _walk(root, skip_dirs=_EMBEDDED_SKIP_DIRS) if rel.endswith(".py")]
    documents, names = _read_documents(root, files, max_bytes, check_binary=False)
    if not documents:
        raise DataError(f"{root}: no Python source found for the embedded corpus")
    return Corpus(documents, names, BYTE_VOCAB)


def english_corpus(max_bytes: int | None = None) -> Corpus:
    """The Python documentation's topics shipped with the standard library, as UTF-8 byte documents named by topic.

    `pydoc_data/topics.py` holds one literal dict of strings; it is parsed, never executed or imported. Topics are
    read in sorted order; with `max_bytes` they stop once the total reaches it (the last truncated).
    """
    if max_bytes is not None:
        _require_max_bytes(max_bytes)
    file = Path(sysconfig.get_paths()["stdlib"]) / "pydoc_data" / "topics.py"
    try:
        topics = _literal_dict(file.read_text(encoding="utf-8"), "topics")
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{file}: cannot read the documentation topics for the English corpus ({e})") from None
    documents, names, total = [], [], 0
    for name in sorted(topics):
        if max_bytes is not None and total >= max_bytes:
            break
        data = topics[name].encode("utf-8")
        data = data if max_bytes is None else data[: max_bytes - total]
        if data:
            documents.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            names.append(name)
            total += len(data)
    if not documents:
        raise DataError(f"{file}: holds no documentation topics")
    return Corpus(documents, names, BYTE_VOCAB)


def _literal_dict(source: str, variable: str) -> dict[str, str]:
    """The value of `variable = {...}` in Python source, a dict of strings, evaluated as a literal (no code runs)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == variable for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                return value
            raise ValueError(f"'{variable}' is not a dict of strings")
    raise ValueError(f"no assignment to '{variable}'")


def load_text(path: str | Path | None, max_bytes: int | None = None) -> Corpus:
    """Byte documents from a text file (one document) or a folder (one per non-empty file); None: the embedded corpus.

    A folder is read recursively in sorted relative-path order, skipping hidden files and folders (names starting
    with '.') and empty files; names are relative posix paths. A binary-looking file is an error, in a folder too,
    rather than silently skipped. With `max_bytes`, documents stop once the total reaches it (the last truncated).
    """
    if path is None:
        return embedded_corpus() if max_bytes is None else embedded_corpus(max_bytes)
    if max_bytes is not None:
        _require_max_bytes(max_bytes)
    path = Path(path)
    if path.is_file():
        documents, names = _read_documents(path.parent, [path.name], max_bytes, check_binary=True)
        if not documents:
            raise DataError(f"{path}: the file is empty")
        return Corpus(documents, names, BYTE_VOCAB)
    if path.is_dir():
        documents, names = _read_documents(path, _walk(path, skip_dirs=frozenset()), max_bytes, check_binary=True)
        if not documents:
            raise DataError(f"{path}: the folder holds no non-empty files")
        return Corpus(documents, names, BYTE_VOCAB)
    raise DataError(f"{path}: no such file or folder")


def _require_max_bytes(max_bytes: int) -> None:
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise DataError(f"max_bytes must be an integer >= 1, got {max_bytes!r}")


def _walk(root: Path, skip_dirs: frozenset[str]) -> list[str]:
    """Relative posix paths of the regular files under `root`, sorted, without hidden entries or `skip_dirs`."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip_dirs]
        rel_folder = Path(folder).relative_to(root)
        for name in files:
            if not name.startswith(".") and os.path.isfile(os.path.join(folder, name)):
                found.append((rel_folder / name).as_posix())
    return sorted(found)


def _read_documents(
    root: Path, files: list[str], max_bytes: int | None, check_binary: bool
) -> tuple[list[Tensor], list[str]]:
    """Read `files` (relative to `root`) in order as uint8 documents, skipping empty ones, until `max_bytes`."""
    documents, names, total = [], [], 0
    for rel in files:
        if max_bytes is not None and total >= max_bytes:
            break
        file = root / rel
        try:
            with open(file, "rb") as f:
                # Read at least the probe, so the binary check does not depend on the cap.
                data = f.read() if max_bytes is None else f.read(max(max_bytes - total, BINARY_PROBE))
        except OSError as e:
            raise DataError(f"{file}: cannot read ({e.strerror or e})") from None
        if check_binary and b"\0" in data[:BINARY_PROBE]:
            raise DataError(
                f"{file}: looks binary (a NUL byte in its first {BINARY_PROBE} bytes); "
                "token files go through load_tokens (.npy / .bin)"
            )
        if max_bytes is not None:
            data = data[: max_bytes - total]
        if not data:
            continue
        documents.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        names.append(rel)
        total += len(data)
    return documents, names


# ----------------------------------------------------------------------------------------------------------------
# Token files


def load_tokens(path: str | Path, dtype: str | None = None, vocab_size: int | None = None) -> Corpus:
    """One document of token ids from a 1-D integer ``.npy`` or a raw ``.bin`` (nanoGPT), memory-mapped.

    `dtype` and `vocab_size` come from the arguments, else from a sidecar ``<path>.json`` (e.g. ``train.bin.json``)
    with keys "dtype" and "vocab_size". A ``.bin`` needs a dtype; a ``.npy`` carries its own, which a given dtype
    must match. vocab_size defaults to 256 for uint8 and is required otherwise. Every id is checked to lie in
    ``[0, vocab_size)``. The tensor shares memory with the map (copy-on-write: writes never reach the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such token file")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".bin"):
        raise DataError(f"{path}: token files must end in .npy or .bin, got '{path.suffix}'")
    sidecar = _read_sidecar(path)
    dtype = dtype if dtype is not None else sidecar.get("dtype")
    vocab_size = vocab_size if vocab_size is not None else sidecar.get("vocab_size")
    if dtype is not None and dtype not in TOKEN_DTYPES:
        raise DataError(f"{path}: dtype must be one of {', '.join(TOKEN_DTYPES)}, got {dtype!r}")
    ids = _map_npy(path, dtype) if suffix == ".npy" else _map_bin(path, dtype)
    dtype = ids.dtype.name
    if vocab_size is None:
        if dtype != "uint8":
            raise DataError(
                f"{path}: vocab_size is required for dtype {dtype} (argument or 'vocab_size' in {path.name}.json)"
            )
        vocab_size = BYTE_VOCAB
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise DataError(f"{path}: vocab_size must be an integer >= 1, got {vocab_size!r}")
    _check_ids(path, ids, vocab_size)
    return Corpus([torch.from_numpy(ids)], [path.name], vocab_size)


def _read_sidecar(path: Path) -> dict:
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        return {}
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{sidecar}: cannot read the sidecar as JSON ({e})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{sidecar}: the sidecar must be a JSON object with 'dtype' and 'vocab_size'")
    unknown = sorted(set(meta) - {"dtype", "vocab_size"})
    if unknown:
        raise DataError(f"{sidecar}: unknown sidecar keys {unknown}; expected 'dtype' and 'vocab_size'")
    return meta


def _map_npy(path: Path, dtype: str | None) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            header = handle.read(6)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if header != b"\x93NUMPY":  # numpy would read a text file as pickled data and suggest unpickling it
        raise DataError(f"{path}: not a .npy file (no NumPy header); a raw token file is named .bin")
    try:
        ids = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy array ({str(e).split('. If you trust')[0]})") from None
    if not isinstance(ids, np.ndarray):
        raise DataError(f"{path}: holds an archive, not a single .npy array")
    if ids.ndim != 1:
        raise DataError(f"{path}: token array must be 1-D, got shape {tuple(ids.shape)}")
    if ids.dtype.name not in TOKEN_DTYPES:
        raise DataError(f"{path}: token dtype must be one of {', '.join(TOKEN_DTYPES)}, got {ids.dtype.name}")
    if dtype is not None and dtype != ids.dtype.name:
        raise DataError(f"{path}: the array's dtype is {ids.dtype.name} but {dtype} was given")
    if ids.size == 0:
        raise DataError(f"{path}: the token array is empty")
    return ids


def _map_bin(path: Path, dtype: str | None) -> np.ndarray:
    if dtype is None:
        raise DataError(f"{path}: a .bin token file needs a dtype (argument or 'dtype' in {path.name}.json)")
    size, itemsize = path.stat().st_size, np.dtype(dtype).itemsize
    if size == 0:
        raise DataError(f"{path}: the token file is empty")
    if size % itemsize:
        raise DataError(f"{path}: size {size} bytes is not a multiple of {itemsize} ({dtype})")
    return np.memmap(path, dtype=dtype, mode="c")


def _check_ids(path: Path, ids: np.ndarray, vocab_size: int) -> None:
    """Raise a DataError naming the first id outside [0, vocab_size), scanning in chunks."""
    for start in range(0, ids.size, _SCAN_CHUNK):
        chunk = ids[start : start + _SCAN_CHUNK]
        if chunk.min() < 0 or chunk.max() >= vocab_size:
            i = int(np.flatnonzero((chunk < 0) | (chunk >= vocab_size))[0])
            raise DataError(
                f"{path}: token id {int(chunk[i])} at position {start + i} is outside the vocabulary [0, {vocab_size})"
            )


# ----------------------------------------------------------------------------------------------------------------
# Hugging Face datasets


def load_hf_text(
    name: str, split: str = "train", column: str = "text", max_documents: int | None = None, **load_kwargs
) -> Corpus:
    """Byte documents from a Hugging Face dataset: each row's `column`, encoded as UTF-8, is one document.

    `name` is a folder written by ``Dataset.save_to_disk`` (read with ``load_from_disk``), or anything
    ``datasets.load_dataset(name, split=split, **load_kwargs)`` accepts: a hub name (which may download) or a
    builder such as "json" with ``data_files=``. Rows with an empty string are skipped; `max_documents` keeps the
    first that many documents. Names are ``"<split>#<row>"``, so they do not depend on where the data lives.
    """
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{name}: loading a Hugging Face dataset needs the 'datasets' package: pip install 'smtrnn[hf]'"
        ) from None
    if max_documents is not None and (not isinstance(max_documents, int) or max_documents < 1):
        raise DataError(f"{name}: max_documents must be an integer >= 1, got {max_documents!r}")
    local = Path(name)
    try:
        if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
            data = datasets.load_from_disk(str(local))
            if isinstance(data, datasets.DatasetDict):
                if split not in data:
                    raise DataError(f"{name}: no split '{split}'; splits are {sorted(data)}")
                data = data[split]
        else:
            if not local.exists() and not {"data_files", "data_dir"} & set(load_kwargs):  # a name on the hub
                _require_hub_or_offline(name)
            data = datasets.load_dataset(name, split=split, **load_kwargs)
    except FileNotFoundError as e:
        raise DataError(f"{name}: dataset not found ({e})") from None
    except RuntimeError as e:  # e.g. a folder holding a dataset script, which datasets no longer runs
        raise DataError(f"{name}: datasets cannot load it: {str(e).splitlines()[0]}") from None
    columns = data.column_names
    if columns is not None and column not in columns:
        raise DataError(f"{name}: no column '{column}'; columns are {columns}")
    documents, names = [], []
    for row, text in enumerate(_column_values(data, column)):
        if not isinstance(text, str):
            raise DataError(f"{name}: column '{column}' row {row} is {type(text).__name__}, not a string")
        if not text:
            continue
        documents.append(torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8))
        names.append(f"{split}#{row}")
        if max_documents is not None and len(documents) >= max_documents:
            break
    if not documents:
        raise DataError(f"{name}: column '{column}' of split '{split}' holds no non-empty text")
    return Corpus(documents, names, BYTE_VOCAB)


HUB_PROBE_SECONDS = 2.0  # how long the one check that the hub is reachable may take


def hub_reachable() -> bool:
    """Whether a connection to the Hugging Face hub (HF_ENDPOINT, default huggingface.co) opens within
    HUB_PROBE_SECONDS."""
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=HUB_PROBE_SECONDS):
            return True
    except (OSError, ValueError):
        return False


def _require_hub_or_offline(name: str) -> None:
    """A hub name without a network: one line after one short check, not a minute of retries. With
    HF_DATASETS_OFFLINE=1 (or HF_HUB_OFFLINE=1) `datasets` reads its local cache and no check is made."""
    offline = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    if any(os.environ.get(flag, "").lower() in ("1", "true", "yes") for flag in offline):
        return
    if not hub_reachable():
        raise DataError(
            f"{name}: the Hugging Face hub is not reachable (no network); a dataset saved with save_to_disk loads "
            "by its folder (hf:PATH), a cached one with HF_DATASETS_OFFLINE=1"
        )


def _column_values(data, column: str):
    """Yield one column's values in row order, in batches, so a large dataset is never listed whole."""
    for batch in data.select_columns([column]).iter(batch_size=1024):
        yield from batch[column]


# ----------------------------------------------------------------------------------------------------------------
# Train / validation split


def split_corpus(corpus: Corpus, valid_fraction: float = 0.1) -> tuple[Corpus, Corpus]:
    """(train, valid), split by document: a document is held out iff crc32(name) % 10000 < valid_fraction * 10000.

    The hash makes the split stable when documents are added. If it leaves a side empty, the document whose hash
    bucket lies nearest that side moves over. A single document is the one case that is cut: its last
    `valid_fraction` of tokens (at least 1) become "<name>#valid", the rest "<name>#train".
    """
    if not 0 < valid_fraction < 1:
        raise DataError(f"valid_fraction must be in (0, 1), got {valid_fraction!r}")
    if not corpus.documents:
        raise DataError("cannot split an empty corpus")
    if len(corpus.documents) == 1:
        return _cut_single(corpus, valid_fraction)
    buckets = [zlib.crc32(name.encode("utf-8")) % _SPLIT_BUCKETS for name in corpus.names]
    is_valid = [b < valid_fraction * _SPLIT_BUCKETS for b in buckets]
    order = sorted(range(len(buckets)), key=lambda i: (buckets[i], corpus.names[i]))
    if not any(is_valid):
        is_valid[order[0]] = True
    elif all(is_valid):
        is_valid[order[-1]] = False
    train = [i for i, v in enumerate(is_valid) if not v]
    valid = [i for i, v in enumerate(is_valid) if v]
    return _subset(corpus, train), _subset(corpus, valid)


def split_held_out(held: Corpus) -> tuple[Corpus, Corpus | None]:
    """(valid, test): the held-out documents of `split_corpus` in halves, so that settings chosen on the validation
    split are scored on documents they never saw. By hash bucket, as the held-out part was chosen (the first half,
    one more when odd, is validation); a single held-out document is cut in halves. None for the test split when the
    held-out part is one token, too little to halve."""
    if len(held.documents) == 1:
        doc, name = held.documents[0], held.names[0]
        if doc.numel() < 2:
            return held, None
        half = -(-doc.numel() // 2)
        return (
            Corpus([doc[:half]], [f"{name}#valid"], held.vocab_size),
            Corpus([doc[half:]], [f"{name}#test"], held.vocab_size),
        )
    buckets = [zlib.crc32(name.encode("utf-8")) % _SPLIT_BUCKETS for name in held.names]
    order = sorted(range(len(buckets)), key=lambda i: (buckets[i], held.names[i]))
    half = -(-len(order) // 2)
    return _subset(held, sorted(order[:half])), _subset(held, sorted(order[half:]))


def _subset(corpus: Corpus, indices: list[int]) -> Corpus:
    return Corpus([corpus.documents[i] for i in indices], [corpus.names[i] for i in indices], corpus.vocab_size)


def _cut_single(corpus: Corpus, valid_fraction: float) -> tuple[Corpus, Corpus]:
    doc, name = corpus.documents[0], corpus.names[0]
    n = doc.numel()
    if n < 2:
        raise DataError(f"{name}: a single document of {n} token cannot be split into train and validation")
    n_valid = min(max(1, int(n * valid_fraction)), n - 1)
    train = Corpus([doc[: n - n_valid]], [f"{name}#train"], corpus.vocab_size)
    valid = Corpus([doc[n - n_valid :]], [f"{name}#valid"], corpus.vocab_size)
    return train, valid
