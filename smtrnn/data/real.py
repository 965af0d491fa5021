"""Tasks over real data: `text` (byte-level language modeling, or any token file) and `pixels` (one image per
sequence, raster scan). Both plug into the same `Task` interface as the synthetic tasks, so SMT, DMT and BPTT
train on them unchanged.

- **text**: a UTF-8 text file or folder (bytes, vocab 256), a token file (`.npy`, or `.bin` read by memmap, with
  its dtype and vocab from arguments or a sidecar JSON), `hf:NAME` (HuggingFace `datasets`, an extra),
  `builtin:english` (the Python documentation's topics, English prose shipped with the standard library), or — with
  no path — the embedded default corpus, this Python's own standard-library source (see `smtrnn.data.text`). The split
  is by document. Training windows are drawn uniformly from the concatenated training documents: x = w_0..w_{T-1},
  y = w_1..w_T (a window may run across a document boundary, as in nanoGPT).
- **pixels**: scikit-learn's 8×8 digits by default, an MNIST-format IDX file, or `torchvision:NAME:ROOT`;
  intensities quantized to `levels` (None = the data's own, e.g. 256); `side` resamples every image to side x side
  first (`smtrnn.data.images.resample`: 28 gives the digits MNIST's T = 784). A sequence is the first T pixels of one
  image — never two images. With `start_token` (default) x = [START, p_0..p_{T-2}] and y = p_0..p_{T-1}: every pixel is
  predicted, so bits per pixel cover the whole image. Without it x = p_0..p_{T-1}, y = p_1..p_{T-1}, -1.

`held_out()` gives the same task on its validation split, which evaluation during training draws from;
`held_out("test")` the test split, for final numbers only (`smtrnn eval --split test`). The held-out part
(`valid_fraction` of the data) is halved into the two, so the training split is what it was before there was a test
split. `windows(T)` cuts a whole split into sequences of length T that cover every position (for `smtrnn label
--data`), and `fingerprint()` identifies the split's contents.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
from torch import Tensor

from smtrnn.data.arrays import Arrays, forget_loaded_arrays
from smtrnn.data.data_task import DataTask, Windows, sha256_of
from smtrnn.data.tasks import NO_TARGET, TaskError, register
from smtrnn.errors import DataError


def load_corpus(
    path: str | None, dtype: str | None = None, token_vocab: int | None = None, max_bytes: int | None = None
):
    """The `text.Corpus` a text task's path names (see the module docstring for the sources)."""
    from smtrnn.data import text

    if path is None:
        return text.embedded_corpus(**({"max_bytes": max_bytes} if max_bytes else {}))
    if path == text.ENGLISH:
        return text.english_corpus(max_bytes)
    if path.startswith("builtin:"):
        raise DataError(f"{path}: no such built-in corpus; the built-in text is {text.ENGLISH}")
    if path.startswith("hf:"):
        if not path[3:].strip():
            raise DataError("hf: needs a dataset name (hf:NAME) or a save_to_disk folder (hf:PATH)")
        return text.load_hf_text(path[3:])
    if path.endswith((".npy", ".bin")):
        return text.load_tokens(path, dtype=dtype, vocab_size=token_vocab)
    return text.load_text(path, max_bytes=max_bytes)


@lru_cache(maxsize=8)
def _text_splits(
    path: str | None, dtype: str | None, token_vocab: int | None, max_bytes: int | None, valid_fraction: float
):
    """(corpus vocab, {split: documents}) for a text task's parameters, loaded once per process."""
    from smtrnn.data import text

    corpus = load_corpus(path, dtype, token_vocab, max_bytes)
    train, held = text.split_corpus(corpus, valid_fraction)
    valid, test = text.split_held_out(held)
    return corpus.vocab_size, {"train": train, "valid": valid, "test": test}


@lru_cache(maxsize=8)
def _image_splits(path: str | None, levels: int | None, valid_fraction: float, side: int | None = None):
    from smtrnn.data import images

    loaded = images.load_images(path)
    if side is not None:  # before quantizing: interpolate the data's own intensities
        loaded = images.resample(loaded, side)
    if levels is not None:
        loaded = images.quantize(loaded, levels)
    train, held = images.split_images(loaded, valid_fraction)
    valid, test = images.split_held_out_images(held)
    return {"train": train, "valid": valid, "test": test}


@dataclass(frozen=True)
class Text(DataTask):
    """Next-token prediction on a text or token corpus (see the module docstring for the sources)."""

    name: ClassVar[str] = "text"
    scored_in_bits: ClassVar[bool] = True
    path: str | None = None
    dtype: str | None = None  # token files: uint8, uint16, uint32, int32, int64 (else from the sidecar JSON)
    token_vocab: int | None = None  # token files: the vocabulary (else from the sidecar JSON; 256 for uint8)
    max_bytes: int | None = None  # text: stop reading after this many bytes (the embedded corpus has a default cap)
    valid_fraction: float = 0.1
    split: str = "train"

    def __post_init__(self):
        self._check_split()

    def _splits(self):
        try:
            return _text_splits(self.path, self.dtype, self.token_vocab, self.max_bytes, self.valid_fraction)
        except DataError as exc:
            raise TaskError(f"task 'text': {exc}") from exc

    @property
    def vocab_size(self) -> int:
        return self._splits()[0]

    def documents(self) -> list[Tensor]:
        """This split's documents, 1-D integer tensors."""
        return self._split_data(self._splits()[1]).documents

    def documents_xy(self) -> list[tuple[Tensor, Tensor]]:
        return [(d[:-1].to(torch.long), d[1:].to(torch.long)) for d in self.documents() if d.numel() >= 2]

    def _flat(self) -> Tensor:
        self.documents()  # a split that cannot be had is refused here
        return _concatenated(self.path, self.dtype, self.token_vocab, self.max_bytes, self.valid_fraction, self.split)

    def max_seq_len(self) -> int:
        return self._flat().numel() - 1  # a window needs T + 1 tokens

    def windows(self, seq_len: int) -> Windows:
        """Consecutive windows x = w[s:s+T], y = w[s+1:s+T+1] at s = 0, T, 2T, ... of the concatenated split; a tail
        shorter than T is covered by one last window ending at the final token (it overlaps its neighbour)."""
        self.check_seq_len(seq_len)
        flat = self._flat()
        last = flat.numel() - 1 - seq_len  # the latest start with a target for every position

        def read(a: int, b: int) -> tuple[Tensor, Tensor]:
            rows = torch.stack(
                [flat[s : s + seq_len + 1].to(torch.long) for s in (min(i * seq_len, last) for i in range(a, b))]
            )
            return rows[:, :-1], rows[:, 1:]

        return Windows(-(-(flat.numel() - 1) // seq_len), read)

    def fingerprint(self) -> dict:
        flat = self._flat()
        return {"split": self.split, "tokens": flat.numel(), "sha256": sha256_of(flat)}

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        flat = self._flat()  # may be a memory-mapped token file: slice it, never index it whole
        starts = torch.randint(0, flat.numel() - seq_len, (batch_size,), generator=generator).tolist()
        windows = torch.stack([flat[s : s + seq_len + 1].to(torch.long) for s in starts]).to(generator.device)
        return windows[:, :-1], windows[:, 1:]


@lru_cache(maxsize=16)
def _concatenated(path, dtype, token_vocab, max_bytes, valid_fraction, split) -> Tensor:
    documents = _text_splits(path, dtype, token_vocab, max_bytes, valid_fraction)[1][split].documents
    if len(documents) == 1:
        return documents[0]
    if len({d.dtype for d in documents}) > 1:
        documents = [d.to(torch.long) for d in documents]
    return torch.cat(documents)


@dataclass(frozen=True)
class Pixels(DataTask):
    """Pixel-sequence modeling, one image per sequence (see the module docstring)."""

    name: ClassVar[str] = "pixels"
    scored_in_bits: ClassVar[bool] = True
    path: str | None = None  # None: scikit-learn's 8x8 digits; an IDX file; torchvision:NAME:ROOT
    levels: int | None = None  # quantization levels; None keeps the data's own
    side: int | None = None  # resample every image to side x side (T = side²); None keeps the data's own size
    start_token: bool = True
    valid_fraction: float = 0.1
    split: str = "train"

    def __post_init__(self):
        self._check_split()
        if self.side is not None:
            from smtrnn.data.images import check_side

            try:
                check_side(self.side)
            except DataError as exc:
                raise TaskError(f"task 'pixels': {exc}") from exc

    def images(self):
        """This split's `smtrnn.images.Images`."""
        try:
            splits = _image_splits(self.path, self.levels, self.valid_fraction, self.side)
        except DataError as exc:
            raise TaskError(f"task 'pixels': {exc}") from exc
        return self._split_data(splits)

    @property
    def levels_used(self) -> int:
        return self.images().levels

    @property
    def start(self) -> int:
        """The START token's id (only with start_token)."""
        return self.levels_used

    @property
    def vocab_size(self) -> int:
        return self.levels_used + int(self.start_token)

    def max_seq_len(self) -> int:
        images = self.images()
        return images.height * images.width

    def sequences(self, pixels: Tensor, seq_len: int) -> tuple[Tensor, Tensor]:
        """Images (N, H, W) -> (x, y), each (N, T): the first T pixels of each image in raster order."""
        flat = pixels.flatten(1).long()
        if self.start_token:
            x = torch.cat([torch.full_like(flat[:, :1], self.start), flat[:, : seq_len - 1]], dim=1)
            return x, flat[:, :seq_len].clone()
        x = flat[:, :seq_len]
        y = torch.cat([flat[:, 1:seq_len], torch.full_like(flat[:, :1], NO_TARGET)], dim=1)
        return x, y

    def documents_xy(self) -> list[tuple[Tensor, Tensor]]:
        x, y = self.sequences(self.images().pixels, self.max_seq_len())
        return list(zip(x, y))

    def windows(self, seq_len: int) -> Windows:
        """One sequence per image: its first seq_len pixels (as in training)."""
        self.check_seq_len(seq_len)
        pixels = self.images().pixels
        return Windows(len(pixels), lambda a, b: self.sequences(pixels[a:b], seq_len))

    def fingerprint(self) -> dict:
        images = self.images()
        return {
            "split": self.split,
            "images": len(images),
            "levels": images.levels,
            "sha256": sha256_of(images.pixels.flatten()),
        }

    def _sample(self, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        images = self.images()
        pick = torch.randint(0, len(images), (batch_size,), generator=generator)
        x, y = self.sequences(images.pixels[pick], seq_len)
        return x.to(generator.device), y.to(generator.device)


def forget_loaded() -> None:
    """Drop the data this process has loaded (it is cached per task parameters), so the next use reads the files as
    they are now: labelling a dataset fingerprints what is on disk, not an earlier read."""
    for cached in (_text_splits, _image_splits, _concatenated):
        cached.cache_clear()
    forget_loaded_arrays()


DATA_TASKS: dict[str, type[DataTask]] = {cls.name: cls for cls in (Text, Pixels, Arrays)}
register(DATA_TASKS)
