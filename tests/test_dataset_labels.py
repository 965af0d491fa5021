"""Labelling a whole dataset (`smtrnn label --data`, `write_dataset_labels`): the windows cover every position of a
split, the stored memories equal a fresh teacher forward, the manifest names the data by content, a store of other
data is refused, stores are memory-mapped, and RNNs train from them with no teacher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support import debug_config

from smtrnn.checkpoint import load_model
from smtrnn.cli import main
from smtrnn.data.labels import MANIFEST, load_labels, store_bytes
from smtrnn.data.real import forget_loaded
from smtrnn.data.tasks import make_task
from smtrnn.errors import CheckpointError
from smtrnn.labelling import write_dataset_labels
from smtrnn.trainer import Trainer, train


def write_corpus(root: Path, documents: int = 6, repeat: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(documents):
        (root / f"doc{i:02d}.txt").write_text(f"doc {i}: héllo → {'xy' * (5 + i)}\n" * repeat)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A folder of small UTF-8 documents (do not modify: copy)."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "text")


@pytest.fixture(scope="module")
def text_teacher(corpus, tmp_path_factory) -> Path:
    cfg = debug_config("text", steps=4)
    cfg.task.params = {"path": str(corpus)}
    out = tmp_path_factory.mktemp("teacher") / "text"
    train(cfg, out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def text_store(text_teacher, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("labels") / "text"
    write_dataset_labels(text_teacher, out, batch_size=5, shard_sequences=7)
    return out


@pytest.mark.parametrize("seq_len", [5, 12, 37, 89])
def test_text_windows_cover_every_position_of_the_split(tmp_path, seq_len):
    """On a token file of distinct ids a window's first id is its start: count how often each position is covered."""
    np.save(tmp_path / "ids.npy", np.arange(100, dtype=np.int32))
    (tmp_path / "ids.npy.json").write_text(json.dumps({"vocab_size": 100}))
    task = make_task("text", path=str(tmp_path / "ids.npy"))
    flat = task._flat().long()
    windows = task.windows(seq_len)
    x, y = windows.read(0, windows.count)
    assert windows.count == -(-(flat.numel() - 1) // seq_len) and x.shape == y.shape == (windows.count, seq_len)
    hits = torch.zeros(flat.numel() - 1, dtype=torch.long)
    for row_x, row_y in zip(x, y):
        start = int(row_x[0] - flat[0])
        assert torch.equal(row_x, flat[start : start + seq_len])
        assert torch.equal(row_y, flat[start + 1 : start + seq_len + 1])
        hits[start : start + seq_len] += 1
    assert int(hits.min()) >= 1 and int((hits > 1).sum()) < seq_len  # only the last window overlaps its neighbour
    assert int(y[-1, -1]) == int(flat[-1])  # the last window ends at the final token


def test_pixel_windows_are_one_image_each():
    pytest.importorskip("sklearn")
    task = make_task("pixels", levels=4)
    windows = task.windows(64)
    x, y = windows.read(3, 5)
    assert windows.count == len(task.images())
    sx, sy = task.sequences(task.images().pixels[3:5], 64)
    assert torch.equal(x, sx) and torch.equal(y, sy)


def test_fingerprint_names_the_contents(corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    same = make_task("text", path=str(copy)).fingerprint()
    assert same == make_task("text", path=str(corpus)).fingerprint() and same["split"] == "train"
    (copy / "doc01.txt").write_text((copy / "doc01.txt").read_text().replace("x", "z", 1))
    forget_loaded()
    changed = make_task("text", path=str(copy)).fingerprint()
    assert changed["tokens"] == same["tokens"] and changed["sha256"] != same["sha256"]


def test_dataset_labels_are_the_teacher_on_every_window(text_teacher, text_store, corpus):
    labels = load_labels(text_store)
    task = make_task("text", path=str(corpus))
    windows = task.windows(labels.seq_len)
    x, y, m = labels.read(0, len(labels))
    wx, wy = windows.read(0, windows.count)
    assert len(labels) == windows.count and torch.equal(x, wx) and torch.equal(y, wy)
    _, model = load_model(text_teacher)
    with torch.no_grad():
        torch.testing.assert_close(m.float(), model.teacher.encode(x), atol=1e-2, rtol=1e-2)
    manifest = labels.manifest
    assert manifest["source"] == "dataset" and manifest["seed"] is None
    assert manifest["data"] == {"path": str(corpus)} | task.fingerprint()
    assert [s["sequences"] for s in manifest["shards"]][:-1] == [7] * (len(manifest["shards"]) - 1)


def test_the_valid_split_labels_the_held_out_documents(text_teacher, corpus, tmp_path):
    manifest = write_dataset_labels(text_teacher, tmp_path / "valid", split="valid")
    held_out = make_task("text", path=str(corpus)).held_out()
    assert manifest["data"]["split"] == "valid" and manifest["sequences"] == held_out.windows(12).count
    x, _, _ = load_labels(tmp_path / "valid").read(0, 1)
    assert torch.equal(x, held_out.windows(12).read(0, 1)[0])


def test_another_data_file_of_the_same_vocabulary_is_labelled_and_recorded(text_teacher, tmp_path, monkeypatch):
    other = write_corpus(tmp_path / "other", documents=4, repeat=5).resolve()
    monkeypatch.chdir(tmp_path)
    manifest = write_dataset_labels(text_teacher, tmp_path / "labels", data="other")  # relative: stored absolute
    store = load_labels(tmp_path / "labels")
    assert manifest["data"]["path"] == str(other) and store.config().task.params["path"] == str(other)
    assert len(store) == make_task("text", path=str(other)).windows(12).count


def test_a_store_of_changed_data_is_refused_and_left_alone(text_teacher, corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(corpus, data)
    out = tmp_path / "labels"
    write_dataset_labels(text_teacher, out, data=str(data))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (data / "doc00.txt").write_text((data / "doc00.txt").read_text().replace("x", "q", 1))
    with pytest.raises(CheckpointError, match="holds other labels: data is"):
        write_dataset_labels(text_teacher, out, data=str(data))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_partial_dataset_store_resumes(text_teacher, text_store, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(text_store, partial)
    manifest = json.loads((partial / MANIFEST).read_text())
    manifest["shards"] = manifest["shards"][:2]
    (partial / MANIFEST).write_text(json.dumps(manifest))
    for shard in sorted(partial.glob("shard-*.safetensors"))[2:]:
        shard.unlink()
    write_dataset_labels(text_teacher, partial, batch_size=5, shard_sequences=7)
    whole = load_labels(text_store)
    assert len(whole) > 14  # the two kept shards are not all of it
    ours, theirs = load_labels(partial).read(0, len(whole)), whole.read(0, len(whole))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_a_store_larger_than_the_free_disk_is_refused_before_writing_and_counts_only_what_is_left(
    text_teacher, text_store, tmp_path, monkeypatch
):
    manifest = json.loads((text_store / MANIFEST).read_text())
    need = store_bytes(manifest, manifest["sequences"])
    assert need <= sum(shard["bytes"] for shard in manifest["shards"])  # the estimate leaves out only the headers
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=need // 2))
    with pytest.raises(CheckpointError, match=r"need about 0\.\d MB of disk; .* has 0\.\d MB free"):
        write_dataset_labels(text_teacher, tmp_path / "new", batch_size=5, shard_sequences=7)
    assert not (tmp_path / "new").exists()
    partial = Path(shutil.copytree(text_store, tmp_path / "partial"))  # all but the last shard: that one fits
    manifest["shards"] = manifest["shards"][:-1]
    (partial / MANIFEST).write_text(json.dumps(manifest))
    write_dataset_labels(text_teacher, partial, batch_size=5, shard_sequences=7)
    assert len(load_labels(partial)) == manifest["sequences"]


def test_a_store_of_an_earlier_format_version_is_refused_in_one_line(text_store, tmp_path, text_teacher):
    old = tmp_path / "old"
    shutil.copytree(text_store, old)
    manifest = json.loads((old / MANIFEST).read_text())
    manifest["version"] = 1
    (old / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="format version 1; this smtrnn reads version 3: label again"):
        load_labels(old)
    with pytest.raises(CheckpointError, match="format version 1"):
        write_dataset_labels(text_teacher, old)


def test_the_store_is_read_from_disk_row_by_row(text_store, tmp_path):
    """Shards are memory-mapped: bytes changed on disk after opening show in the next read (nothing was copied)."""
    copy = tmp_path / "copy"
    shutil.copytree(text_store, copy)
    store = load_labels(copy)
    _, _, before = store.read(0, 1)
    shard = copy / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    tail = len(data) - before.numel() * 2 * 7  # m is the last tensor written: the first row's bytes start here
    assert np.frombuffer(bytes(data[tail : tail + 2]), np.float16)[0] == before.flatten()[0].item()
    data[tail : tail + 2] = np.float16(123.0).tobytes()
    with open(shard, "r+b") as handle:
        handle.write(data)
    assert store.read(0, 1)[2].flatten()[0].item() == 123.0


@pytest.mark.parametrize("cell", ["mlp", "gru"])
def test_an_rnn_fits_dataset_labels_with_no_teacher(text_store, tmp_path, cell):
    cfg = load_labels(text_store).config()
    cfg.train.method, cfg.train.labels, cfg.train.steps, cfg.train.log_every = "labels", str(text_store), 60, 1
    cfg.train.device, cfg.rnn.cell = "cpu", cell
    trainer = Trainer(cfg, tmp_path / cell, show_progress=False)
    assert trainer.model.teacher is None
    first = trainer.train_step()
    for _ in range(59):
        last = trainer.train_step()
    assert last["dynamics"] < 0.5 * first["dynamics"] and last["loss"] < 0.8 * first["loss"], (first, last)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_labels_pixels_then_trains_and_evaluates(tmp_path, capsys):
    pytest.importorskip("sklearn")
    teacher = tmp_path / "teacher"
    assert (
        run_cli(
            capsys,
            "train",
            "--task",
            "pixels",
            "--preset",
            "debug",
            "--steps",
            2,
            "--out",
            teacher,
            "--quiet",
            "--device",
            "cpu",
        )[0]
        == 0
    )
    code, out, err = run_cli(
        capsys,
        "label",
        "--teacher",
        teacher,
        "--data",
        "--split",
        "valid",
        "--out",
        tmp_path / "labels",
        "--device",
        "cpu",
        "--quiet",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["source"] == "dataset" and summary["data"]["split"] == "valid"
    assert summary["sequences_written"] == len(make_task("pixels", levels=4).held_out().images())
    code, out, err = run_cli(
        capsys,
        "train",
        "--method",
        "labels",
        "--labels",
        tmp_path / "labels",
        "--cell",
        "gru",
        "--steps",
        2,
        "--quiet",
        "--device",
        "cpu",
        "--out",
        tmp_path / "gru",
    )
    assert code == 0, err
    assert main(["eval", str(tmp_path / "gru"), "--json", "--device", "cpu", "--batches", "1"]) == 0
    assert "held_out_documents" in json.loads(capsys.readouterr().out)


def test_bad_dataset_label_inputs_exit_2_with_one_line(capsys, text_teacher, smt_run, tmp_path):
    tokens = tmp_path / "wide.npy"
    np.save(tokens, np.arange(100, dtype=np.int32) % 1000)
    (tmp_path / "wide.npy.json").write_text(json.dumps({"vocab_size": 1000}))
    label = ["label", "--device", "cpu", "--quiet"]
    cases = {
        "generated task 'retrieval'": label + ["--teacher", smt_run[0], "--data", "--out", tmp_path / "a"],
        "--sequences and --seed do not apply": label
        + ["--teacher", text_teacher, "--data", "--sequences", 4, "--out", tmp_path / "b"],
        "--split test is for final numbers only": label
        + ["--teacher", text_teacher, "--data", "--split", "test", "--out", tmp_path / "c"],
        "vocabulary of 1000, the teacher's is 256": label
        + ["--teacher", text_teacher, "--data", tokens, "--out", tmp_path / "d"],
        "--split chooses the split of --data": label
        + ["--teacher", smt_run[0], "--split", "valid", "--out", tmp_path / "e"],
        "no such file or folder": label
        + ["--teacher", text_teacher, "--data", tmp_path / "nowhere", "--out", tmp_path / "f"],
    }
    for named, argv in cases.items():
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and named in err, (named, err)
    for folder in "abcdef":
        assert not (tmp_path / folder).exists(), folder
