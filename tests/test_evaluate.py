"""Evaluation and its diagnostics, each checked against a case whose answer is known by hand: the keys of the
report, bits per token, drift (and where each position's drift is reported), effective rank and uniformity."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from support import debug_config, state_dicts_equal

from smtrnn.data.tasks import make_task
from smtrnn.evaluate import (
    _Score,
    drift_buckets,
    effective_rank,
    evaluate,
    evaluate_lengths,
    evaluate_rnn_alone,
    evaluation_bytes,
    rnn_alone_bytes,
)
from smtrnn.free_memory import available_memory
from smtrnn.losses import uniformity
from smtrnn.model import Model

evaluate_module = importlib.import_module("smtrnn.evaluate")  # the package exports a function of that name
RNN_KEYS = {"rnn_accuracy", "rnn_bits_per_token", "labelled_tokens", "rnn_effective_rank"}
TEACHER_KEYS = {
    "teacher_accuracy",
    "teacher_bits_per_token",
    "readout_on_teacher_accuracy",
    "onestep_accuracy",
    "readout_on_teacher_bits_per_token",
    "onestep_bits_per_token",
    "drift",
    "drift_final",
    "drift_labelled",
    "drift_relative",
    "memory_effective_rank",
    "memory_uniformity",
}


def build(method: str = "smt", task: str = "delayed_recall"):
    cfg = debug_config(task, method)
    task_ = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(0)
    return Model.for_run(cfg, task_.vocab_size), task_, cfg.task.seq_len


def run_evaluate(model, task, seq_len, batches=2, batch_size=4) -> dict:
    return evaluate(model, task, seq_len, batches, batch_size)


# --- the report ---------------------------------------------------------------------------------------------


def test_smt_report_keys():
    result = run_evaluate(*build("smt"))
    assert set(result) == RNN_KEYS | TEACHER_KEYS
    assert set(result["drift"]) == {"0", "1", "2-3", "4-7", "8-11"}  # T = 12


def test_the_bits_of_each_stage_use_the_rnns_readout_on_its_own_memories():
    model, task, seq_len = build("smt")
    model.rnn.readout = lambda m: torch.zeros(*m.shape[:-1], task.vocab_size)  # uniform: log2 V whatever it reads
    result = run_evaluate(model, task, seq_len)
    for stage in ("readout_on_teacher", "onestep", "rnn"):
        assert result[f"{stage}_bits_per_token"] == pytest.approx(math.log2(task.vocab_size))
    assert result["teacher_bits_per_token"] != pytest.approx(math.log2(task.vocab_size))  # the teacher's own head


def test_bptt_report_has_no_teacher_keys():
    assert set(run_evaluate(*build("bptt"))) == RNN_KEYS


def test_report_counts_the_labelled_tokens():
    model, task, seq_len = build("smt", "delayed_recall")  # lag 2: labels at t = 2..T-1
    assert run_evaluate(model, task, seq_len, batches=3, batch_size=4)["labelled_tokens"] == 3 * 4 * (seq_len - 2)


def test_evaluate_leaves_weights_mode_and_global_rng_alone():
    model, task, seq_len = build("smt")
    model.train()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    run_evaluate(model, task, seq_len)
    assert torch.equal(torch.rand(3), expected_next)
    assert model.training
    assert state_dicts_equal(model.state_dict(), weights)


def test_evaluate_is_repeatable():
    model, task, seq_len = build("smt")
    assert run_evaluate(model, task, seq_len) == run_evaluate(model, task, seq_len)


# --- bits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [2, 5, 16])
def test_uniform_logits_cost_log2_v_bits(vocab):
    score = _Score()
    y = torch.tensor([[0, vocab - 1, -1, 1]])
    score.add(torch.zeros(1, 4, vocab), y)
    assert score.bits() == pytest.approx(math.log2(vocab))
    assert score.labelled == 3


def test_bits_and_accuracy_by_hand():
    """Two labelled positions, one unlabelled (ignored even though its logits are terrible)."""
    half = math.log(0.5)
    logits = torch.tensor(
        [
            [
                [0.0, half, half],  # p = (1/2, 1/4, 1/4) after softmax; target 0: 1 bit
                [half, half, 0.0],  # target 1: p = 1/4: 2 bits, and argmax 2 is wrong
                [100.0, 0.0, 0.0],
            ]
        ]
    )  # no target
    score = _Score()
    score.add(logits, torch.tensor([[0, 1, -1]]))
    score.add(logits[:, :1], torch.tensor([[2]]))  # a second batch: target 2 at p = 1/4: 2 bits, wrong
    assert score.bits() == pytest.approx((1 + 2 + 2) / 3)
    assert score.accuracy() == pytest.approx(1 / 3)


def test_no_labels_scores_zero_without_dividing_by_zero():
    score = _Score()
    score.add(torch.zeros(2, 3, 4), torch.full((2, 3), -1))
    assert (score.accuracy(), score.bits()) == (0.0, 0.0)


# --- drift --------------------------------------------------------------------------------------------------


def with_rollout_replaced(model: Model, memories_from_teacher) -> None:
    """Make the RNN's rollout return memories computed from the teacher's (a test double for a perfect or a
    known-imperfect RNN); logits come from the real readout."""

    def rollout(x, m0=None, detach_every=0):
        memories = memories_from_teacher(model.teacher.encode(x))
        return memories, model.rnn.readout(memories)

    model.rnn.rollout = rollout


def test_drift_is_zero_when_the_rnn_reproduces_the_teacher():
    model, task, seq_len = build("smt")
    with_rollout_replaced(model, lambda m: m)
    result = run_evaluate(model, task, seq_len)
    assert all(value == 0.0 for value in result["drift"].values())
    assert result["drift_final"] == result["drift_labelled"] == result["drift_relative"] == 0.0
    assert result["rnn_accuracy"] == result["readout_on_teacher_accuracy"]


def test_relative_drift_of_a_memory_swapped_between_sequences_is_two():
    """The RNN writing another sequence's teacher memory (rolled by one in the batch): its error at a position is
    E|m_a - m_b|² = 2·Var across sequences, so drift_relative is about 2 (up to sampling noise)."""
    model, task, seq_len = build("smt")
    with_rollout_replaced(model, lambda m: m.roll(1, dims=0))
    result = evaluate(model, task, seq_len, 2, 64)
    assert result["drift_relative"] == pytest.approx(2.0, rel=0.15)
    assert result["drift_labelled"] > 0


def test_drift_of_a_sign_flip_is_four_and_lands_in_its_bucket():
    """RNN memory = -m_5 at t = 5 only: δ_5 = mean((−m − m)²) = 4·mean(m²) = 4 for unit-RMS memories, so the
    bucket 4-7 reports 4 / 4 = 1 and every other bucket 0."""
    model, task, seq_len = build("smt")

    def flip_five(m):
        out = m.clone()
        out[:, 5] = -out[:, 5]
        return out

    with_rollout_replaced(model, flip_five)
    drift = run_evaluate(model, task, seq_len)["drift"]
    assert drift.pop("4-7") == pytest.approx(1.0, abs=1e-4)
    assert all(value == 0.0 for value in drift.values())


def test_real_rnn_has_positive_drift():
    """The untrained RNN's own rollout is unrelated to the teacher: drift well above 0 (about 2 once t > 0)."""
    result = run_evaluate(*build("smt"))
    assert result["drift_final"] > 0.5


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 100])
def test_drift_buckets_cover_every_position_once(length):
    buckets = drift_buckets(length)
    covered = [t for start, stop in buckets for t in range(start, stop)]
    assert covered == list(range(length))
    assert all(stop > start for start, stop in buckets)


# --- collapse diagnostics -----------------------------------------------------------------------------------


def test_effective_rank_of_a_rank_one_set_is_one():
    g = torch.Generator().manual_seed(0)
    memories = torch.randn(256, 1, generator=g) * torch.randn(1, 32, generator=g) + torch.randn(32, generator=g)
    assert effective_rank(memories) == pytest.approx(1.0, abs=0.05)


def test_effective_rank_of_isotropic_memories_is_near_full():
    memories = torch.randn(2048, 32, generator=torch.Generator().manual_seed(0))
    assert effective_rank(memories) > 0.9 * 32


def test_effective_rank_of_a_fully_collapsed_set_is_one_not_nan():
    assert effective_rank(torch.ones(64, 8)) == pytest.approx(1.0)


def test_uniformity_of_identical_vectors_is_zero():
    tokens = torch.randn(1, 16).repeat(10, 1)
    assert uniformity(tokens, samples=512).item() == pytest.approx(0.0, abs=1e-6)


def test_uniformity_of_antipodal_pair_by_hand():
    """One pair at squared distance 4 (t = 2): log exp(-8) = -8."""
    tokens = torch.tensor([[1.0, 0.0], [-3.0, 0.0]])  # the scale does not matter: tokens are L2-normalized
    assert uniformity(tokens, samples=512).item() == pytest.approx(-8.0, abs=1e-5)


def test_spread_vectors_are_more_uniform_than_clustered_ones():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(200, 16, generator=g)
    clustered = torch.randn(1, 16, generator=g) + 0.1 * torch.randn(200, 16, generator=g)
    spread_u, clustered_u = uniformity(spread, 512).item(), uniformity(clustered, 512).item()
    assert spread_u < -1.0
    assert spread_u < clustered_u < 0.0


@pytest.mark.parametrize("method", ["smt", "bptt"])
def test_the_memory_estimate_refuses_a_billion_positions_and_admits_the_training_length(method):
    cfg = debug_config("retrieval", method)
    vocab, batch = make_task(cfg.task.name, **cfg.task.params).vocab_size, cfg.optim.batch_size
    free = available_memory(torch.device("cpu"))
    assert free is not None and free > 0
    assert evaluation_bytes(cfg, vocab, 10**9, batch) > free
    assert evaluation_bytes(cfg, vocab, cfg.task.seq_len, batch) < free
    # grows with B·T, and counts at least the memories and logits evaluate holds (the teacher's beside the RNN's)
    assert evaluation_bytes(cfg, vocab, 2 * cfg.task.seq_len, batch) == 2 * evaluation_bytes(
        cfg, vocab, cfg.task.seq_len, batch
    )
    held = (2 if method == "smt" else 1) * 4 * (cfg.memory.size + vocab)
    assert evaluation_bytes(cfg, vocab, 1, 1) > held


@pytest.mark.parametrize("cell", ["mlp", "gru-fused", "lstm-fused", "mingru"])
def test_the_streamed_rnn_alone_scores_what_the_batched_rollout_scores(monkeypatch, cell):
    """Chunks of 3 steps carrying only the state give evaluate's RNN-alone scores on the same sequences."""
    cfg = debug_config("retrieval", "bptt")
    cfg.rnn.cell = cell
    task = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(0)
    model = Model.for_run(cfg, task.vocab_size)
    length = 29  # not a multiple of the chunk: the last chunk is short
    monkeypatch.setattr(evaluate_module, "STREAM_FLOATS", 3 * 2 * 4 * (model.rnn.size + task.vocab_size))
    assert evaluate_module.stream_chunk(2 * 4, model.rnn.size, task.vocab_size) == 3
    whole = evaluate(model, task, length, batches=2, batch_size=4)
    streamed = evaluate_rnn_alone(model, task, length, batches=2, batch_size=4)
    assert streamed["labelled_tokens"] == whole["labelled_tokens"] == 8
    assert streamed["rnn_accuracy"] == whole["rnn_accuracy"]
    assert streamed["rnn_bits_per_token"] == pytest.approx(whole["rnn_bits_per_token"], rel=1e-5)


def test_lengths_score_the_rnn_alone_unless_the_teacher_is_asked():
    model, task, _ = build("smt", "retrieval")
    alone = evaluate_lengths(model, task, [12, 40], batches=1, batch_size=4)
    assert list(alone) == ["12", "40"] and set(alone["40"]) == {"rnn_accuracy", "rnn_bits_per_token", "labelled_tokens"}
    both = evaluate_lengths(model, task, [40], batches=1, batch_size=4, teacher=True)["40"]
    assert {"teacher_accuracy", "onestep_accuracy", "drift_final"} <= set(both)
    assert both["rnn_accuracy"] == alone["40"]["rnn_accuracy"]


def test_the_rnn_alone_estimate_grows_with_sequences_and_length_not_with_a_teacher():
    cfg = debug_config("retrieval", "smt")
    vocab = make_task(cfg.task.name, **cfg.task.params).vocab_size
    long = 1 << 20  # past one chunk: the ids grow with T, the chunk does not
    assert rnn_alone_bytes(cfg, vocab, 2 * long, 8) - rnn_alone_bytes(cfg, vocab, long, 8) == 8 * 16 * long
    assert rnn_alone_bytes(cfg, vocab, long, 8) < evaluation_bytes(cfg, vocab, long, 8) / 4
    assert rnn_alone_bytes(cfg, vocab, 10**12, 256) > available_memory(torch.device("cpu"))


def test_the_answer_score_counts_digits_and_whole_answers_by_hand():
    """Two sequences with 2 answer targets each: one wholly right, one half right; other targets do not count."""
    y = torch.tensor([[1, 2, 3, 0], [1, 2, 3, 1]])
    answers = torch.tensor([[False, False, True, True]] * 2)
    predicted = torch.tensor([[0, 0, 3, 0], [1, 2, 3, 2]])  # row 0 misses non-answers only; row 1 misses one answer
    score = evaluate_module._AnswerScore()
    score.add(predicted == y, answers)
    assert score.report("rnn") == {"rnn_answer_accuracy": 3 / 4, "rnn_answer_exact": 1 / 2}
