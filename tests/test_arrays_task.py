"""The `arrays` task: a researcher's own labelled sequences from an .npz file or a folder of .npy files."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_support import one_line, run_cli

from smtrnn.data.arrays import Arrays, forget_loaded_arrays
from smtrnn.data.tasks import TaskError, make_task


@pytest.fixture(autouse=True)
def fresh():
    """Every test reads its files as written (loaded sources are cached per process)."""
    forget_loaded_arrays()
    yield
    forget_loaded_arrays()


def recall_arrays(count: int, length: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of 4 symbols; the only target is at the last position: the first input (a sparse, learnable task)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, size=(count, length), dtype=np.int64)
    y = np.full_like(x, -1)
    y[:, -1] = x[:, 0]
    return x, y


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


TRAIN = ["train", "--preset", "debug", "--task", "arrays", "--quiet", "--device", "cpu", "--seq-len", 12]


@pytest.mark.parametrize("method", ["smt+dmt", "bptt"])
def test_a_small_file_trains_evaluates_and_samples(method, tmp_path, capsys):
    x, y = recall_arrays(64)
    data = write_npz(tmp_path / "mine.npz", x=x, y=y)
    out = tmp_path / "run"
    argv = [*TRAIN, "--data", data, "--method", method, "--steps", 6, "--set", "train.curriculum_start=12"]
    code, _, err = run_cli(capsys, *argv, "--out", out)
    assert code == 0, err
    code, printed, err = run_cli(capsys, "eval", out, "--json", "--batches", 1, "--device", "cpu")
    assert code == 0, err
    result = json.loads(printed)
    assert result["labelled_tokens"] == 16  # one labelled position per sequence, batch 16, one batch
    assert result["held_out_documents"]["tokens"] == 4  # the 4 validation rows, one target each
    code, printed, err = run_cli(capsys, "sample", out, "--prompt", "1,2,3", "--length", 4, "--device", "cpu")
    assert code == 0, err
    assert len(printed.split()) == 4  # the 4 sampled tokens


def test_accuracy_counts_only_labelled_positions(tmp_path):
    """Every target is 0, at the last position only. A readout that always says 0 is exact, one that always says 1
    scores 0: the unlabelled positions (-1) count neither way."""
    from smtrnn.evaluate import evaluate
    from smtrnn.model import Model
    from smtrnn.presets import debug

    x, y = recall_arrays(40)
    y[:, -1] = 0
    path = str(write_npz(tmp_path / "d.npz", x=x, y=y))
    task = make_task("arrays", path=path)
    cfg = debug("retrieval")
    cfg.task.name, cfg.task.params, cfg.task.seq_len, cfg.train.method = "arrays", {"path": path}, 12, "bptt"
    model = Model.for_run(cfg, task.vocab_size)

    class Always(torch.nn.Module):
        def __init__(self, token: int):
            super().__init__()
            self.token = token

        def forward(self, m):
            return torch.nn.functional.one_hot(torch.full(m.shape[:-1], self.token), task.vocab_size).float()

    for token, accuracy in ((0, 1.0), (1, 0.0)):
        model.rnn.readout_net = Always(token)
        result = evaluate(model, task, 12, batches=2, batch_size=8)
        assert result["labelled_tokens"] == 16  # 2 batches of 8 sequences, one labelled position each
        assert result["rnn_accuracy"] == accuracy


def test_given_validation_arrays_are_the_validation_and_test_splits(tmp_path):
    x, y = recall_arrays(20)
    xv, yv = recall_arrays(6, seed=1)
    task = make_task("arrays", path=str(write_npz(tmp_path / "d.npz", x=x, y=y, x_valid=xv, y_valid=yv)))
    assert [pair[0].tolist() for pair in task.documents_xy()] == x.tolist()  # every training row, none held out
    assert [pair[0].tolist() for pair in task.held_out("valid").documents_xy()] == xv[:3].tolist()
    assert [pair[0].tolist() for pair in task.held_out("test").documents_xy()] == xv[3:].tolist()
    xt, yt = recall_arrays(2, seed=2)
    forget_loaded_arrays()
    write_npz(tmp_path / "d.npz", x=x, y=y, x_valid=xv, y_valid=yv, x_test=xt, y_test=yt)
    assert [pair[0].tolist() for pair in task.held_out("valid").documents_xy()] == xv.tolist()
    assert [pair[0].tolist() for pair in task.held_out("test").documents_xy()] == xt.tolist()


def test_without_validation_arrays_the_last_rows_are_held_out_and_halved(tmp_path):
    x, y = recall_arrays(20)
    task = make_task("arrays", path=str(write_npz(tmp_path / "d.npz", x=x, y=y)), valid_fraction=0.2)
    assert len(task.documents_xy()) == 16
    assert [p[0].tolist() for p in task.held_out("valid").documents_xy()] == x[16:18].tolist()
    assert [p[0].tolist() for p in task.held_out("test").documents_xy()] == x[18:].tolist()


def test_a_folder_of_npy_files_is_memory_mapped_and_samples_prefixes(tmp_path):
    x, y = recall_arrays(10)
    folder = tmp_path / "set"
    folder.mkdir()
    np.save(folder / "x.npy", x.astype(np.uint8))
    np.save(folder / "y.npy", y.astype(np.int16))
    task = make_task("arrays", path=str(folder), vocab=6)
    assert task.vocab_size == 6 and task.max_seq_len() == 12
    assert isinstance(task.data().x, np.memmap)
    xs, ys = task.sample(5, 7, torch.Generator().manual_seed(0))
    assert xs.shape == ys.shape == (5, 7) and xs.dtype == torch.long
    rows = {tuple(row) for row in x[:9, :7].tolist()}  # the training rows' first 7 positions
    assert all(tuple(row) in rows for row in xs.tolist())


def test_the_vocabulary_is_the_largest_id_plus_one_unless_declared(tmp_path):
    x, y = recall_arrays(10)
    y[0, -1] = 9
    path = str(write_npz(tmp_path / "d.npz", x=x, y=y))
    assert make_task("arrays", path=path).vocab_size == 10
    assert make_task("arrays", path=path, vocab=32).vocab_size == 32


class _Payload:
    """Unpickling this creates the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"
    disguised = tmp_path / "d.npz"
    disguised.write_bytes(pickle.dumps({"x": _Payload(marker)}))
    with pytest.raises(TaskError, match="not a readable .npz"):
        make_task("arrays", path=str(disguised)).vocab_size
    objects = tmp_path / "o.npz"
    np.savez(objects, x=np.array([[_Payload(marker)] * 2], dtype=object), y=np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(TaskError, match="not a readable .npz"):
        make_task("arrays", path=str(objects)).vocab_size
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.npy").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(TaskError, match="no NumPy header"):
        make_task("arrays", path=str(folder)).vocab_size
    assert not marker.exists()


def bad_sources(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    x, y = recall_arrays(8)
    out_of_vocab, negative = y.copy(), x.copy()
    out_of_vocab[0, -1], negative[1, 3] = 40, -2
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    early = y.copy()
    early[:, -1], early[:, 2] = -1, 1  # the last label sits at t = 2
    return {
        "shapes": (write_npz(tmp_path / "shapes.npz", x=x, y=y[:, :-1]), "must match"),
        "vocab": (write_npz(tmp_path / "vocab.npz", x=x, y=out_of_vocab), "outside the declared vocab 8"),
        "negative": (write_npz(tmp_path / "negative.npz", x=negative, y=y), "negative input -2"),
        "float": (write_npz(tmp_path / "float.npz", x=x.astype(np.float32), y=y), "must be integer arrays"),
        "empty": (empty, "not a readable .npz"),
        "pickle": (tmp_path / "pickle.npz", "not a readable .npz"),
        "missing y": (write_npz(tmp_path / "no_y.npz", x=x), "no array 'y'"),
        "no targets": (write_npz(tmp_path / "none.npz", x=x, y=np.full_like(y, -1)), "y has no target"),
        "short": (write_npz(tmp_path / "short.npz", x=x, y=y), "has targets up to t = 11"),
    }


@pytest.mark.parametrize(
    "case", ["shapes", "vocab", "negative", "float", "empty", "pickle", "missing y", "no targets", "short"]
)
def test_bad_arrays_end_in_one_line_naming_the_file(case, tmp_path, capsys):
    sources = bad_sources(tmp_path)
    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"x": [1, 2]}))
    path, message = sources[case]
    out = tmp_path / "run"
    length = 8 if case == "short" else 12
    argv = [*TRAIN[:-2], "--seq-len", length, "--data", path, "--set", 'task.params={"vocab": 8}']
    code, _, err = run_cli(capsys, *argv, "--method", "bptt", "--steps", 2, "--out", out)
    line = one_line(err)
    assert code == 2 and line.startswith("smtrnn: error: ") and message in line, line
    assert str(path) in line
    assert not out.exists()


def test_the_task_needs_a_path():
    with pytest.raises(TaskError, match="--data"):
        Arrays()


@pytest.mark.slow
def test_compare_ranks_array_runs_by_accuracy_and_export_writes_the_rnn(tmp_path, capsys):
    x, y = recall_arrays(48)
    data = write_npz(tmp_path / "mine.npz", x=x, y=y)
    out = tmp_path / "study"
    argv = ["compare", "--task", "arrays", "--data", data, "--lengths", 12, "--methods", "smt,bptt", "--seeds", 1]
    argv += ["--steps", 4, "--preset", "debug", "--set", "train.curriculum_start=12", "--eval-batches", 1]
    code, _, err = run_cli(capsys, *argv, "--out", out, "--device", "cpu")
    assert code == 0, err
    report = json.loads((out / "results.json").read_text())
    assert report["score"] == "rnn_accuracy"
    runs = sorted(out.glob("runs/*"))
    assert len(runs) == 2
    exported = tmp_path / "rnn.pt"
    code, _, err = run_cli(capsys, "export", runs[0], "--format", "torchscript", "--out", exported)
    assert code == 0, err
    step = torch.jit.load(str(exported))
    state, logits = step(step.initial_state, torch.tensor([1]))
    assert logits.shape == (1, 4)


def needle_rows(count: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A needle asked for at the end, marker and query one token (8): the symbol after the first 8 is the target."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 8, size=(count, length))
    at = rng.integers(0, length // 2, size=count)
    x[np.arange(count), at], x[:, -1] = 8, 8
    y = np.full_like(x, -1)
    y[:, -1] = x[np.arange(count), at + 1]
    return x, y


def test_the_curriculum_keeps_every_label_of_a_labelled_tail_and_cuts_the_middle(tmp_path):
    x, y = needle_rows(40, 64)
    y[:, -3] = 1  # a second label near the end: the labelled tail is positions 61..63
    task = make_task("arrays", path=str(write_npz(tmp_path / "n.npz", x=x, y=y)))
    train_rows = {tuple(row): i for i, row in enumerate(x[:36].tolist())}
    for length in (22, 32, 48, 63):  # the curriculum's lengths, each shorter than the last label (t = 63)
        xs, ys = task.sample(16, length, torch.Generator().manual_seed(length))
        tail = 3 + 8  # the labelled positions and the 8 of context before them
        for row_x, row_y in zip(xs.tolist(), ys.tolist()):
            i = next(i for key, i in train_rows.items() if list(key[: length - tail]) == row_x[: length - tail])
            assert row_x == x[i, : length - tail].tolist() + x[i, -tail:].tolist()
            assert row_y[-tail:] == y[i, -tail:].tolist()  # every label of the row, at the end, in order
            assert sum(t >= 0 for t in row_y) == 2
    xs, ys = task.sample(4, 64, torch.Generator().manual_seed(0))  # the run's own length: whole rows
    assert all(tuple(row) in train_rows for row in xs.tolist())


def test_labels_spread_over_the_rows_are_cropped_to_a_prefix(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 8, size=(20, 64))
    y = np.roll(x, -1, axis=1)
    y[:, -1] = -1  # next-token targets everywhere: no labelled tail to keep
    task = make_task("arrays", path=str(write_npz(tmp_path / "d.npz", x=x, y=y)))
    xs, ys = task.sample(8, 12, torch.Generator().manual_seed(0))
    prefixes = {tuple(row) for row in np.concatenate([x[:18, :12], y[:18, :12]], axis=1).tolist()}
    assert all(tuple(a + b) in prefixes for a, b in zip(xs.tolist(), ys.tolist()))
    assert task.memory_bits() is None  # 63 labels of 8 values: more than the default memory holds


def test_the_memory_size_comes_from_the_labels(tmp_path):
    x, y = needle_rows(40, 64)
    data = str(write_npz(tmp_path / "n.npz", x=x, y=y))
    assert make_task("arrays", path=data).memory_bits() == pytest.approx(3.0)  # one label of 8 values
    from smtrnn.presets import make_preset

    cfg = make_preset("recipe", "arrays", {"path": data})
    assert (cfg.memory.tokens, cfg.memory.width) == (1, 16)  # as the built-in retrieval's
    y[:, -2] = np.arange(40) % 8  # a second label of the same 8 values per row: 6 bits
    data = str(write_npz(tmp_path / "two.npz", x=x, y=y))
    forget_loaded_arrays()
    assert make_task("arrays", path=data).memory_bits() == pytest.approx(6.0)


def run_whose_data_moved(tmp_path, capsys) -> tuple[Path, Path]:
    """A 2-step run trained on tmp_path/mine.npz, which is then moved to moved.npz -> (the old path, the run)."""
    x, y = recall_arrays(32)
    data = write_npz(tmp_path / "mine.npz", x=x, y=y)
    out = tmp_path / "run"
    argv = [*TRAIN, "--data", data, "--steps", 2, "--set", "train.curriculum_start=12", "--out", out]
    assert run_cli(capsys, *argv)[0] == 0
    data.rename(tmp_path / "moved.npz")
    forget_loaded_arrays()
    return data, out


def test_a_run_whose_data_moved_exports_and_samples_without_it(tmp_path, capsys):
    data, out = run_whose_data_moved(tmp_path, capsys)
    code, _, err = run_cli(capsys, "export", out, "--format", "torchscript", "--out", tmp_path / "step.pt")
    assert code == 0, err
    code, printed, err = run_cli(capsys, "sample", out, "--prompt", "1,2", "--length", 3, "--device", "cpu")
    assert code == 0 and len(printed.split()) == 3, err
    code, _, err = run_cli(capsys, "eval", out, "--device", "cpu")  # scoring needs the data: one line
    assert code == 2 and "mine.npz" in one_line(err)


def test_reading_a_runs_config_opens_no_data_and_opening_it_checks_the_data(tmp_path, capsys):
    """read_config parses the checkpoint's config and nothing it names (the data may be gone); open_run_data refuses
    the run's data changed in place, and takes the same contents moved (`data`)."""
    from smtrnn.checkpoint import open_run_data, read_config
    from smtrnn.errors import SmtrnnError

    data, out = run_whose_data_moved(tmp_path, capsys)
    cfg, meta = read_config(out)  # the data is gone: reading the config does not notice
    assert cfg.task.params["path"] == str(data) and meta["vocab_size"] >= 4
    assert open_run_data(out, cfg, meta, str(tmp_path / "moved.npz")).task.params["path"] == str(tmp_path / "moved.npz")
    other_x, other_y = recall_arrays(32, seed=1)
    write_npz(data, x=other_x, y=other_y)  # other contents at the recorded path
    forget_loaded_arrays()
    with pytest.raises(SmtrnnError, match="mine.npz"):
        open_run_data(out, *read_config(out))


def test_a_run_reads_its_own_data_from_anywhere_and_refuses_other_data(tmp_path, capsys, monkeypatch):
    """The run stores its data's absolute path and fingerprint: from another directory holding a file of the same
    name it scores its own file; changed or moved data is refused in one line unless --data points at the same
    contents."""
    first, elsewhere = tmp_path / "a", tmp_path / "b"
    (first / "data").mkdir(parents=True)
    (elsewhere / "data").mkdir(parents=True)
    x, y = recall_arrays(64)
    write_npz(first / "data" / "good.npz", x=x, y=y)
    other_x, other_y = recall_arrays(64, seed=1)
    write_npz(elsewhere / "data" / "good.npz", x=other_x, y=other_y)
    out = tmp_path / "run"
    monkeypatch.chdir(first)
    argv = [*TRAIN, "--data", "data/good.npz", "--steps", 3, "--set", "train.curriculum_start=12", "--out", out]
    assert run_cli(capsys, *argv)[0] == 0
    score = ["eval", out, "--json", "--batches", 1, "--no-diagnostics", "--device", "cpu"]
    code, printed, err = run_cli(capsys, *score)
    assert code == 0, err
    here = json.loads(printed)["rnn_accuracy"]
    monkeypatch.chdir(elsewhere)
    forget_loaded_arrays()
    code, printed, err = run_cli(capsys, *score)
    assert code == 0 and json.loads(printed)["rnn_accuracy"] == here, err
    (first / "data" / "good.npz").rename(tmp_path / "moved.npz")
    forget_loaded_arrays()
    code, _, err = run_cli(capsys, *score)
    assert code == 2 and "is not there" in one_line(err) and "--data" in one_line(err)
    code, printed, err = run_cli(capsys, *score, "--data", tmp_path / "moved.npz")
    assert code == 0 and json.loads(printed)["rnn_accuracy"] == here, err
    code, _, err = run_cli(capsys, *score, "--data", "data/good.npz")  # the other file of that name
    line = one_line(err)
    assert code == 2 and "is not the data this run trained on" in line and str(first) in line, line


def unbounded_sources(tmp_path: Path) -> dict[str, tuple[Path, list[str], str | None]]:
    """(source, words of the one line, task.params) for input that would have used unbounded memory or crashed."""
    x, y = recall_arrays(8)
    huge_id = x.copy()
    huge_id[0, 0] = 2**26
    widest = x.astype(np.uint64)
    widest[0, 0] = 2**64 - 1
    not_npy = tmp_path / "not_npy.npz"
    with zipfile.ZipFile(not_npy, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY nothing")
        archive.writestr("readme.txt", b"hello")
    return {
        "an id of 2**26": (write_npz(tmp_path / "huge.npz", x=huge_id, y=y), ["the id 67108864", "2**20"], None),
        "uint64 2**64-1": (write_npz(tmp_path / "widest.npz", x=widest, y=y), ["the id 18446744073709551615"], None),
        "a member not .npy": (not_npy, ["'readme.txt' is not a .npy array"], None),
        "valid_fraction a string": (
            write_npz(tmp_path / "ok.npz", x=x, y=y),
            ["valid_fraction must be a number"],
            '{"valid_fraction": "x"}',
        ),
        "vocab past 2**20": (
            write_npz(tmp_path / "ok2.npz", x=x, y=y),
            ["vocab must be an integer in"],
            '{"vocab": 2000000000}',
        ),
    }


@pytest.mark.parametrize(
    "case", ["an id of 2**26", "uint64 2**64-1", "a member not .npy", "valid_fraction a string", "vocab past 2**20"]
)
def test_input_that_would_not_fit_or_crash_is_one_line(case, tmp_path, capsys):
    path, words, params = unbounded_sources(tmp_path)[case]
    out = tmp_path / "run"
    argv = [*TRAIN[:-2], "--seq-len", 12, "--data", path, *(["--set", f"task.params={params}"] if params else [])]
    for extra in (["--out", out], ["--print-config"]):
        code, _, err = run_cli(capsys, *argv, "--steps", 2, *extra)
        line = one_line(err)
        assert code == 2 and all(word in line for word in words), line
    assert not out.exists()


def test_an_npz_that_expands_past_the_free_memory_is_refused_unread(tmp_path, capsys, monkeypatch):
    x, y = recall_arrays(64)
    path = write_npz(tmp_path / "bomb.npz", x=x, y=y)
    monkeypatch.setattr("smtrnn.data.arrays.available_memory", lambda device: 1000)
    monkeypatch.setattr("numpy.load", lambda *a, **k: pytest.fail("the archive was decompressed"))
    code, _, err = run_cli(capsys, *TRAIN[:-2], "--seq-len", 12, "--data", path, "--print-config")
    line = one_line(err)
    assert code == 2 and "expand to" in line and "a folder of .npy files" in line, line


def test_an_id_out_of_range_in_a_large_folder_is_refused_at_the_first_block(tmp_path, monkeypatch):
    """A memory-mapped x whose first rows hold an id past 2**20 is refused without reading the rest."""
    folder = tmp_path / "big"
    folder.mkdir()
    x, y = recall_arrays(3 * 4096)
    x[0, 0] = 2**21
    np.save(folder / "x.npy", x.astype(np.int32))
    np.save(folder / "y.npy", y.astype(np.int8))
    read = []
    real = np.asarray
    monkeypatch.setattr("smtrnn.data.arrays.np.asarray", lambda a, *k, **kw: read.append(len(a)) or real(a, *k, **kw))
    with pytest.raises(TaskError, match="the id 2097152"):
        make_task("arrays", path=str(folder)).vocab_size
    assert read == [4096]  # one block of rows of x, no more
