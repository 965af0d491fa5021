"""A dependency-free PNG writer (zlib + struct), for image samples and grids without matplotlib or PIL.

A PNG file is the 8-byte signature followed by chunks, each ``length | type | data | crc32(type + data)``.
We write three: IHDR (width, height, bit depth 8, colour type 0 = grayscale or 2 = RGB, no interlace), one IDAT
holding the zlib-compressed scanlines, and IEND. Every scanline starts with filter byte 0 (None), so the
decompressed IDAT is exactly the rows of pixels, each prefixed by a zero.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import torch
from torch import Tensor

from smtrnn.errors import DataError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GRAY, _RGB = 0, 2  # IHDR colour types


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: Tensor) -> bytes:
    """The PNG bytes of pixels (H, W) grayscale or (H, W, 3) RGB, torch.uint8."""
    if not isinstance(pixels, Tensor):
        raise DataError(f"PNG pixels must be a torch.Tensor, got {type(pixels).__name__}")
    if pixels.dtype != torch.uint8:
        raise DataError(f"PNG pixels must be torch.uint8, got {pixels.dtype}")
    if not (pixels.dim() == 2 or (pixels.dim() == 3 and pixels.shape[2] == 3)):
        raise DataError(f"PNG pixels must be (H, W) or (H, W, 3), got shape {tuple(pixels.shape)}")
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise DataError(f"PNG pixels must be non-empty, got shape {tuple(pixels.shape)}")
    colour = _GRAY if pixels.dim() == 2 else _RGB
    rows = pixels.detach().cpu().reshape(height, -1)
    scanlines = torch.cat([torch.zeros(height, 1, dtype=torch.uint8), rows], dim=1)  # filter byte 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    body = zlib.compress(bytes(scanlines.flatten().tolist()))
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def write_png(path: str | Path, pixels: Tensor) -> None:
    """Write pixels (H, W) grayscale or (H, W, 3) RGB, torch.uint8, to path as a PNG.

    Atomic: the bytes go to a temporary file in the same directory, which then replaces path, so a reader never
    sees a half-written image.
    """
    path = Path(path)
    data = encode_png(pixels)
    try:
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def image_grid(images: Tensor, columns: int, pad: int = 1, pad_value: int = 255) -> Tensor:
    """Tile images (N, H, W) uint8 into one (rows·(H+pad)+pad, columns·(W+pad)+pad) uint8 image.

    Image k sits at grid row k // columns, column k % columns; rows = ceil(N / columns), and the cells after the
    last image of a partial row stay pad_value.
    """
    if not isinstance(images, Tensor) or images.dim() != 3 or images.dtype != torch.uint8:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"image_grid needs a (N, H, W) torch.uint8 tensor, got {shape}")
    count, height, width = images.shape
    if count == 0:
        raise DataError("image_grid needs at least one image, got 0")
    if columns < 1:
        raise DataError(f"image_grid needs columns >= 1, got {columns}")
    if pad < 0:
        raise DataError(f"image_grid needs pad >= 0, got {pad}")
    if not 0 <= pad_value <= 255:
        raise DataError(f"image_grid needs 0 <= pad_value <= 255, got {pad_value}")
    rows = -(-count // columns)
    grid = torch.full(
        (rows * (height + pad) + pad, columns * (width + pad) + pad), pad_value, dtype=torch.uint8, device=images.device
    )
    for k in range(count):
        top, left = pad + (k // columns) * (height + pad), pad + (k % columns) * (width + pad)
        grid[top : top + height, left : left + width] = images[k]
    return grid


def read_png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the PNG at path, read from its IHDR chunk."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            head = file.read(24)
    except OSError as exc:
        raise DataError(f"cannot read PNG '{path}': {exc.strerror or exc}") from exc
    if len(head) < 24 or head[:8] != SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"'{path}' is not a PNG file (no signature and IHDR chunk)")
    width, height = struct.unpack(">II", head[16:24])
    return width, height
