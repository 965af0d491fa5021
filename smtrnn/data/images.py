"""Image datasets as sequences of quantized pixels: an image of H rows and W columns is read in raster order (row
by row, left to right) as a sequence of H·W intensities, each an integer in [0, levels).

Sources:
- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, intensities 0..16, so levels 17);
- an IDX file (the MNIST format), raw or gzip-compressed: big-endian magic 0x00000803 (unsigned bytes, 3 dims),
  then the image count, rows and columns as 4-byte integers, then the pixels (levels 256);
- ``torchvision:NAME:ROOT``: ``torchvision.datasets.NAME`` already downloaded under ROOT, converted to grayscale.

`quantize` coarsens the intensities (fewer levels, a smaller vocabulary), `dequantize` maps them back to 0..255
for display (see `smtrnn.tools.png`), `resample` scales images to another side (the embedded 8x8 digits at 28x28
give sequences of 784 pixels, MNIST's length, with no download: resampled, not real 28x28 images), and
`split_images` holds out the last images for validation.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from smtrnn.errors import DataError

MAX_LEVELS = 65536
MAX_SIDE = 1024  # resample: 1024x1024 pixels is already a sequence of a million tokens
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801
_IDX_UBYTE = 0x08
_TORCHVISION = "torchvision:"


@dataclass(frozen=True)
class Images:
    """N images (N, H, W) of integer intensities in [0, levels); raster scan order is row by row."""

    pixels: Tensor  # (N, H, W), an integer dtype (torch.uint8 when levels <= 256)
    levels: int
    name: str  # where the images came from, e.g. "digits", "idx:train-images-idx3-ubyte.gz"

    def __post_init__(self) -> None:
        if self.pixels.dim() != 3 or 0 in self.pixels.shape:
            shape = tuple(self.pixels.shape)
            raise DataError(f"images '{self.name}' must be a non-empty (N, H, W) tensor, got {shape}")
        if self.pixels.dtype.is_floating_point or self.pixels.dtype.is_complex or self.pixels.dtype == torch.bool:
            raise DataError(f"images '{self.name}' must hold integers, got {self.pixels.dtype}")
        _check_levels(self.levels)
        low, high = int(self.pixels.min()), int(self.pixels.max())
        if low < 0 or high >= self.levels:
            raise DataError(f"images '{self.name}' hold values {low}..{high}, outside [0, {self.levels})")

    @property
    def height(self) -> int:
        return self.pixels.shape[1]

    @property
    def width(self) -> int:
        return self.pixels.shape[2]

    def __len__(self) -> int:
        return self.pixels.shape[0]


def _check_levels(levels: int) -> None:
    if not isinstance(levels, int) or isinstance(levels, bool) or not 2 <= levels <= MAX_LEVELS:
        raise DataError(f"levels must be an integer in [2, {MAX_LEVELS}], got {levels!r}")


def _level_dtype(levels: int) -> torch.dtype:
    return torch.uint8 if levels <= 256 else torch.int32


def load_digits() -> Images:
    """scikit-learn's bundled 8x8 digits: 1797 images of intensities 0..16 (levels 17)."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        raise DataError("the digits images need scikit-learn: pip install scikit-learn") from exc
    pixels = torch.as_tensor(sklearn_digits().images).round().to(torch.uint8)
    return Images(pixels, 17, "digits")


def load_idx(path: str | Path) -> Images:
    """Images from an IDX file (MNIST format, magic 0x00000803), raw or gzip-compressed (told by its first bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"IDX file '{path}' not found") from exc
    except OSError as exc:
        raise DataError(f"cannot read IDX file '{path}': {exc.strerror or exc}") from exc
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"IDX file '{path}' is a corrupt gzip file: {exc}") from exc
    if not data:
        raise DataError(f"IDX file '{path}' is empty")
    if len(data) < 4:
        raise DataError(f"IDX file '{path}' is truncated: {len(data)} bytes, shorter than its 4-byte magic")
    magic = struct.unpack(">I", data[:4])[0]
    if magic == _IDX_LABELS:
        raise DataError(f"IDX file '{path}' is a labels file (magic 0x{magic:08x}), not images (0x{_IDX_IMAGES:08x})")
    if magic >> 16 != 0:
        raise DataError(f"'{path}' is not an IDX file (magic 0x{magic:08x}, expected 0x{_IDX_IMAGES:08x})")
    kind, dims = data[2], data[3]
    if kind != _IDX_UBYTE:
        raise DataError(f"IDX file '{path}' holds data type 0x{kind:02x}, expected unsigned bytes (0x08)")
    if dims != 3:
        raise DataError(f"IDX file '{path}' has {dims} dimensions, expected 3 (images, rows, columns)")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"IDX file '{path}' is truncated: {len(data)} bytes, shorter than its {header}-byte header")
    count, rows, columns = struct.unpack(">III", data[4:header])
    if count == 0:
        raise DataError(f"IDX file '{path}' holds no images")
    if rows == 0 or columns == 0:
        raise DataError(f"IDX file '{path}' holds empty images ({rows}x{columns})")
    size = count * rows * columns
    body = len(data) - header
    if body < size:
        raise DataError(
            f"IDX file '{path}' is truncated: its header says {count} images of {rows}x{columns} "
            f"({size} bytes), but only {body} bytes follow"
        )
    if body > size:
        raise DataError(f"IDX file '{path}' has {body - size} trailing bytes after {count} images of {rows}x{columns}")
    pixels = torch.frombuffer(bytearray(memoryview(data)[header:]), dtype=torch.uint8).reshape(count, rows, columns)
    return Images(pixels, 256, f"idx:{path.name}")


def _luminance(rgb: Tensor) -> Tensor:
    """(..., 3) uint8 RGB -> (...) uint8 gray, ITU-R 601 weights as PIL's "L" mode, rounded."""
    r, g, b = rgb.long().unbind(-1)
    return ((299 * r + 587 * g + 114 * b + 500) // 1000).to(torch.uint8)


def load_torchvision(name: str, root: str | Path, train: bool = True) -> Images:
    """``torchvision.datasets.<name>(root, train=train, download=False)`` as grayscale uint8 images (levels 256).

    RGB images become their luminance. The dataset must already be under root: nothing is downloaded.
    """
    try:
        import numpy as np
        from torchvision import datasets
    except ImportError as exc:
        raise DataError(f"'{_TORCHVISION}{name}:{root}' needs torchvision: pip install torchvision") from exc
    factory = getattr(datasets, name, None)
    if not isinstance(factory, type):
        raise DataError(f"torchvision has no dataset '{name}'")
    source = f"torchvision:{name}"
    try:
        dataset = factory(str(root), train=train, download=False)
    except (RuntimeError, OSError, TypeError) as exc:
        raise DataError(f"{source} not found under '{root}' (download it first): {exc}") from exc
    data = getattr(dataset, "data", None)
    if isinstance(data, (Tensor, np.ndarray)):
        pixels = torch.as_tensor(np.asarray(data))
    else:  # no array of all images: read them one by one (PIL images, as no transform was given)
        frames = [np.asarray(item[0] if isinstance(item, tuple) else item) for item in dataset]
        if not frames:
            raise DataError(f"{source} under '{root}' holds no images")
        sizes = sorted({frame.shape[:2] for frame in frames})
        if len(sizes) > 1:
            raise DataError(f"{source} under '{root}' holds images of inconsistent size: {sizes[0]} and {sizes[1]}")
        pixels = torch.as_tensor(np.stack(frames))
    if pixels.dim() == 4 and pixels.shape[-1] not in (1, 3) and pixels.shape[1] in (1, 3):
        pixels = pixels.permute(0, 2, 3, 1)  # channels first (N, C, H, W) -> (N, H, W, C)
    if pixels.dim() == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    elif pixels.dim() == 4 and pixels.shape[-1] == 3:
        pixels = _luminance(pixels)
    if pixels.dim() != 3 or pixels.dtype != torch.uint8:
        raise DataError(
            f"{source} holds {pixels.dtype} images of shape {tuple(pixels.shape[1:])}, "
            "expected 8-bit grayscale (H, W) or RGB (H, W, 3)"
        )
    if len(pixels) == 0:
        raise DataError(f"{source} under '{root}' holds no images")
    return Images(pixels, 256, source)


def load_images(source: str | Path | None) -> Images:
    """The images named by source: None or "digits", "torchvision:NAME:ROOT" (training split), or an IDX file."""
    if source is None or source == "digits":
        return load_digits()
    if isinstance(source, str) and source.startswith(_TORCHVISION):
        name, _, root = source[len(_TORCHVISION) :].partition(":")
        if not name or not root:
            raise DataError(f"image source '{source}' must be torchvision:NAME:ROOT, e.g. torchvision:MNIST:data")
        return load_torchvision(name, root)
    if Path(source).is_file():
        return load_idx(source)
    raise DataError(f"image source '{source}' not found: expected 'digits', 'torchvision:NAME:ROOT' or an IDX file")


def quantize(images: Images, levels: int) -> Images:
    """Map intensities [0, images.levels) onto [0, levels) by floor(v·levels / images.levels).

    levels == images.levels returns the images unchanged ("raw"). The result is uint8 when levels <= 256.
    """
    _check_levels(levels)
    if levels == images.levels:
        return images
    pixels = (images.pixels.long() * levels).div(images.levels, rounding_mode="floor")
    return Images(pixels.to(_level_dtype(levels)), levels, images.name)


def check_side(side: int) -> None:
    if not isinstance(side, int) or isinstance(side, bool) or not 2 <= side <= MAX_SIDE:
        raise DataError(f"side must be an integer in [2, {MAX_SIDE}], got {side!r}")


def resample(images: Images, side: int) -> Images:
    """Scale every image to side x side pixels: bilinear interpolation of the intensities (antialiased when
    shrinking), rounded back to [0, levels). Same levels and image count; the name says it was resampled."""
    check_side(side)
    if images.height == images.width == side:
        return images
    pixels = torch.nn.functional.interpolate(
        images.pixels[:, None].float(),
        size=(side, side),
        mode="bilinear",
        align_corners=False,
        antialias=side < max(images.height, images.width),
    )
    pixels = pixels[:, 0].round().clamp(0, images.levels - 1).to(images.pixels.dtype)
    return Images(pixels, images.levels, f"{images.name}, resampled to {side}x{side}")


def split_images(images: Images, valid_fraction: float = 0.1) -> tuple[Images, Images]:
    """(train, valid): valid is the last ceil(valid_fraction·N) images, train the rest; both are non-empty."""
    count = len(images)
    if count < 2:
        raise DataError(f"images '{images.name}' must hold at least 2 images to split, got {count}")
    if not 0 < valid_fraction < 1:
        raise DataError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    # The small slack keeps float error (0.07 * 100 = 7.000000000000001) from taking one image too many.
    held_out = min(max(math.ceil(valid_fraction * count - 1e-9), 1), count - 1)
    cut = count - held_out
    return (
        Images(images.pixels[:cut], images.levels, images.name),
        Images(images.pixels[cut:], images.levels, images.name),
    )


def split_held_out_images(held: Images) -> tuple[Images, Images | None]:
    """(valid, test): the held-out images of `split_images` in halves (the first, one more when odd, validation),
    so that settings chosen on validation are scored on images they never saw; None for the test split when only one
    image is held out."""
    if len(held) < 2:
        return held, None
    half = -(-len(held) // 2)
    return (Images(held.pixels[:half], held.levels, held.name), Images(held.pixels[half:], held.levels, held.name))


def dequantize(pixels: Tensor, levels: int) -> Tensor:
    """Integer intensities in [0, levels) -> uint8 0..255 for display: round(v·255 / (levels - 1)), halves up."""
    _check_levels(levels)
    if pixels.dtype.is_floating_point or pixels.dtype.is_complex or pixels.dtype == torch.bool:
        raise DataError(f"dequantize needs integer pixels, got {pixels.dtype}")
    if pixels.numel() and (int(pixels.min()) < 0 or int(pixels.max()) >= levels):
        raise DataError(f"dequantize: pixels {int(pixels.min())}..{int(pixels.max())} outside [0, {levels})")
    top = levels - 1
    return ((pixels.long() * 510 + top).div(2 * top, rounding_mode="floor")).to(torch.uint8)
