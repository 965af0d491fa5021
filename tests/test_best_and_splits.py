"""Fair numbers on real data: data tasks split into train, validation and test; `train.keep_best` reports the
checkpoint with the best validation bits (kept through pruning), and training never reads the test split."""

from __future__ import annotations

import json

import pytest
import torch
from reliability_support import one_line, run_cli
from support import debug_config

from smtrnn.best import BEST_FILE, best_checkpoint, read_best
from smtrnn.checkpoint import CHECKPOINTS_DIR, load_model
from smtrnn.data.images import Images, split_held_out_images, split_images
from smtrnn.data.real import Text
from smtrnn.data.tasks import TaskError, make_task
from smtrnn.data.text import Corpus, english_corpus, split_corpus, split_held_out
from smtrnn.evaluate import TEST_SEED, evaluate, evaluate_documents
from smtrnn.trainer import Trainer


def _corpus(count: int) -> Corpus:
    return Corpus(
        [torch.full((5 + i,), i, dtype=torch.uint8) for i in range(count)], [f"doc{i}.txt" for i in range(count)], 256
    )


def test_the_held_out_documents_halve_into_validation_and_test_and_training_keeps_the_rest():
    corpus = _corpus(200)
    train, held = split_corpus(corpus, 0.1)
    valid, test = split_held_out(held)
    assert sorted(valid.names + test.names) == sorted(held.names) and not set(valid.names) & set(test.names)
    assert len(valid.names) - len(test.names) in (0, 1) and not set(train.names) & set(held.names)
    one = Corpus([torch.arange(9, dtype=torch.uint8)], ["only"], 256)  # a single held-out document is cut in halves
    valid, test = split_held_out(one)
    assert valid.documents[0].tolist() == [0, 1, 2, 3, 4] and test.documents[0].tolist() == [5, 6, 7, 8]
    assert split_held_out(Corpus([torch.zeros(1, dtype=torch.uint8)], ["tiny"], 256))[1] is None


def test_the_held_out_images_halve_and_a_single_one_gives_no_test_split():
    images = Images(torch.arange(20, dtype=torch.uint8).view(20, 1, 1), 256, "counting")
    _, held = split_images(images, 0.25)
    valid, test = split_held_out_images(held)
    assert valid.pixels.flatten().tolist() == [15, 16, 17] and test.pixels.flatten().tolist() == [18, 19]
    assert split_held_out_images(Images(torch.zeros(1, 1, 1, dtype=torch.uint8), 256, "one"))[1] is None


def test_a_data_task_gives_three_disjoint_splits_and_refuses_a_test_split_it_cannot_have(tmp_path):
    task = make_task("text", max_bytes=100_000)
    splits = {name: task if name == "train" else task.held_out(name) for name in ("train", "valid", "test")}
    prints = {name: split.fingerprint()["sha256"] for name, split in splits.items()}
    assert len(set(prints.values())) == 3
    with pytest.raises(TaskError, match="valid or test"):
        task.held_out("train")
    (tmp_path / "one.txt").write_text("x" * 10)  # one document: 1 byte held out, too little to halve
    small = Text(path=str(tmp_path / "one.txt"))
    assert small.held_out("valid").documents()
    with pytest.raises(TaskError, match="too small to give a test split"):
        small.held_out("test").documents()


def test_the_english_corpus_splits_by_whole_topics():
    valid, test = split_held_out(split_corpus(english_corpus(), 0.2)[1])
    assert valid.names and test.names and not set(valid.names) & set(test.names)
    for split, held in (("valid", valid), ("test", test)):
        documents = Text(path="builtin:english", valid_fraction=0.2, split=split).documents()
        assert [bytes(d.tolist()) for d in documents] == [bytes(d.tolist()) for d in held.documents]
    x, y = make_task("text", path="builtin:english").sample(2, 64, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (2, 64) and torch.equal(x[:, 1:], y[:, :-1])


def test_the_test_split_scores_other_data_than_validation(smt_run):
    _, trainer = smt_run
    task, model = trainer.task, trainer.model  # retrieval: a synthetic task, the test stream has its own seed
    assert evaluate(model, task, 12, 1, 8, split="test") == evaluate(model, task, 12, 1, 8, seed=TEST_SEED)
    text = make_task("text", max_bytes=100_000)
    cfg = debug_config("text", "bptt", steps=1)
    text_model = Trainer(cfg, "/nonexistent-never-written", show_progress=False).model
    counted = {
        split: evaluate_documents(text_model, text, cfg.task.seq_len, 8, split=split)["tokens"]
        for split in ("valid", "test")
    }
    expected = {
        split: sum(d.numel() - 1 for d in text.held_out(split).documents() if d.numel() >= 2)
        for split in ("valid", "test")
    }
    assert counted == expected and counted["valid"] != counted["test"]


def test_keep_best_reports_the_best_validation_checkpoint_keeps_it_and_never_reads_the_test_split(
    tmp_path, monkeypatch
):
    asked = []
    original = Text.held_out
    monkeypatch.setattr(Text, "held_out", lambda self, split="valid": (asked.append(split), original(self, split))[1])
    cfg = debug_config(
        "text",
        "bptt",
        steps=30,
        train__eval_every=5,
        train__keep_best=True,
        train__save_every=5,
        train__keep_checkpoints=1,
        optim__lr=0.3,
    )  # a rate high enough that the bits go up and down
    result = Trainer(cfg, tmp_path / "run", show_progress=False).run()
    assert "test" not in asked and "valid" in asked
    record = read_best(tmp_path / "run")
    evaluations = [
        r
        for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
        if "eval" in r and "best" not in r
    ]
    assert record[("rnn_bits_per_token")] == min(r["eval"]["rnn_bits_per_token"] for r in evaluations)
    assert result["best_step"] == record["step"] and result["rnn_bits_per_token"] == pytest.approx(
        record["rnn_bits_per_token"], rel=1e-6
    )
    folder = best_checkpoint(tmp_path / "run")
    assert folder.parent.name == CHECKPOINTS_DIR and folder.is_dir()  # kept, though keep_checkpoints is 1
    _, best_model = load_model(folder)
    again = evaluate(
        best_model, make_task("text", **cfg.task.params), cfg.task.seq_len, cfg.train.eval_batches, cfg.optim.batch_size
    )
    assert again["rnn_bits_per_token"] == pytest.approx(record["rnn_bits_per_token"], rel=1e-6)


def test_eval_scores_the_best_checkpoint_on_the_split_asked(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "train",
        "--preset",
        "debug",
        "--task",
        "text",
        "--method",
        "bptt",
        "--steps",
        20,
        "--quiet",
        "--device",
        "cpu",
        "--set",
        "train.eval_every=5",
        "--set",
        "train.keep_best=true",
        "--out",
        run,
    ]
    assert run_cli(capsys, *argv)[0] == 0
    best = read_best(run)
    for flags, checkpoint in (([], f"best ({best['checkpoint']})"), (["--last"], "last")):
        code, out, err = run_cli(capsys, "eval", run, "--json", "--split", "test", "--device", "cpu", *flags)
        result = json.loads(out)
        assert code == 0 and result["split"] == "test" and result["checkpoint"] == checkpoint, err
    assert (run / BEST_FILE).is_file()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (
            ["--task", "retrieval", "--set", "train.eval_every=5", "--set", "train.keep_best=true"],
            "task 'retrieval' has no validation split",
        ),
    ],
)
def test_keep_best_where_it_cannot_choose_is_one_line(argv, fragment, tmp_path, capsys):
    code, _, err = run_cli(
        capsys,
        "train",
        "--preset",
        "debug",
        "--steps",
        2,
        "--quiet",
        "--device",
        "cpu",
        *argv,
        "--out",
        tmp_path / "out",
    )
    assert code == 2 and fragment in one_line(err) and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, cadence",
    [
        (["--steps", "40"], {"eval_every": 4, "eval_every_seconds": 0.0}),
        (["--budget", "300"], {"eval_every": 0, "eval_every_seconds": 30.0}),
        (["--steps", "40", "--set", "train.eval_every=7"], {"eval_every": 7, "eval_every_seconds": 0.0}),
    ],
)
def test_keep_best_alone_gets_ten_evaluations_to_choose_among(argv, cadence, capsys):
    """A user asking for the best checkpoint gets it: without a cadence, one evaluation per tenth of the run."""
    argv = ["train", "--preset", "debug", "--task", "text", "--set", "train.keep_best=true", *argv, "--print-config"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    train = json.loads(out)["train"]
    assert {key: train[key] for key in cadence} == cadence
