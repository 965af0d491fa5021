"""The data tasks (`smtrnn.data.real`): text windows and pixel sequences through the Task interface, their splits,
bits over whole held-out documents, every training method on them, sampling text and image grids, and the CLI's
refusals of bad data."""

from __future__ import annotations

import gzip
import json
import math
import struct

import pytest
import torch
from support import debug_config

from smtrnn.cli import main
from smtrnn.data.tasks import NO_TARGET, TaskError, make_task
from smtrnn.evaluate import evaluate_documents
from smtrnn.model import Model
from smtrnn.tools.png import read_png_size

pytest.importorskip("sklearn")  # the pixels default is scikit-learn's digits


@pytest.fixture
def text_dir(tmp_path):
    """A folder of 12 small UTF-8 documents (multi-byte characters included)."""
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(12):
        (root / f"doc{i:02d}.txt").write_text(f"document {i}: héllo wörld → {'ab' * (20 + i)} 世界\n" * 3)
    return root


def write_idx(path, images):
    data = struct.pack(">IIII", 0x00000803, *images.shape) + bytes(images.flatten().tolist())
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


# --- text ---------------------------------------------------------------------------------------------------


def test_text_windows_are_next_byte_pairs_from_the_training_documents(text_dir):
    task = make_task("text", path=str(text_dir))
    x, y = task.sample(6, 20, torch.Generator().manual_seed(0))
    assert task.vocab_size == 256 and x.shape == y.shape == (6, 20)
    assert torch.equal(x[:, 1:], y[:, :-1])
    train = bytes(torch.cat(task.documents()).tolist())
    for row_x, row_y in zip(x, y):
        assert bytes(row_x.tolist() + row_y[-1:].tolist()) in train


def test_text_splits_are_disjoint_documents(text_dir):
    task = make_task("text", path=str(text_dir))
    train, valid = task.documents(), task.held_out().documents()
    assert train and valid and len(train) + len(valid) == 12
    assert {bytes(d.tolist()) for d in train}.isdisjoint(bytes(d.tolist()) for d in valid)


def test_text_shorter_than_one_sequence_is_refused(tmp_path):
    (tmp_path / "tiny.txt").write_text("just a few bytes")
    task = make_task("text", path=str(tmp_path / "tiny.txt"))
    with pytest.raises(TaskError, match="at most"):
        task.sample(2, 64, torch.Generator())


def test_token_file_task_uses_its_vocabulary(tmp_path):
    tokens = torch.randint(0, 1000, (5000,), generator=torch.Generator().manual_seed(0)).to(torch.int32)
    path = tmp_path / "train.bin"
    path.write_bytes(tokens.numpy().astype("uint16").tobytes())
    (tmp_path / "train.bin.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": 1000}))
    task = make_task("text", path=str(path))
    x, y = task.sample(4, 16, torch.Generator().manual_seed(1))
    assert task.vocab_size == 1000 and x.dtype == torch.long and int(x.max()) < 1000
    assert torch.equal(x[:, 1:], y[:, :-1])


# --- pixels -------------------------------------------------------------------------------------------------


def test_pixel_sequences_are_one_image_each_with_a_start_token():
    task = make_task("pixels")
    images = task.images().pixels.flatten(1).long()
    x, y = task.sample(8, 64, torch.Generator().manual_seed(0))
    assert task.vocab_size == 18 and (x[:, 0] == task.start).all()
    for row_x, row_y in zip(x, y):
        match = (images == row_y).all(1)
        assert match.any()  # y is exactly one whole training image in raster order
        assert torch.equal(row_x[1:], row_y[:-1])


def test_pixels_without_start_token_predict_the_next_pixel_and_nothing_after_the_last():
    task = make_task("pixels", start_token=False, levels=4)
    x, y = task.sample(4, 64, torch.Generator().manual_seed(0))
    assert task.vocab_size == 4 and int(x.max()) < 4
    assert torch.equal(y[:, :-1], x[:, 1:]) and (y[:, -1] == NO_TARGET).all()


def test_pixel_sequences_never_straddle_images():
    with pytest.raises(TaskError, match="at most 64"):
        make_task("pixels").sample(2, 65, torch.Generator())


def test_pixels_from_an_idx_file_and_a_held_out_split(tmp_path):
    pictures = torch.randint(0, 256, (20, 3, 5), generator=torch.Generator().manual_seed(0), dtype=torch.int64)
    path = write_idx(tmp_path / "images.idx.gz", pictures)
    task = make_task("pixels", path=str(path), levels=16)
    valid, test = task.held_out().images(), task.held_out("test").images()
    assert valid.pixels.shape[1:] == (3, 5) and len(valid) + len(test) + len(task.images()) == 20
    assert torch.equal(test.pixels[-1].long(), pictures[-1] * 16 // 256)  # the test split: the last images
    assert torch.equal(valid.pixels[0].long(), pictures[len(task.images())] * 16 // 256)


# --- bits over whole documents ------------------------------------------------------------------------------


def model_for(task_name: str, **params) -> tuple[Model, object, int]:
    cfg = debug_config(task_name)
    cfg.task.params = params
    task = make_task(task_name, **params)
    torch.manual_seed(0)
    return Model.for_run(cfg, task.vocab_size), task, cfg.task.seq_len


def test_uniform_predictions_cost_eight_bits_per_byte(text_dir):
    model, task, seq_len = model_for("text", path=str(text_dir))
    model.rnn.readout = lambda m: torch.zeros(*m.shape[:-1], 256)
    model.teacher.predict_next = lambda m: torch.zeros(*m.shape[:-1], 256)
    result = evaluate_documents(model, task, seq_len, batch_size=4)
    expected_tokens = sum(d.numel() - 1 for d in task.held_out().documents())
    assert result["tokens"] == expected_tokens and result["documents"] == len(task.held_out().documents())
    assert result["rnn_bits_per_token"] == pytest.approx(8.0)
    assert result["teacher_bits_per_token"] == pytest.approx(8.0)
    assert result["rnn_nats_per_token"] == pytest.approx(8.0 * math.log(2))


def test_bits_by_position_cover_every_token_and_average_to_the_total(text_dir):
    model, task, seq_len = model_for("text", path=str(text_dir))
    result = evaluate_documents(model, task, seq_len, batch_size=4)
    longest = max(d.numel() - 1 for d in task.held_out().documents())
    for who, furthest in (("rnn", longest), ("teacher", seq_len)):  # the teacher's context restarts every T
        buckets = result[f"{who}_bits_by_position"]
        assert (
            list(buckets)[0] == "0"
            and int(list(buckets)[-1].split("-")[0]) < furthest <= 2 * int(list(buckets)[-1].split("-")[0]) + 1
        )
    # the buckets' token-weighted mean is the total: count each bucket's tokens by hand
    counts = torch.zeros(longest)
    for d in task.held_out().documents():
        counts[: d.numel() - 1] += 1
    weights = {
        name: float(counts[int(name.split("-")[0]) : int(name.split("-")[-1]) + 1].sum())
        for name in result["rnn_bits_by_position"]
    }
    mean = sum(weights[k] * v for k, v in result["rnn_bits_by_position"].items()) / sum(weights.values())
    assert mean == pytest.approx(result["rnn_bits_per_token"], rel=1e-6)


def test_bits_of_a_known_distribution_by_hand():
    """Readout fixed to p(level 0) = 1/2 and the rest shared: bits = mean over pixels of -log2 p(pixel)."""
    model, task, seq_len = model_for("pixels", levels=4)
    probs = torch.tensor([0.5, 0.2, 0.2, 0.1, 0.0 + 1e-30])  # levels 0..3 and START
    model.rnn.readout = lambda m: probs.log().expand(*m.shape[:-1], 5)
    result = evaluate_documents(model, task, 64, batch_size=16)
    pixels = task.held_out().images().pixels.flatten().long()
    expected = float(-(probs[pixels].log2()).mean())
    assert result["tokens"] == pixels.numel() and result["rnn_bits_per_token"] == pytest.approx(expected, rel=1e-5)


def test_whole_document_score_does_not_depend_on_the_chunk_length(text_dir):
    """The RNN carries its memory across chunks: reading in chunks of 7 or of 40 scores the same."""
    model, task, _ = model_for("text", path=str(text_dir))
    model.teacher = None
    short, long = (evaluate_documents(model, task, chunk, batch_size=3)["rnn_bits_per_token"] for chunk in (7, 40))
    assert short == pytest.approx(long, rel=1e-5)


def test_max_tokens_cuts_and_says_so(text_dir):
    model, task, seq_len = model_for("text", path=str(text_dir))
    result = evaluate_documents(model, task, seq_len, batch_size=4, max_tokens=100)
    assert result["tokens"] == 100 and result["truncated"]


# --- every method and the CLI -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["smt", "bptt", "smt+dmt"])
@pytest.mark.parametrize("task", ["text", "pixels"])
def test_every_method_trains_on_real_data(task, method, text_dir, tmp_path, capsys):
    data = ["--data", str(text_dir)] if task == "text" else []
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                task,
                *data,
                "--method",
                method,
                "--preset",
                "debug",
                "--steps",
                "4",
                "--out",
                str(out),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", str(out), "--json", "--device", "cpu", "--batches", "1", "--max-tokens", "100"]) == 0
    report = json.loads(capsys.readouterr().out)["held_out_documents"]
    assert report["tokens"] == 100 if task == "text" else report["tokens"] > 0
    assert math.isfinite(report["rnn_bits_per_token"])
    assert ("teacher_bits_per_token" in report) == (method != "bptt")


def test_sample_text_continues_a_string(text_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "text",
                "--data",
                str(text_dir),
                "--preset",
                "debug",
                "--steps",
                "2",
                "--out",
                str(out),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["sample", str(out), "--text", "héllo", "--length", "10", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("héllo")
    assert main(["sample", str(out), "--png", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "needs a pixels run" in capsys.readouterr().err


def test_sample_png_writes_a_grid_of_three_rows(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "pixels",
                "--preset",
                "debug",
                "--steps",
                "2",
                "--out",
                str(out),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    png = tmp_path / "grid.png"
    assert main(["sample", str(out), "--png", str(png), "--count", "5", "--device", "cpu"]) == 0
    assert read_png_size(png) == (5 * 9 + 1, 3 * 9 + 1)  # 8x8 images, 1-pixel gaps
    assert main(["sample", str(out), "--text", "hi", "--device", "cpu"]) == 2
    assert "needs a byte-level text run" in capsys.readouterr().err


def bad_token_file(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes([1, 2, 250, 3]))
    (tmp_path / "bad.bin.json").write_text(json.dumps({"dtype": "uint8", "vocab_size": 100}))
    return str(path)


def bad_idx(tmp_path):
    data = struct.pack(">IIII", 0x00000803, 4, 8, 8) + bytes(100)  # header says 256 pixels, 100 follow
    (tmp_path / "short.idx").write_bytes(data)
    return str(tmp_path / "short.idx")


@pytest.mark.parametrize(
    "argv, names",
    [
        (lambda p: ["--task", "retrieval", "--data", str(p)], "--data applies"),
        (lambda p: ["--task", "text", "--data", str(p / "missing.txt")], "missing.txt"),
        (lambda p: ["--task", "text", "--data", str(p / "empty.txt")], "empty"),
        (lambda p: ["--task", "text", "--data", str(p / "blob.txt")], "binary"),
        (lambda p: ["--task", "text", "--data", bad_token_file(p)], "250"),
        (lambda p: ["--task", "text", "--data", str(p / "short.txt"), "--seq-len", "64"], "at most"),
        (lambda p: ["--task", "pixels", "--data", bad_idx(p)], "short.idx"),
        (lambda p: ["--task", "pixels", "--seq-len", "100"], "at most 64"),
    ],
)
def test_bad_data_is_one_line_and_exit_2(argv, names, tmp_path, capsys):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "short.txt").write_text("too short for one sequence")
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                *argv(tmp_path),
                "--preset",
                "debug",
                "--steps",
                "2",
                "--out",
                str(out),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("smtrnn: error:") and names in err and "\n" not in err
    assert not out.exists()


def test_text_task_reads_a_local_huggingface_dataset(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    rows = [f"story {i}: once upon a time there was a byte-level model number {i}. " * 2 for i in range(30)]
    datasets.Dataset.from_dict({"text": rows}).save_to_disk(str(tmp_path / "stories"))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "text",
                "--data",
                f"hf:{tmp_path / 'stories'}",
                "--preset",
                "debug",
                "--steps",
                "2",
                "--out",
                str(out),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    task = make_task("text", path=f"hf:{tmp_path / 'stories'}")
    held_out = len(task.held_out().documents()) + len(task.held_out("test").documents())
    assert task.vocab_size == 256 and len(task.documents()) + held_out == 30
