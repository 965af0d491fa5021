"""Label once, train many (`smtrnn.data.labels`, method labels): stored labels equal the teacher's forward, a store
resumes shard by shard, mismatched stores and runs are refused in one line, and RNNs of different cells fit one
label set with no teacher in the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support import debug_config

from smtrnn.checkpoint import checkpoint_dir, load_model
from smtrnn.cli import main
from smtrnn.data.labels import MANIFEST, file_sha256, load_labels
from smtrnn.errors import CheckpointError
from smtrnn.labelling import write_labels
from smtrnn.trainer import Trainer, train

SHARD = 8  # sequences per shard: 20 sequences make shards of 8, 8 and 4


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Path]:
    """Two briefly trained SMT runs of the same config, different seeds (do not modify)."""
    runs = {}
    for seed in (0, 1):
        out = tmp_path_factory.mktemp("teacher") / f"seed{seed}"
        train(debug_config(steps=6, train__seed=seed), out, show_progress=False)
        runs[f"seed{seed}"] = out
    return runs


@pytest.fixture(scope="module")
def store(teachers, tmp_path_factory) -> Path:
    """A complete store of 20 sequences from teacher seed0 (do not modify: copy)."""
    out = tmp_path_factory.mktemp("labels") / "store"
    write_labels(teachers["seed0"], out, 20, batch_size=6, shard_sequences=SHARD)
    return out


def labels_config(store: Path, cell: str = "mlp", steps: int = 100):
    cfg = load_labels(store).config()
    cfg.train.method, cfg.train.labels, cfg.train.steps, cfg.train.log_every = "labels", str(store), steps, 1
    cfg.train.device, cfg.rnn.cell = "cpu", cell
    return cfg


def shard_stats(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.glob("shard-*.safetensors"))}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_labels_equal_a_fresh_teacher_forward(teachers, store):
    labels = load_labels(store)
    _, model = load_model(teachers["seed0"])
    x, _, m = labels.read(0, len(labels))
    assert m.dtype == torch.float16 and m.shape == (20, 12, 32) and x.shape == (20, 12)
    with torch.no_grad():
        fresh = model.teacher.encode(x)
    torch.testing.assert_close(m.float(), fresh, atol=1e-2, rtol=1e-2)
    assert not torch.equal(x[:SHARD], x[SHARD : 2 * SHARD])  # each shard draws its own sequences
    manifest = json.loads((store / MANIFEST).read_text())
    assert manifest["sequences_written"] == 20 and [s["sequences"] for s in manifest["shards"]] == [8, 8, 4]
    assert manifest["shapes"]["m"] == [20, 12, 32] and manifest["task"]["name"] == "retrieval"


def test_a_batch_holds_stored_sequences_with_their_memories(store):
    labels = load_labels(store)
    x, y, m = labels.sample(5, 12, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 12) and m.shape == (5, 12, 32) and m.dtype == torch.float32
    all_x, all_y, all_m = labels.read(0, len(labels))
    row = next(i for i in range(20) if torch.equal(all_x[i], x[0]))
    assert torch.equal(all_m[row].float(), m[0]) and torch.equal(all_y[row], y[0])


def test_rows_across_shards_come_back_in_the_order_asked(store):
    labels = load_labels(store)
    x, y, m = labels.read(0, len(labels))
    index = torch.tensor([19, 0, 8, 7, 8, 15, 3])  # shards 2, 0, 1, 0, 1, 1, 0; a repeat
    rx, ry, rm = labels.rows(index)
    assert torch.equal(rx, x[index]) and torch.equal(ry, y[index]) and torch.equal(rm, m[index])
    with pytest.raises(IndexError):
        labels.rows(torch.tensor([20]))


def test_resume_skips_finished_shards_and_completes_a_partial_store(teachers, store, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(store, partial)
    manifest = json.loads((partial / MANIFEST).read_text())
    manifest["shards"] = manifest["shards"][:1]  # killed after the first shard's commit, midway through the second
    (partial / MANIFEST).write_text(json.dumps(manifest))
    (partial / "shard-00001.safetensors").write_bytes(b"half a shard")
    (partial / "shard-00002.safetensors").unlink()
    before = shard_stats(partial)
    write_labels(teachers["seed0"], partial, 20, batch_size=6, shard_sequences=SHARD)
    after = shard_stats(partial)
    assert after["shard-00000.safetensors"] == before["shard-00000.safetensors"]  # skipped: same mtime, same bytes
    assert {name: data for name, (_, data) in after.items()} == {n: d for n, (_, d) in shard_stats(store).items()}
    write_labels(teachers["seed0"], partial, 20, batch_size=6, shard_sequences=SHARD)  # complete: writes nothing
    assert shard_stats(partial) == after


def test_a_full_disk_while_labelling_is_one_line_and_the_store_resumes(teachers, store, tmp_path, capsys, monkeypatch):
    """The second shard's write fails as a full disk does (no file named by the write itself): one line naming the
    shard, exit 2, no partial shard left behind; the next run completes the store as a fresh one would."""
    import errno

    import smtrnn.files as files

    real, writes = files.write_bytes, []

    def full_on_second_shard(path, data):
        writes.append(path)
        if "shard-00001" in Path(path).name:  # its temporary file, .shard-00001.safetensors.XXXXXXXX.tmp
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(files, "write_bytes", full_on_second_shard)
    out = tmp_path / "labels"
    argv = [
        "label",
        "--teacher",
        teachers["seed0"],
        "--out",
        out,
        "--sequences",
        20,
        "--batch-size",
        6,
        "--shard-sequences",
        SHARD,
        "--quiet",
        "--device",
        "cpu",
    ]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"smtrnn: error: cannot use {out / 'shard-00001.safetensors'}: No space left on device")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.safetensors"]
    monkeypatch.setattr(files, "write_bytes", real)
    assert run_cli(capsys, *argv)[0] == 0
    assert {n: d for n, (_, d) in shard_stats(out).items()} == {n: d for n, (_, d) in shard_stats(store).items()}


def test_a_store_of_another_teacher_is_refused(teachers, store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    with pytest.raises(CheckpointError, match="teacher_hash"):
        write_labels(teachers["seed1"], copy, 20, batch_size=6, shard_sequences=SHARD)
    with pytest.raises(CheckpointError, match="sequences is 20, this call's is 30"):
        write_labels(teachers["seed0"], copy, 30, batch_size=6, shard_sequences=SHARD)


@pytest.mark.parametrize(
    "field, value, named",
    [
        ("memory.width", 8, "memory.width"),
        ("task.params", {"num_symbols": 5}, "task.params"),
        ("task.seq_len", 16, "task.seq_len"),
    ],
)
def test_a_run_whose_task_or_memory_differs_from_the_labels_is_refused(store, tmp_path, field, value, named):
    cfg = labels_config(store)
    section, name = field.split(".")
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(CheckpointError, match=named) as error:
        Trainer(cfg, tmp_path / "run", show_progress=False)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("cell", ["mlp", "gru"])
def test_training_from_labels_overfits_a_small_set_with_no_teacher(store, tmp_path, cell):
    trainer = Trainer(labels_config(store, cell), tmp_path / cell, show_progress=False)
    assert trainer.model.teacher is None
    first = trainer.train_step()
    for _ in range(99):
        last = trainer.train_step()
    assert last["dynamics"] < 0.3 * first["dynamics"], (first, last)
    assert last["loss"] < 0.7 * first["loss"], (first, last)


def test_cli_label_then_train_two_cells_from_one_label_set(capsys, teachers, tmp_path):
    labels = tmp_path / "labels"
    code, out, err = run_cli(
        capsys,
        "label",
        "--teacher",
        teachers["seed0"],
        "--out",
        labels,
        "--sequences",
        12,
        "--batch-size",
        4,
        "--device",
        "cpu",
        "--quiet",
    )
    assert code == 0, err
    assert json.loads(out)["shapes"]["m"] == [12, 12, 32]
    for cell in ("transformer", "lstm"):
        code, out, err = run_cli(
            capsys,
            "train",
            "--method",
            "labels",
            "--labels",
            labels,
            "--cell",
            cell,
            "--steps",
            3,
            "--quiet",
            "--device",
            "cpu",
            "--out",
            tmp_path / cell,
        )
        assert code == 0, err
        saved = json.loads((checkpoint_dir(tmp_path / cell) / "config.json").read_text())["config"]
        assert saved["rnn"]["cell"] == cell and saved["train"]["labels"] == str(labels)
        assert "rnn_accuracy" in json.loads(out)


def test_bad_label_inputs_exit_2_with_one_line(capsys, teachers, store, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(store, corrupt)
    (corrupt / MANIFEST).write_text("{not json")
    train_args = ["train", "--quiet", "--device", "cpu", "--steps", 2]
    cases = {
        "does not exist": train_args
        + ["--method", "labels", "--labels", tmp_path / "missing", "--out", tmp_path / "a"],
        "is corrupt": train_args + ["--method", "labels", "--labels", corrupt, "--out", tmp_path / "b"],
        "only for methods labels and labels+dmt": train_args
        + ["--method", "smt", "--labels", store, "--out", tmp_path / "c"],
        "pass --labels": train_args + ["--preset", "debug", "--method", "labels", "--out", tmp_path / "d"],
        "memory.width": train_args
        + ["--method", "labels", "--labels", store, "--memory-size", 64, "--out", tmp_path / "e"],
        "no teacher": ["label", "--teacher", _bptt_run(tmp_path), "--out", tmp_path / "f", "--device", "cpu"],
        "unknown label dtype": [
            "label",
            "--teacher",
            teachers["seed0"],
            "--out",
            tmp_path / "g",
            "--dtype",
            "int8",
            "--device",
            "cpu",
        ],
    }
    for named, argv in cases.items():
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and named in err, (named, err)
    for folder in "abcdefg":
        assert not (tmp_path / folder).exists() or not any((tmp_path / folder).iterdir()), folder


def _bptt_run(tmp_path: Path) -> Path:
    out = tmp_path / "bptt"
    train(debug_config(method="bptt", steps=1), out, show_progress=False)
    return out


def test_labels_then_dmt_switches_to_dmt_on_the_stored_memories(store, tmp_path, capsys):
    """labels+dmt: the labels loss first, DMT against the stored memories in the last dmt.fraction, no teacher."""
    from smtrnn.dmt import dmt_loss_on_labels
    from smtrnn.smt import labels_loss
    from smtrnn.trainer import loss_function

    cfg = labels_config(store, "mlp")
    cfg.train.method = "labels+dmt"
    assert loss_function(cfg, 0.0).func is labels_loss
    assert loss_function(cfg, 1.0 - cfg.dmt.fraction).func is dmt_loss_on_labels
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    assert trainer.model.teacher is None
    trainer.progress = lambda: 0.99  # in the DMT share
    metrics = trainer.train_step()
    assert {"dynamics", "readout"} <= set(metrics) and "decoder" not in metrics


@pytest.mark.parametrize(
    "tamper, words",
    [
        (lambda m: m.update(shards=[5]), "'shards'"),
        (lambda m: m.pop("sequences"), "missing or invalid fields ['sequences']"),
        (lambda m: m.update(seq_len="12"), "'seq_len'"),
        (lambda m: m.update(memory={"tokens": 2, "width": "x"}), "'memory'"),
        (lambda m: m.update(task=["retrieval"]), "'task'"),
        (lambda m: m.update(shard_sequences=0), "'shard_sequences'"),
        (lambda m: m["shards"][0].pop("sha256"), "'shards'"),
    ],
)
def test_a_tampered_manifest_is_one_line_naming_the_field(store, tmp_path, capsys, tamper, words):
    import shutil

    copy = Path(shutil.copytree(store, tmp_path / "store"))
    manifest = json.loads((copy / "manifest.json").read_text())
    tamper(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code = main(
        ["train", "--labels", str(copy), "--steps", "1", "--quiet", "--device", "cpu", "--out", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err, err


def test_token_ids_outside_the_vocabulary_in_a_shard_are_refused_when_opened(store, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    copy = Path(shutil.copytree(store, tmp_path / "store"))
    shard = sorted(copy.glob("*.safetensors"))[0]
    tensors = load_file(str(shard))
    tensors["x"][0, 0] = 10_000
    shard.unlink()
    save_file(tensors, str(shard), metadata={"format": "smtrnn-labels"})
    with pytest.raises(CheckpointError, match="its sha256 is not the manifest's"):
        load_labels(copy)
    agree(copy, shard)  # a manifest made to agree: the ids are checked still
    with pytest.raises(CheckpointError, match="input token ids outside"):
        load_labels(copy)


def agree(store: Path, shard: Path) -> None:
    """Rewrite the store's manifest so its record of `shard` (size, sha256) matches the file as it is now."""
    manifest = json.loads((store / MANIFEST).read_text())
    for entry in manifest["shards"]:
        if entry["file"] == shard.name:
            entry["bytes"], entry["sha256"] = shard.stat().st_size, file_sha256(shard)
    (store / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["nan", "random"])
def test_a_damaged_shard_is_named_when_opened_and_rewritten_on_resume(damage, teachers, store, tmp_path, capsys):
    """Memories of NaN or random bytes, size and header intact: opening the store names the shard (its sha256, or
    with a manifest made to agree, its non-finite memories); `label` again rewrites it, and the store opens."""
    from safetensors.torch import load_file, save_file

    copy = Path(shutil.copytree(store, tmp_path / "store"))
    shard = sorted(copy.glob("*.safetensors"))[1]
    tensors = load_file(str(shard))
    if damage == "nan":
        tensors["m"][0, 0, 0] = float("nan")
    else:  # other memories of the right shape and dtype: the size and the header stay intact
        tensors["m"] = torch.randn(tensors["m"].shape).to(tensors["m"].dtype)
    shard.unlink()
    save_file(tensors, str(shard), metadata={"format": "smtrnn-labels"})
    with pytest.raises(CheckpointError, match=f"{shard.name} is corrupt: its sha256"):
        load_labels(copy)
    if damage == "nan":
        agree(copy, shard)
        with pytest.raises(CheckpointError, match=f"{shard.name} holds memories that are not finite"):
            load_labels(copy)
        code = main(
            ["train", "--labels", str(copy), "--steps", "1", "--quiet", "--device", "cpu", "--out", str(tmp_path / "r")]
        )
        assert code == 2 and shard.name in capsys.readouterr().err and not (tmp_path / "r" / "metrics.jsonl").exists()
        return
    write_labels(teachers["seed0"], copy, 20, batch_size=6, shard_sequences=SHARD)  # resumed: the shard rewritten
    assert torch.equal(load_labels(copy).read(0, 20)[2], load_labels(store).read(0, 20)[2])


def test_labels_are_written_only_into_a_new_empty_or_store_folder(teachers, smt_run, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    run = Path(shutil.copytree(smt_run[0], tmp_path / "run"))
    for out in (busy, run):
        before = sorted(p.name for p in out.rglob("*"))
        code = main(["label", "--teacher", str(teachers["seed0"]), "--out", str(out), "--sequences", "4", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "not a label store" in err and err.count("\n") == 1, err
        assert sorted(p.name for p in out.rglob("*")) == before
