"""DAgger Memory Training (`smtrnn.dmt`): the graph-free rollout over visited states, the batched k-step
regression from them, the frozen teacher, the smt+dmt schedule, the SMT -> DMT pipeline (Trainer and `--init`),
that DMT actually reduces drift, and the CLI's refusals around `--init`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from support import debug_config, state_dicts_equal

from smtrnn.checkpoint import METRICS_FILE, load_model, read_config
from smtrnn.cli import main
from smtrnn.config import DMTConfig, MemoryConfig, RNNConfig
from smtrnn.data.tasks import make_task
from smtrnn.dmt import dmt_loss, predict_from_visited, visited_states
from smtrnn.evaluate import evaluate
from smtrnn.losses import masked_cross_entropy
from smtrnn.model import Model
from smtrnn.reference import dmt_sequential_loss
from smtrnn.rnn import RNN
from smtrnn.smt import smt_loss
from smtrnn.trainer import Trainer, loss_function

# delayed_recall with 64 symbols and lag 1: a vocabulary large enough for every token of a (4, 12) batch to be
# distinct, so a gradient on an embedding row tells exactly which (sequence, position) it came from.
WIDE = {"num_symbols": 64, "lag": 1}


def make_model(task: str = "retrieval", seed: int = 0, **params) -> tuple[Model, object]:
    """A freshly initialized debug teacher + RNN (method smt, so it has a teacher) and its task."""
    cfg = debug_config(task, "smt")
    if params:
        cfg.task.params = params
    made = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(seed)
    return Model.for_run(cfg, made.vocab_size), made


def sample(made, batch: int, length: int, seed: int = 0):
    return made.sample(batch, length, torch.Generator().manual_seed(seed))


def distinct_tokens(batch: int, length: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """(batch, length) token ids, each id at most once in the whole batch."""
    return torch.randperm(vocab, generator=torch.Generator().manual_seed(seed))[: batch * length].view(batch, length)


def graph_size(loss: torch.Tensor) -> int:
    """Number of autograd nodes reachable from loss.grad_fn."""
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(child for child, _ in node.next_functions)
    return len(seen)


def grad_is_zero(p: torch.nn.Parameter) -> bool:
    return p.grad is None or not p.grad.any()


# --- visited_states -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("restart_fraction", [0.0, 0.5, 1.0])
def test_visited_states_build_no_graph(restart_fraction):
    model, made = make_model()
    x, _ = sample(made, 4, 12)
    m = model.teacher.encode(x)  # with a graph, as if a caller forgot no_grad
    assert all(p.requires_grad for p in model.parameters())
    inputs, written = visited_states(model, x, m, restart_fraction)
    for out in (inputs, written):
        assert not out.requires_grad and out.grad_fn is None
    assert inputs.shape == written.shape == m.shape


def test_without_restarts_the_rnn_runs_alone_from_the_empty_memory():
    model, made = make_model()
    x, _ = sample(made, 8, 12)
    with torch.no_grad():
        m = model.teacher.encode(x)
        rolled, _ = model.rnn.rollout(x)
        empty = model.rnn.init_state(8)
    inputs, written = visited_states(model, x, m, 0.0)
    torch.testing.assert_close(written, rolled, rtol=0, atol=1e-5)
    torch.testing.assert_close(inputs[:, 0], empty, rtol=0, atol=0)
    torch.testing.assert_close(inputs[:, 1:], written[:, :-1], rtol=0, atol=0)


def sources(inputs, written, m) -> list[str]:
    """Per sequence, where each input state t >= 1 came from: 'T' teacher m_{t-1}, 'R' the RNN's written_{t-1}."""
    rows = []
    for b in range(inputs.shape[0]):
        row = ""
        for t in range(1, inputs.shape[1]):
            if torch.equal(inputs[b, t], m[b, t - 1]):
                row += "T"
            elif torch.equal(inputs[b, t], written[b, t - 1]):
                row += "R"
            else:
                row += "?"
        rows.append(row)
    return rows


@pytest.mark.parametrize("restart_fraction", [0.5, 1.0])
def test_restarted_sequences_follow_the_teacher_up_to_a_switch_then_the_rnn(restart_fraction):
    model, made = make_model()
    x, _ = sample(made, 64, 12)
    with torch.no_grad():
        m = model.teacher.encode(x)
    torch.manual_seed(1)
    inputs, written = visited_states(model, x, m, restart_fraction)
    # Every state written is one RNN step from the state that step started from, restarted or not.
    with torch.no_grad():
        stepped = model.rnn.step(inputs.flatten(0, 1), x.flatten()).view_as(written)
    torch.testing.assert_close(written, stepped, rtol=0, atol=1e-5)
    torch.testing.assert_close(inputs[:, 0], model.rnn.init_state(64).detach(), rtol=0, atol=0)
    rows = sources(inputs, written, m)
    for row in rows:  # a teacher prefix, then the RNN's own states to the end
        assert "?" not in row and "RT" not in row, rows
    followed = [row.count("T") for row in rows]
    if restart_fraction == 1.0:
        # Every sequence restarts, at an offset >= 0, so every one starts step 1 from the teacher's m_0 ...
        assert all(row[0] == "T" for row in rows), rows
        # ... and the offsets are random: many different switch points, some sequences teacher-led to the end.
        assert len(set(followed)) >= 5 and max(followed) == len(rows[0]), followed
    else:
        fraction = sum(row[0] == "T" for row in rows) / len(rows)
        assert 0.25 < fraction < 0.75, (fraction, rows)
        assert any(n == 0 for n in followed), rows


def test_dmt_graph_does_not_grow_with_the_sequence_length():
    model, made = make_model()
    sizes = {}
    for length in (8, 32):
        x, y = sample(made, 4, length)
        for k in (0, 2):
            sizes[length, k] = graph_size(dmt_loss(model, x, y, DMTConfig(grad_through_rollout_steps=k))[0])
        sizes[length, "seq"] = graph_size(dmt_sequential_loss(model, x, y, DMTConfig())[0])
    assert sizes[8, 0] == sizes[32, 0], sizes
    assert sizes[8, 2] == sizes[32, 2], sizes
    assert sizes[8, 0] < sizes[8, 2], sizes  # k + 1 steps each: the graph grows with k, not with T
    assert sizes[32, "seq"] > sizes[8, "seq"] + 24, sizes  # the paper's form keeps one step per position


# --- predict_from_visited -----------------------------------------------------------------------------------


def small_rnn(vocab: int, seed: int = 0) -> RNN:
    torch.manual_seed(seed)
    return RNN(MemoryConfig(tokens=2, width=8), RNNConfig(hidden=32, depth=1, embed=8, readout_hidden=16), vocab)


@pytest.mark.parametrize("k", [0, 1, 3, 11, 40])
def test_each_prediction_is_k_plus_one_steps_from_its_visited_state(k):
    """predicted[:, t] = the RNN run over x_{s}..x_t from visited[:, s], s = max(t - k, 0), for every t."""
    batch, length = 3, 12
    rnn = small_rnn(vocab=10)
    model = SimpleNamespace(rnn=rnn)  # predict_from_visited only uses model.rnn
    x = torch.randint(0, 10, (batch, length), generator=torch.Generator().manual_seed(0))
    visited = F.normalize(torch.randn(batch, length, 16, generator=torch.Generator().manual_seed(1)), dim=-1) * 4
    visited[:, 0] = rnn.init_state(batch).detach()  # a rollout's first state is always m_∅
    with torch.no_grad():
        predicted = predict_from_visited(model, x, visited, k)
        assert predicted.shape == (batch, length, 16)
        for t in range(length):
            s = max(t - k, 0)
            expected = rnn.rollout(x[:, s : t + 1], m0=visited[:, s])[0][:, -1]
            torch.testing.assert_close(predicted[:, t], expected, rtol=0, atol=1e-5, msg=f"t={t}, k={k}")
    if k == 0:  # plain one-step regression: rnn.step from the visited state of the same step
        stepped = rnn.step(visited.flatten(0, 1), x.flatten()).view_as(predicted)
        torch.testing.assert_close(predicted, stepped.detach(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("k", [1, 4])
def test_on_an_on_policy_rollout_predictions_are_the_written_states(k):
    model, made = make_model()
    x, _ = sample(made, 8, 12)
    with torch.no_grad():
        m = model.teacher.encode(x)
        inputs, written = visited_states(model, x, m, 0.0)
        predicted = predict_from_visited(model, x, inputs, k)
    torch.testing.assert_close(predicted, written, rtol=0, atol=1e-5)


@pytest.mark.parametrize("k", [0, 2, 5])
def test_gradient_reaches_exactly_the_last_k_plus_one_inputs(k):
    batch, length = 4, 12
    rnn = small_rnn(vocab=batch * length)
    x = distinct_tokens(batch, length, batch * length)
    with torch.no_grad():
        visited = rnn.rollout(x)[0]
    predicted = predict_from_visited(SimpleNamespace(rnn=rnn), x, visited, k)
    predicted[:, -1].sum().backward()
    has_grad = rnn.embedding.weight.grad.abs().sum(-1) > 0  # per token id
    for b in range(batch):
        for t in range(length):
            assert bool(has_grad[x[b, t]]) == (t >= length - 1 - k), (b, t, k)
    assert grad_is_zero(rnn.empty_memory)  # visited states are data, not part of the graph


# --- frozen teacher, gradient routing -----------------------------------------------------------------------


@pytest.mark.parametrize("loss_fn", [dmt_loss, dmt_sequential_loss])
def test_dmt_trains_the_rnn_and_never_the_teacher(loss_fn):
    model, made = make_model()
    x, y = sample(made, 4, 12)
    loss, metrics = loss_fn(model, x, y, DMTConfig(grad_through_rollout_steps=1, label_every=3))
    loss.backward()
    assert torch.isfinite(loss) and {"dynamics", "readout", "loss"} <= set(metrics)
    frozen = [n for n, p in model.teacher.named_parameters() if not grad_is_zero(p)]
    assert not frozen, f"teacher parameters with a gradient: {frozen}"
    for part in (model.rnn.cell, model.rnn.readout_net, model.rnn.embedding):
        silent = [n for n, p in part.named_parameters() if grad_is_zero(p)]
        assert not silent, f"RNN parameters without a gradient: {silent}"


def test_sequential_dmt_gradient_crosses_time():
    """Only the last step is labelled (label_every > T): the MSE there still trains the embedding of x_0."""
    model, made = make_model("delayed_recall", **WIDE)
    batch, length = 4, 12
    x = distinct_tokens(batch, length, made.vocab_size)
    y = torch.full_like(x, -1)  # no readout targets: only the dynamics term carries gradient
    loss, _ = dmt_sequential_loss(model, x, y, DMTConfig(label_every=100))
    assert torch.isfinite(loss), loss
    loss.backward()
    rows = model.rnn.embedding.weight.grad.abs().sum(-1)
    assert (rows[x[:, 0]] > 0).all() and (rows[x[:, -1]] > 0).all(), rows[x]
    assert all(grad_is_zero(p) for p in model.teacher.parameters())


def test_sequential_dmt_labels_every_kth_step_ending_at_the_last():
    model, made = make_model()
    x, y = sample(made, 4, 12)
    _, metrics = dmt_sequential_loss(model, x, y, DMTConfig(label_every=5))
    with torch.no_grad():
        m, rolled = model.teacher.encode(x), model.rnn.rollout(x)[0]
    labelled = [1, 6, 11]
    assert float(metrics["dynamics"]) == pytest.approx(F.mse_loss(rolled[:, labelled], m[:, labelled]).item(), rel=1e-5)


def test_dmt_readout_is_on_the_rnns_own_memories_and_the_terms_are_weighted():
    model, made = make_model()
    x, y = sample(made, 8, 12)
    cfg = DMTConfig(restart_fraction=0.0, dynamics_weight=2.0, readout_weight=0.5)
    _, metrics = dmt_loss(model, x, y, cfg)
    with torch.no_grad():
        expected = masked_cross_entropy(model.rnn.readout(model.rnn.rollout(x)[0]), y).item()
    metrics = {name: float(value) for name, value in metrics.items()}  # approx compares floats, not 0-d tensors
    assert metrics["readout"] == pytest.approx(expected, rel=1e-5)
    assert metrics["loss"] == pytest.approx(2.0 * metrics["dynamics"] + 0.5 * metrics["readout"], rel=1e-5)


# --- the smt+dmt schedule ------------------------------------------------------------------------------------


def test_smt_then_dmt_switches_loss_at_one_minus_the_dmt_fraction():
    cfg = debug_config("retrieval", "smt+dmt")
    cfg.dmt.fraction, cfg.smt.teacher_alone = 0.25, 0.6
    early, late = loss_function(cfg, 0.5), loss_function(cfg, 0.8)
    assert early.func is smt_loss and early.keywords["cfg"] is cfg.smt
    assert late.func is dmt_loss and late.keywords["cfg"] is cfg.dmt
    assert loss_function(cfg, 0.74).func is smt_loss and loss_function(cfg, 0.75).func is dmt_loss
    cfg.dmt.time_parallel = False
    assert loss_function(cfg, 0.8).func is dmt_sequential_loss
    assert loss_function(cfg, 0.5).func is smt_loss


def test_smt_warmup_inside_smt_then_dmt_is_a_fraction_of_the_smt_share():
    """rnn_active = progress / (1 - dmt.fraction) >= smt.teacher_alone: with warm-up 0.6 and fraction 0.25 the RNN
    starts at progress 0.45, where plain SMT would start at 0.6."""
    cfg = debug_config("retrieval", "smt+dmt")
    cfg.dmt.fraction, cfg.smt.teacher_alone = 0.25, 0.6
    assert loss_function(cfg, 0.4).keywords["rnn_active"] is False  # 0.533 < 0.6
    assert loss_function(cfg, 0.5).keywords["rnn_active"] is True  # 0.667
    assert loss_function(cfg, 0.6).keywords["rnn_active"] is True  # 0.8
    cfg.train.method = "smt"
    assert loss_function(cfg, 0.5).keywords["rnn_active"] is False  # plain SMT: 0.5 < 0.6


def test_method_dmt_is_dmt_from_the_first_step():
    cfg = debug_config("retrieval", "dmt")
    assert loss_function(cfg, 0.0).func is dmt_loss


# --- the SMT -> DMT pipeline ---------------------------------------------------------------------------------


def dmt_config_from(smt_dir: Path, steps: int = 1):
    cfg, _ = read_config(smt_dir)
    cfg.train.method, cfg.train.init, cfg.train.steps = "dmt", str(smt_dir), steps
    return cfg


def test_dmt_trainer_starts_from_the_smt_weights(smt_run, tmp_path):
    smt_dir, _ = smt_run
    _, smt_model = load_model(smt_dir)
    trainer = Trainer(dmt_config_from(smt_dir), tmp_path / "dmt", show_progress=False)
    assert state_dicts_equal(trainer.model.state_dict(), smt_model.state_dict())
    # Not vacuous: the same config without --init starts elsewhere.
    fresh = dmt_config_from(smt_dir)
    fresh.train.method, fresh.train.init = "smt", ""
    assert not state_dicts_equal(
        Trainer(fresh, tmp_path / "fresh", show_progress=False).model.state_dict(), smt_model.state_dict()
    )


def metric_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / METRICS_FILE).read_text().splitlines()
    return [r for r in map(json.loads, lines) if "eval" not in r]


def test_smt_then_dmt_runs_end_to_end(capsys, tmp_path):
    """8 steps, dmt.fraction 0.25: steps 1-6 are SMT, 7-8 DMT. The teacher is kept learning through SMT
    (schedule joint-detached) so every SMT record has a decoder term and the DMT ones are the only
    records without one."""
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--method",
            "smt+dmt",
            "--preset",
            "debug",
            "--task",
            "retrieval",
            "--steps",
            "8",
            "--set",
            "train.log_every=1",
            "--set",
            "smt.schedule=joint-detached",
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 0, err
    records = metric_records(out)
    assert [r["step"] for r in records] == list(range(1, 9))
    assert all("decoder" in r for r in records[:6]), records
    assert all("decoder" not in r and "dynamics" in r and "readout" in r for r in records[6:]), records
    assert any("dynamics" in r for r in records[:6])  # the SMT share has its own RNN phase after the warm-up


@pytest.fixture(scope="module")
def smt_and_dmt_runs(tmp_path_factory) -> tuple[Path, Path]:
    """An SMT debug run on delayed_recall (60 steps), then 30 steps of DMT from it through `train --init`."""
    base = tmp_path_factory.mktemp("dmt")
    smt_dir, dmt_dir = base / "smt", base / "dmt"
    cfg = debug_config("delayed_recall", "smt", steps=60)
    cfg.train.log_every = 10
    Trainer(cfg, smt_dir, show_progress=False).run()
    code = main(["train", "--init", str(smt_dir), "--steps", "30", "--out", str(dmt_dir), "--quiet", "--device", "cpu"])
    assert code == 0
    return smt_dir, dmt_dir


def test_dmt_reduces_drift(smt_and_dmt_runs):
    scores = {}
    for name, run_dir in zip(("smt", "dmt"), smt_and_dmt_runs):
        cfg, model = load_model(run_dir)
        result = evaluate(model, make_task(cfg.task.name, **cfg.task.params), cfg.task.seq_len, 4, 32)
        drift = result["drift"]
        scores[name] = {
            "mean_drift": sum(drift.values()) / len(drift),
            "drift_final": result["drift_final"],
            "rnn_accuracy": result["rnn_accuracy"],
            "teacher_accuracy": result["teacher_accuracy"],
        }
    smt, dmt = scores["smt"], scores["dmt"]
    assert dmt["mean_drift"] < 0.75 * smt["mean_drift"], scores
    assert dmt["drift_final"] < smt["drift_final"], scores
    assert dmt["teacher_accuracy"] == smt["teacher_accuracy"], scores  # same frozen teacher
    assert dmt["rnn_accuracy"] >= smt["rnn_accuracy"] - 0.02, scores


def test_dmt_run_keeps_the_teacher_and_the_smt_config(smt_and_dmt_runs):
    smt_dir, dmt_dir = smt_and_dmt_runs
    smt_cfg, smt_model = load_model(smt_dir)
    dmt_cfg, dmt_model = load_model(dmt_dir)
    assert (dmt_cfg.train.method, dmt_cfg.train.init, dmt_cfg.train.steps) == ("dmt", str(smt_dir), 30)
    for section in ("task", "memory", "teacher", "rnn", "optim", "dmt"):
        assert getattr(dmt_cfg, section) == getattr(smt_cfg, section), section
    assert state_dicts_equal(dmt_model.teacher.state_dict(), smt_model.teacher.state_dict())
    assert not state_dicts_equal(dmt_model.rnn.cell.state_dict(), smt_model.rnn.cell.state_dict())
    records = metric_records(dmt_dir)
    assert records and all("decoder" not in r and "dynamics" in r for r in records)


# --- bad input ----------------------------------------------------------------------------------------------


def assert_one_line_error(code: int, err: str, names: list[str], paths: list[str]) -> None:
    """Exit 2, one `smtrnn: error:` line naming each of `names`; a name that is not itself one of `paths` must
    appear outside those paths (so "bptt" is not matched by a directory called ..._bptt_run)."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("smtrnn: error: "), line
    bare = line
    for path in sorted(paths, key=len, reverse=True):
        bare = bare.replace(path, "<dir>")
    for name in names:
        assert name in (line if name in paths else bare), line


BAD_INIT = {
    # id: (argv after "train" given the fixture dirs, names in the message)
    "missing dir": (lambda d: ["--init", d["missing"]], lambda d: [d["missing"], "does not exist"]),
    "dir without a run": (lambda d: ["--init", d["empty"]], lambda d: [d["empty"], "config.json"]),
    "bptt run": (lambda d: ["--init", d["bptt"]], lambda d: [d["bptt"], "bptt"]),
    "other cell": (lambda d: ["--init", d["smt"], "--cell", "gru"], lambda d: ["rnn.cell", "gru", "mlp"]),
    "other task": (lambda d: ["--init", d["smt"], "--task", "copy"], lambda d: ["task.name", "copy"]),
    "--init with method smt": (lambda d: ["--init", d["smt"], "--method", "smt"], lambda d: ["--init", "dmt"]),
    "method dmt without --init": (lambda d: ["--preset", "debug", "--method", "dmt"], lambda d: ["--init"]),
    "dmt.fraction 1": (
        lambda d: ["--preset", "debug", "--method", "smt+dmt", "--set", "dmt.fraction=1"],
        lambda d: ["dmt.fraction", "1"],
    ),
    "dmt.fraction 0": (
        lambda d: ["--preset", "debug", "--method", "smt+dmt", "--set", "dmt.fraction=0"],
        lambda d: ["dmt.fraction"],
    ),
    "dmt.fraction negative": (
        lambda d: ["--init", d["smt"], "--set", "dmt.fraction=-0.5"],
        lambda d: ["dmt.fraction", "-0.5"],
    ),
    "dmt.restart_fraction 2": (
        lambda d: ["--init", d["smt"], "--set", "dmt.restart_fraction=2"],
        lambda d: ["dmt.restart_fraction"],
    ),
}


@pytest.mark.parametrize("argv, names", BAD_INIT.values(), ids=BAD_INIT.keys())
def test_bad_dmt_arguments(capsys, tmp_path, smt_run, bptt_run, argv, names):
    (tmp_path / "empty").mkdir()
    dirs = {
        "smt": str(smt_run[0]),
        "bptt": str(bptt_run[0]),
        "missing": str(tmp_path / "nowhere"),
        "empty": str(tmp_path / "empty"),
    }
    out = tmp_path / "out"
    code = main(["train", *argv(dirs), "--steps", "2", "--out", str(out), "--quiet", "--device", "cpu"])
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, names(dirs), list(dirs.values()))
    assert not out.exists()  # a refused run leaves nothing behind


def test_time_parallel_dmt_trains_the_empty_memory():
    cfg = debug_config("delayed_recall", "smt+dmt")
    task = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(0)
    model = Model.for_run(cfg, task.vocab_size)
    x, y = task.sample(4, cfg.task.seq_len, torch.Generator().manual_seed(0))
    loss, _ = dmt_loss(model, x, y, cfg.dmt)
    loss.backward()
    assert model.rnn.empty_memory.grad is not None and model.rnn.empty_memory.grad.abs().max() > 0


def test_dmt_may_start_from_an_smt_run_of_another_length(tmp_path, capsys):
    smt_dir = tmp_path / "smt"
    Trainer(debug_config("retrieval", "smt", steps=2), smt_dir, show_progress=False).run()
    code = main(
        [
            "train",
            "--init",
            str(smt_dir),
            "--seq-len",
            "24",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "dmt"),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert code == 0, capsys.readouterr().err
