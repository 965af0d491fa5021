"""Passkey retrieval in prose: one key stated once in the first half of real prose and asked for at the end, its
digits labelled and scored on their own; deterministic per seed; bad parameters refused in one line."""

from __future__ import annotations

import json

import pytest
import torch
from reliability_support import _write, one_line, run_cli
from support import debug_config

from smtrnn.data.passkey import QUESTION, STATEMENT, Passkey
from smtrnn.data.tasks import NO_TARGET, TaskError, make_task
from smtrnn.evaluate import evaluate, evaluate_rnn_alone
from smtrnn.model import Model
from smtrnn.presets import make_preset

TRAIN = ["train", "--preset", "debug", "--task", "passkey", "--quiet", "--device", "cpu"]
PROSE = b"It was the best of times, it was the worst of times; it was the age of wisdom. " * 40


@pytest.fixture
def prose(tmp_path):
    return str(_write(tmp_path / "prose.txt", PROSE))


def positions(row: bytes, part: bytes) -> list[int]:
    return [i for i in range(len(row)) if row.startswith(part, i)]


@pytest.mark.parametrize("length", [68, 101, 400])
def test_one_key_is_stated_in_the_first_half_of_real_prose_and_asked_at_the_end(prose, length):
    task = make_task("passkey", path=prose, valid_fraction=0.2)
    x, y = task.sample(16, length, torch.Generator().manual_seed(3))
    question = QUESTION.encode()
    split = bytes(task.prose().tolist())
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        w = bytes(row_x + row_y[-1:])  # the T + 1 bytes the row was cut from
        key = w[-task.digits :]
        statement = STATEMENT.format(key=key.decode()).encode()
        (at,) = positions(w, statement)  # stated exactly once
        assert at + len(statement) <= length // 2  # wholly in the first half
        assert w.endswith(question + key) and key.isdigit()
        prose_part = w[:at] + w[at + len(statement) : -len(question) - task.digits]
        assert prose_part in split  # the prose around the key is one window of the split's own text
    assert torch.equal(x[:, 1:], y[:, :-1])  # every byte is a target: the language model


def test_the_answer_is_the_key_and_key_targets_label_nothing_else(prose):
    every = make_task("passkey", path=prose, digits=3, valid_fraction=0.2)
    keyed = make_task("passkey", path=prose, digits=3, targets="key", valid_fraction=0.2)
    x, y = every.sample(4, 90, torch.Generator().manual_seed(0))
    kx, ky = keyed.sample(4, 90, torch.Generator().manual_seed(0))
    assert torch.equal(x, kx) and torch.equal(y[:, -3:], ky[:, -3:])  # the same draws; only the labels differ
    assert (ky[:, :-3] == NO_TARGET).all() and (y >= 0).all()
    mask = every.answer_mask(x, y)
    assert mask[:, -3:].all() and not mask[:, :-3].any()
    assert keyed.memory_bits() == pytest.approx(3 * 3.321928 + 1, rel=1e-5) and every.memory_bits() is None


def test_a_passkey_batch_is_a_function_of_its_seed_and_the_splits_are_apart(prose):
    task = make_task("passkey", path=prose, valid_fraction=0.2)
    a, b = (task.sample(3, 120, torch.Generator().manual_seed(7)) for _ in range(2))
    other = task.sample(3, 120, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], other[0])
    parts = [task.held_out(split).prose().numel() for split in ("valid", "test")]
    assert task.prose().numel() + sum(parts) == len(PROSE) and min(parts) >= len(PROSE) // 10 - 1


def test_the_recipe_starts_its_curriculum_where_the_task_can_be_posed():
    cfg = make_preset("recipe", "passkey", {"targets": "key"})
    assert cfg.train.curriculum_start == Passkey().min_seq_len() == 68
    assert cfg.memory.size == 32  # 5 digits, 17.6 bits
    assert make_preset("small", "retrieval").train.curriculum_start == 32


def test_evaluation_scores_the_key_on_its_own(prose):
    cfg = debug_config("passkey", "smt")
    cfg.task.params = {"digits": 2, "path": prose, "valid_fraction": 0.2}
    task = make_task("passkey", **cfg.task.params)
    torch.manual_seed(0)
    model = Model.for_run(cfg, task.vocab_size)
    scores = evaluate(model, task, 80, batches=2, batch_size=3)
    streamed = evaluate_rnn_alone(model, task, 80, batches=2, batch_size=3)
    for result in (scores, streamed):
        assert 0.0 <= result["rnn_answer_exact"] <= result["rnn_answer_accuracy"] <= 1.0
    assert streamed["rnn_answer_accuracy"] == scores["rnn_answer_accuracy"]
    assert "teacher_answer_accuracy" in scores


def test_a_passkey_run_trains_and_scores_its_key(tmp_path, prose, capsys):
    out = tmp_path / "run"
    code, printed, _ = run_cli(capsys, *TRAIN, "--data", prose, "--steps", 2, "--out", out, "--seq-len", 64)
    assert code == 0 and '"rnn_answer_accuracy"' in printed
    code, printed, _ = run_cli(capsys, "eval", out, "--seq-len", 300, "--json", "--no-diagnostics", "--device", "cpu")
    assert code == 0 and {"rnn_answer_accuracy", "rnn_answer_exact"} <= set(json.loads(printed)["lengths"]["300"])
    code, printed, _ = run_cli(capsys, "sample", out, "--text", "The pass key is ", "--length", 5, "--device", "cpu")
    assert code == 0 and printed.startswith("The pass key is ")  # a byte-level run: prompts are text


def test_a_placed_statement_sits_at_its_byte_and_draws_the_same_keys_and_prose(prose):
    free = make_task("passkey", path=prose, valid_fraction=0.2)
    placed = make_task("passkey", path=prose, valid_fraction=0.2, statement_at=70)
    x, y = placed.sample(5, 160, torch.Generator().manual_seed(4))
    fx, fy = free.sample(5, 160, torch.Generator().manual_seed(4))
    assert torch.equal(y[:, -5:], fy[:, -5:])  # the same keys: only the statement moved
    for row_x, row_y, free_x in zip(x.tolist(), y.tolist(), fx.tolist()):
        w = bytes(row_x + row_y[-1:])
        statement = STATEMENT.format(key=w[-5:].decode()).encode()
        assert positions(w, statement) == [70]  # past the first half, where training never puts it
        free_w = bytes(free_x)
        (at,) = positions(free_w, statement)
        assert free_w[:at] + free_w[at + len(statement) :] == w[:70] + w[70 + len(statement) : -1]  # the same prose
    latest = placed.prose_len(160)
    assert make_task("passkey", path=prose, valid_fraction=0.2, statement_at=latest).sample(1, 160, torch.Generator())
    with pytest.raises(TaskError, match=rf"statement_at {latest + 1} leaves no room .* \(at most {latest}\)"):
        make_task("passkey", path=prose, valid_fraction=0.2, statement_at=latest + 1).sample(1, 160, torch.Generator())


def test_eval_scores_the_key_written_after_more_prose(tmp_path, prose, capsys):
    out = tmp_path / "run"
    code, _, _ = run_cli(capsys, *TRAIN, "--data", prose, "--steps", 2, "--out", out, "--seq-len", 64)
    assert code == 0
    flags = ["--json", "--no-diagnostics", "--device", "cpu", "--batches", 1]
    code, printed, _ = run_cli(capsys, "eval", out, "--key-at", "0,100", "--seq-len", "70,300", *flags)
    placed = json.loads(printed)["key_at"]
    assert code == 0 and set(placed) == {"0", "100"} and set(placed["0"]) == {"70", "300"}
    assert placed["100"]["70"] is None and placed["100"]["300"]  # 70 bytes have no room for a statement at 100
    assert set(placed["100"]["300"]) >= {"rnn_answer_accuracy", "rnn_answer_exact"}
    code, printed, _ = run_cli(capsys, "eval", out, "--key-at", "100", "--key-lengths", "300", *flags)
    result = json.loads(printed)  # --key-lengths: the key asked there, the plain lengths left unscored
    assert code == 0 and set(result["key_at"]["100"]) == {"300"} and "lengths" not in result
    assert result["key_at"]["100"]["300"] == placed["100"]["300"]
    code, _, err = run_cli(capsys, "eval", out, "--key-lengths", "300", *flags)
    assert code == 2 and "give --key-at" in one_line(err)
    code, _, err = run_cli(capsys, "eval", out, "--key-at", "100", *flags)  # at the run's 64: no room
    assert code == 2 and "statement_at 100 leaves no room" in one_line(err)
    code, _, err = run_cli(capsys, "eval", out, "--key-at", "-1", *flags)
    assert code == 2 and "--key-at must be byte positions (>= 0)" in one_line(err)


def test_only_a_passkey_run_places_a_statement(tmp_path, capsys):
    out = tmp_path / "run"
    train = ["train", "--preset", "debug", "--task", "retrieval", "--quiet", "--device", "cpu", "--steps", 1]
    assert run_cli(capsys, *train, "--method", "bptt", "--out", out)[0] == 0
    code, _, err = run_cli(capsys, "eval", out, "--key-at", "3", "--json", "--device", "cpu")
    assert code == 2 and "task 'retrieval' has none" in one_line(err)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"digits": 0}, "digits must be >= 1"),
        ({"targets": "bytes"}, "targets must be one of all, key"),
        ({"path": "tokens.npy"}, "not a token file"),
        ({"statement_at": -1}, "statement_at must be a byte position >= 0"),
    ],
)
def test_bad_passkey_parameters_are_refused(params, words):
    with pytest.raises(TaskError, match=words):
        make_task("passkey", **params)


def test_a_prose_source_shorter_than_the_sequence_is_refused_in_one_line(tmp_path, prose, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *TRAIN, "--data", prose, "--seq-len", 5000, "--out", out)
    assert code == 2 and "seq_len 5000" in one_line(err) and not out.exists()
    code, _, err = run_cli(capsys, *TRAIN, "--set", 'task.params={"digits": 0}', "--out", out)
    assert code == 2 and "digits must be >= 1" in one_line(err) and not out.exists()


def test_lured_rows_are_those_with_a_digit_in_the_prose_before_the_statement(tmp_path):
    text = (b"In 1859 it was the best of times. " + b"It was the worst of times and the age of wisdom. " * 3) * 30
    task = make_task("passkey", path=str(_write(tmp_path / "digits.txt", text)), valid_fraction=0.2, digits=1)
    x, y = task.sample(64, 200, torch.Generator().manual_seed(5))
    lured = task.lured_rows(x, y)
    for row_x, row_y, is_lured in zip(x.tolist(), y.tolist(), lured.tolist()):
        w = bytes(row_x + row_y[-1:])
        (at,) = positions(w, STATEMENT.format(key=w[-1:].decode()).encode())
        assert is_lured == any(chr(b).isdigit() for b in w[:at])  # the statement's and the question's digits not
    assert 0 < lured.sum() < len(lured)  # both kinds drawn
    cfg = debug_config("passkey", "smt")
    torch.manual_seed(0)
    model = Model.for_run(cfg, task.vocab_size)
    result = evaluate_rnn_alone(model, task, 200, batches=2, batch_size=8)
    exact, share = result["rnn_answer_exact"], result["lured_rows"]
    apart = share * result["rnn_answer_exact_lured"] + (1 - share) * result["rnn_answer_exact_unlured"]
    assert 0 < share < 1 and apart == pytest.approx(exact)  # the two parts make up the whole
    assert "lured_rows" not in evaluate_rnn_alone(model, make_task("retrieval"), 40, batches=1, batch_size=4)
