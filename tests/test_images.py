"""Tests for smtrnn.data.images (image datasets as quantized pixel sequences) and smtrnn.tools.png (the PNG writer).

Every file is written by the test itself into tmp_path: IDX files by `write_idx` below, independently of the
loader, and PNGs are decoded by `read_png`, a minimal reader written here from the PNG specification.
"""

from __future__ import annotations

import gzip
import struct
import sys
import types
import zlib

import pytest
import torch

from smtrnn.data.images import (
    Images,
    dequantize,
    load_digits,
    load_idx,
    load_images,
    load_torchvision,
    quantize,
    resample,
    split_images,
)
from smtrnn.data.tasks import TaskError, make_task
from smtrnn.errors import DataError
from smtrnn.tools.png import image_grid, read_png_size, write_png


def random_pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def raises_data_error(match: str):
    """pytest.raises for a DataError whose message matches."""
    return pytest.raises(DataError, match=match)


def assert_one_line(info) -> None:
    assert "\n" not in str(info.value)


# ---- PNG --------------------------------------------------------------------------------------------------


def read_png(path) -> torch.Tensor:
    """Decode an 8-bit, non-interlaced grayscale or RGB PNG whose scanlines all use filter 0 (None)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        position += 12 + length
    assert position == len(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, compression, filtering, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 2: 3}[colour]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + width * channels
    assert len(raw) == height * stride
    rows = []
    for y in range(height):
        line = raw[y * stride : (y + 1) * stride]
        assert line[0] == 0, "only filter type 0 is expected"
        rows.append(list(line[1:]))
    pixels = torch.tensor(rows, dtype=torch.uint8)
    return pixels.reshape(height, width, 3) if channels == 3 else pixels


@pytest.mark.parametrize("shape", [(5, 7), (1, 1), (13, 2), (4, 6, 3), (1, 9, 3)])
def test_png_round_trip(tmp_path, shape):
    pixels = random_pixels(*shape, seed=sum(shape))
    path = tmp_path / "image.png"
    write_png(path, pixels)
    assert torch.equal(read_png(path), pixels)
    assert read_png_size(path) == (shape[1], shape[0])


def test_png_overwrites_atomically_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "image.png"
    write_png(str(path), random_pixels(3, 4))
    second = random_pixels(6, 2, seed=1)
    write_png(path, second)
    assert torch.equal(read_png(path), second)
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]


@pytest.mark.parametrize(
    "pixels, match",
    [
        (torch.zeros(3, 4, dtype=torch.int64), "uint8"),
        (torch.zeros(3, 4), "uint8"),
        (torch.zeros(3, dtype=torch.uint8), "shape"),
        (torch.zeros(3, 4, 4, dtype=torch.uint8), "shape"),
        (torch.zeros(0, 4, dtype=torch.uint8), "non-empty"),
        ([[0, 1]], "Tensor"),
    ],
)
def test_png_rejects_bad_pixels(tmp_path, pixels, match):
    with raises_data_error(match) as info:
        write_png(tmp_path / "bad.png", pixels)
    assert_one_line(info)
    assert not list(tmp_path.iterdir())


def test_read_png_size_rejects_other_files(tmp_path):
    path = tmp_path / "not.png"
    path.write_bytes(b"GIF89a" + bytes(30))
    with raises_data_error("not a PNG"):
        read_png_size(path)
    with raises_data_error("cannot read"):
        read_png_size(tmp_path / "missing.png")


@pytest.mark.parametrize("count, columns, pad", [(7, 3, 1), (6, 3, 2), (1, 4, 1), (5, 1, 0)])
def test_image_grid_shape_and_placement(count, columns, pad):
    height, width = 3, 2
    images = random_pixels(count, height, width, seed=count)
    grid = image_grid(images, columns, pad=pad, pad_value=7)
    rows = -(-count // columns)
    assert grid.dtype == torch.uint8
    assert grid.shape == (rows * (height + pad) + pad, columns * (width + pad) + pad)
    covered = torch.zeros(grid.shape, dtype=torch.bool)
    for k in range(count):
        top, left = pad + (k // columns) * (height + pad), pad + (k % columns) * (width + pad)
        assert torch.equal(grid[top : top + height, left : left + width], images[k])
        covered[top : top + height, left : left + width] = True
    assert (grid[~covered] == 7).all()  # padding and the empty cells of a partial last row


def test_image_grid_writes_as_png(tmp_path):
    grid = image_grid(random_pixels(5, 4, 4), columns=2)
    write_png(tmp_path / "grid.png", grid)
    assert read_png_size(tmp_path / "grid.png") == (2 * 5 + 1, 3 * 5 + 1)


@pytest.mark.parametrize(
    "images, kwargs, match",
    [
        (torch.zeros(2, 3, dtype=torch.uint8), {}, r"\(N, H, W\)"),
        (torch.zeros(2, 3, 3), {}, r"\(N, H, W\)"),
        (torch.zeros(0, 3, 3, dtype=torch.uint8), {}, "at least one"),
        (torch.zeros(2, 3, 3, dtype=torch.uint8), {"columns": 0}, "columns"),
        (torch.zeros(2, 3, 3, dtype=torch.uint8), {"pad": -1}, "pad"),
        (torch.zeros(2, 3, 3, dtype=torch.uint8), {"pad_value": 256}, "pad_value"),
    ],
)
def test_image_grid_rejects_bad_input(images, kwargs, match):
    with raises_data_error(match):
        image_grid(images, **{"columns": 2, **kwargs})


# ---- IDX files ----------------------------------------------------------------------------------------------


def idx_bytes(pixels: torch.Tensor, magic: int = 0x00000803) -> bytes:
    """An IDX file: magic, then one big-endian 4-byte size per dimension, then the bytes."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", size) for size in pixels.shape)
    return header + bytes(pixels.flatten().tolist())


def write_idx(path, data: bytes, compress: bool = False):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    pixels = random_pixels(4, 5, 3)
    # The name does not say gzip either way: compression is detected from the bytes.
    path = write_idx(tmp_path / "images-idx3-ubyte", idx_bytes(pixels), compress)
    images = load_idx(path)
    assert torch.equal(images.pixels, pixels) and images.pixels.dtype == torch.uint8
    assert (images.levels, images.name, len(images), images.height, images.width) == (
        256,
        "idx:images-idx3-ubyte",
        4,
        5,
        3,
    )


GOOD = random_pixels(2, 3, 3)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "is empty"),
        (b"\x00\x00", "truncated"),
        (idx_bytes(GOOD)[:10], "truncated"),
        (idx_bytes(GOOD)[:-1], r"truncated: its header says 2 images of 3x3 \(18 bytes\), but only 17"),
        (idx_bytes(GOOD) + b"\x00\x00", "2 trailing bytes"),
        (idx_bytes(torch.zeros(5, dtype=torch.uint8), magic=0x00000801), "labels file"),
        (idx_bytes(GOOD.view(2, 9), magic=0x00000802), "2 dimensions, expected 3"),
        (idx_bytes(GOOD[None], magic=0x00000804), "4 dimensions, expected 3"),
        (idx_bytes(GOOD, magic=0x00000D03), "data type 0x0d, expected unsigned bytes"),
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "not an IDX file"),
        (idx_bytes(GOOD[:0]), "holds no images"),
        (idx_bytes(GOOD[:, :0]), "empty images"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_idx_errors_name_the_file(tmp_path, data, match, compress):
    path = write_idx(tmp_path / "broken.idx", data, compress)
    with raises_data_error(match) as info:
        load_idx(path)
    assert str(path) in str(info.value)
    assert_one_line(info)


def test_idx_missing_and_corrupt_gzip(tmp_path):
    with raises_data_error("not found") as info:
        load_idx(tmp_path / "missing.idx")
    assert "missing.idx" in str(info.value)
    path = write_idx(tmp_path / "cut.gz", gzip.compress(idx_bytes(GOOD))[:-12])
    with raises_data_error("corrupt gzip"):
        load_idx(path)


# ---- digits, Images -----------------------------------------------------------------------------------------


def test_digits():
    pytest.importorskip("sklearn")
    digits = load_digits()
    assert (len(digits), digits.height, digits.width, digits.levels, digits.name) == (1797, 8, 8, 17, "digits")
    assert digits.pixels.shape == (1797, 8, 8)
    assert int(digits.pixels.min()) == 0 and int(digits.pixels.max()) == 16


@pytest.mark.parametrize(
    "pixels, levels, match",
    [
        (torch.tensor([[[0, 4]]]), 4, r"values 0\.\.4, outside \[0, 4\)"),
        (torch.tensor([[[-1, 0]]]), 4, "outside"),
        (torch.zeros(1, 2, 2), 4, "integers"),
        (torch.zeros(2, 2, dtype=torch.uint8), 4, r"\(N, H, W\)"),
        (torch.zeros(0, 2, 2, dtype=torch.uint8), 4, "non-empty"),
        (torch.zeros(1, 2, 2, dtype=torch.uint8), 1, "levels"),
    ],
)
def test_images_validate(pixels, levels, match):
    with raises_data_error(match):
        Images(pixels, levels, "test")


def images(count: int = 10, levels: int = 256) -> Images:
    pixels = torch.arange(count * 4).remainder(levels).reshape(count, 2, 2).to(torch.uint8)
    return Images(pixels, levels, "test")


# ---- quantize / dequantize ----------------------------------------------------------------------------------


def test_quantize_identity_is_raw():
    source = images()
    assert quantize(source, 256) is source


def test_quantize_known_mapping():
    ramp = Images(torch.arange(256).reshape(1, 16, 16).to(torch.uint8), 256, "ramp")
    four = quantize(ramp, 4)
    expected = torch.tensor([v // 64 for v in range(256)]).reshape(1, 16, 16)
    assert torch.equal(four.pixels.long(), expected)
    assert (four.levels, four.name, four.pixels.dtype) == (4, "ramp", torch.uint8)
    # 17 levels onto 2: floor(v * 2 / 17) sends 0..8 to 0 and 9..16 to 1.
    seventeen = Images(torch.arange(17).reshape(1, 1, 17), 17, "d")
    assert quantize(seventeen, 2).pixels.flatten().tolist() == [0] * 9 + [1] * 8


def test_quantize_to_more_than_256_levels_widens_the_dtype():
    ramp = Images(torch.arange(256).reshape(1, 16, 16).to(torch.uint8), 256, "ramp")
    wide = quantize(ramp, 1024)
    assert wide.pixels.dtype != torch.uint8
    assert torch.equal(wide.pixels.long().flatten(), torch.arange(256) * 4)


@pytest.mark.parametrize("levels", [1, 0, -3, 65537, 2.0, True])
def test_quantize_rejects_bad_levels(levels):
    with raises_data_error("levels must be an integer in"):
        quantize(images(), levels)


def test_resample_keeps_count_levels_and_range_and_scales_a_known_image():
    # a left-to-right ramp 0..3 over 4 columns stays a non-decreasing ramp at 8 columns, ends included
    ramp = Images(torch.arange(4, dtype=torch.uint8).repeat(2, 4, 1), levels=4, name="ramp")
    big = resample(ramp, 8)
    assert big.pixels.shape == (2, 8, 8) and big.levels == 4 and big.pixels.dtype == torch.uint8
    assert big.name == "ramp, resampled to 8x8"
    row = big.pixels[0, 0].tolist()
    assert row == sorted(row) and row[0] == 0 and row[-1] == 3
    assert (big.pixels == big.pixels[:, :1]).all()  # every row alike, as in the source
    small = resample(Images(random_pixels(3, 28, 28), 256, "r"), 4)  # shrinking: antialiased, still in range
    assert small.pixels.shape == (3, 4, 4) and int(small.pixels.max()) <= 255
    assert resample(ramp, 4) is ramp


@pytest.mark.parametrize("side", [1, 1025, 2.5, True])
def test_resample_rejects_a_side_outside_2_to_1024(side):
    with raises_data_error(r"side must be an integer in \[2, 1024\]") as info:
        resample(Images(random_pixels(1, 4, 4), 256, "r"), side)
    assert_one_line(info)
    with pytest.raises(TaskError, match="task 'pixels': side"):
        make_task("pixels", side=side)


def test_resampled_pixels_task_is_one_image_per_sequence_of_side_squared():
    pytest.importorskip("sklearn")
    task = make_task("pixels", side=16, levels=4)
    images = task.images()
    assert images.pixels.shape[1:] == (16, 16) and task.max_seq_len() == 256 and "resampled" in images.name
    x, y = task.sequences(images.pixels[:3], 256)
    assert torch.equal(y, images.pixels[:3].flatten(1).long())  # each sequence is exactly one whole image
    assert (x[:, 0] == task.start).all() and torch.equal(x[:, 1:], y[:, :-1])


def test_dequantize_endpoints():
    assert dequantize(torch.tensor([0, 1]), 2).tolist() == [0, 255]
    assert dequantize(torch.tensor([0, 8, 16]), 17).tolist() == [0, 128, 255]  # 127.5 rounds up
    assert torch.equal(dequantize(torch.arange(256), 256), torch.arange(256).to(torch.uint8))
    assert dequantize(torch.tensor([0, 65535]), 65536).tolist() == [0, 255]
    assert dequantize(torch.tensor([[1]]), 4).dtype == torch.uint8


def test_dequantize_rejects_out_of_range():
    with raises_data_error("outside"):
        dequantize(torch.tensor([4]), 4)
    with raises_data_error("integer pixels"):
        dequantize(torch.tensor([0.5]), 4)


# ---- split --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "count, fraction, held_out",
    [
        (10, 0.1, 1),
        (10, 0.25, 3),
        (100, 0.07, 7),
        (2, 0.9, 1),
        (2, 0.01, 1),
        (7, 0.5, 4),
    ],
)
def test_split_holds_out_the_last_images(count, fraction, held_out):
    source = images(count)
    train, valid = split_images(source, fraction)
    assert (len(train), len(valid)) == (count - held_out, held_out)
    assert torch.equal(torch.cat([train.pixels, valid.pixels]), source.pixels)  # disjoint, in order, complete
    assert torch.equal(valid.pixels, source.pixels[count - held_out :])
    again = split_images(source, fraction)
    assert torch.equal(again[0].pixels, train.pixels) and torch.equal(again[1].pixels, valid.pixels)
    assert train.levels == valid.levels == 256


@pytest.mark.parametrize(
    "count, fraction, match",
    [
        (1, 0.1, "at least 2 images"),
        (10, 0.0, "valid_fraction"),
        (10, 1.0, "valid_fraction"),
        (10, -0.1, "valid_fraction"),
    ],
)
def test_split_rejects(count, fraction, match):
    with raises_data_error(match):
        split_images(images(count), fraction)


# ---- load_images and torchvision -----------------------------------------------------------------------------


def test_load_images_dispatch(tmp_path):
    pytest.importorskip("sklearn")
    assert load_images(None).name == load_images("digits").name == "digits"
    pixels = random_pixels(3, 2, 2)
    path = write_idx(tmp_path / "x.idx", idx_bytes(pixels))
    assert torch.equal(load_images(path).pixels, pixels)
    assert torch.equal(load_images(str(path)).pixels, pixels)


def test_load_images_bad_sources(tmp_path):
    with raises_data_error("not found") as info:
        load_images(str(tmp_path / "nowhere.idx"))
    assert "nowhere.idx" in str(info.value)
    with raises_data_error("not found"):
        load_images(tmp_path)  # a directory is not an IDX file
    with raises_data_error("torchvision:NAME:ROOT"):
        load_images("torchvision:MNIST")


def test_torchvision_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails as if not installed
    with raises_data_error("pip install torchvision") as info:
        load_images(f"torchvision:MNIST:{tmp_path}")
    assert_one_line(info)


@pytest.fixture
def fake_torchvision(monkeypatch):
    """A stand-in torchvision.datasets: Gray (tensor .data), Rgb (array .data), Ragged (PIL-like items), Missing."""
    np = pytest.importorskip("numpy")
    calls = []

    class Dataset:
        def __init__(self, root, train=True, download=True):
            calls.append((root, train, download))

    class Gray(Dataset):
        data = torch.arange(24).reshape(2, 3, 4).to(torch.uint8)

    class Rgb(Dataset):
        data = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]]], dtype=np.uint8)

    class Ragged(Dataset):
        def __iter__(self):
            return iter([(np.zeros((3, 3), np.uint8), 0), (np.zeros((3, 4), np.uint8), 1)])

    class Missing(Dataset):
        def __init__(self, root, train=True, download=True):
            raise RuntimeError("Dataset not found. You can use download=True to download it")

    datasets = types.SimpleNamespace(Gray=Gray, Rgb=Rgb, Ragged=Ragged, Missing=Missing, helper=len)
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(datasets=datasets))
    return calls


def test_torchvision_datasets(fake_torchvision, tmp_path):
    gray = load_images(f"torchvision:Gray:{tmp_path}")
    assert torch.equal(gray.pixels, torch.arange(24).reshape(2, 3, 4).to(torch.uint8))
    assert (gray.levels, gray.name) == (256, "torchvision:Gray")
    assert fake_torchvision == [(str(tmp_path), True, False)]  # never downloads
    rgb = load_torchvision("Rgb", tmp_path, train=False)
    # ITU-R 601 luminance, as PIL's "L": 0.299 R + 0.587 G + 0.114 B, rounded.
    assert rgb.pixels.tolist() == [[[76, 150, 29, 255]]]
    assert fake_torchvision[-1] == (str(tmp_path), False, False)


@pytest.mark.parametrize(
    "name, match",
    [
        ("Missing", "torchvision:Missing not found under"),
        ("Ragged", "inconsistent size"),
        ("Nope", "no dataset 'Nope'"),
        ("helper", "no dataset 'helper'"),
    ],
)
def test_torchvision_errors(fake_torchvision, tmp_path, name, match):
    with raises_data_error(match) as info:
        load_torchvision(name, tmp_path)
    assert_one_line(info)
