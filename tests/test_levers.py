"""The long-range levers: each option changes what its name says (noise only where and when it is named, gradient
routing unchanged, memory size respected), bad values are refused naming the field, and the `long` recipe trains
and evaluates at the debug sizes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from support import debug_config, state_dicts_equal

from smtrnn.cli import main
from smtrnn.config import RunConfig, validate
from smtrnn.data.tasks import make_task
from smtrnn.errors import ConfigError
from smtrnn.evaluate import evaluate
from smtrnn.losses import memory_channel, perturb_on_sphere
from smtrnn.model import Model
from smtrnn.presets import long_range_base, make_preset, small, with_long_range_rule
from smtrnn.smt import dynamics_input_sigma, smt_loss
from smtrnn.trainer import Trainer


def build(cfg):
    task = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(0)
    return Model.for_run(cfg, task.vocab_size), task


def batch(task, length, size=8, seed=0):
    return task.sample(size, length, torch.Generator().manual_seed(seed))


# --- the memory channel ---------------------------------------------------------------------------------------


def long_range(task: str, params: dict | None = None):
    """`small` with the recipe's long-range rule alone (no contraction) for the task with these parameters."""
    cfg = small(task)
    cfg.task.params = dict(params or {})
    return with_long_range_rule(cfg, make_task(task, **cfg.task.params))


def test_memory_channel_adds_noise_of_the_named_std_and_is_the_identity_at_zero():
    m = torch.randn(64, 32, 16)
    assert memory_channel(m, 0.0, 0.0) is m
    torch.manual_seed(0)
    noise = memory_channel(m, 0.2, 0.0) - m
    assert abs(float(noise.std()) - 0.2) < 0.01 and abs(float(noise.mean())) < 0.01


def test_memory_dropout_zeroes_the_named_fraction_and_rescales_the_rest():
    m = torch.ones(200, 100)
    torch.manual_seed(0)
    out = memory_channel(m, 0.0, 0.25)
    assert abs(float((out == 0).float().mean()) - 0.25) < 0.01
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / 0.75))


def _decoder_and_readout_inputs(model, monkeypatch):
    """Record what the decoder and the readout are given during smt_loss."""
    seen = {"decoder": [], "readout": []}
    decoder_forward, readout = model.teacher.decoder.forward, model.rnn.readout

    def record_decoder(m, future):
        seen["decoder"].append(m.detach().clone())
        return decoder_forward(m, future)

    def record_readout(m):
        seen["readout"].append(m.detach().clone())
        return readout(m)

    monkeypatch.setattr(model.teacher.decoder, "forward", record_decoder)
    monkeypatch.setattr(model.rnn, "readout", record_readout)
    return seen


def test_memory_noise_reaches_the_decoder_and_readout_but_not_the_dynamics_targets(monkeypatch):
    cfg = debug_config("retrieval", smt__memory_noise=0.3, smt__schedule="joint-detached")
    model, task = build(cfg)
    x, y = batch(task, cfg.task.seq_len)
    with torch.no_grad():
        m = model.teacher.encode(x)
    seen = _decoder_and_readout_inputs(model, monkeypatch)
    torch.manual_seed(1)
    _, noisy = smt_loss(model, x, y, cfg.smt)
    read = seen["readout"][0]
    assert abs(float((read - m).std()) - 0.3) < 0.03  # the readout reads m + 0.3·ε
    # the decoder decodes noisy memories too: none is within 0.1 RMS of a clean teacher memory
    decoded = seen["decoder"][0]
    nearest = torch.cdist(decoded, m.flatten(0, 1)).min(dim=1).values / decoded.shape[-1] ** 0.5
    assert float(nearest.min()) > 0.1
    cfg.smt.memory_noise = 0.0
    torch.manual_seed(1)
    _, clean = smt_loss(model, x, y, cfg.smt)
    assert float(noisy["dynamics"]) == pytest.approx(
        float(clean["dynamics"]), rel=1e-6
    )  # the dynamics MSE is untouched
    assert float(noisy["readout"]) != pytest.approx(float(clean["readout"]), rel=1e-3)


def test_memory_noise_is_absent_at_evaluation():
    """The same weights score the same whatever the training noise was: the channel exists only in training."""
    cfg = debug_config("retrieval")
    model, task = build(cfg)
    noisy_cfg = debug_config("retrieval", smt__memory_noise=0.5, smt__memory_dropout=0.5)
    noisy_model, _ = build(noisy_cfg)
    noisy_model.load_state_dict(model.state_dict())
    a = evaluate(model, task, cfg.task.seq_len, 2, 8)
    b = evaluate(noisy_model, task, cfg.task.seq_len, 2, 8)
    assert a == b


def test_memory_noise_keeps_the_gradient_routing_of_the_schedule():
    """With the noise on and the joint-detached schedule, the RNN terms still send no gradient into the encoder."""
    cfg = debug_config(
        "retrieval",
        smt__memory_noise=0.2,
        smt__schedule="joint-detached",
        smt__decoder_weight=0.0,
        smt__uniformity_weight=0.0,
    )
    model, task = build(cfg)
    x, y = batch(task, cfg.task.seq_len)
    loss, _ = smt_loss(model, x, y, cfg.smt)
    loss.backward()
    encoder = [p.grad for p in model.teacher.encoder.parameters()]
    assert all(g is None or not g.abs().sum() for g in encoder)
    assert model.rnn.cell.net[0].weight.grad.abs().sum() > 0


# --- contraction: perturbed dynamics inputs ----------------------------------------------------------------------


def test_perturb_on_sphere_moves_by_about_sigma_and_stays_rms_normalized():
    m = torch.nn.functional.normalize(torch.randn(512, 2, 16), dim=-1).flatten(-2) * 4.0  # K = 2 tokens of 16
    torch.manual_seed(0)
    out = perturb_on_sphere(m, 0.1, tokens=2)
    rms = out.unflatten(-1, (2, 16)).pow(2).mean(-1)
    assert torch.allclose(rms, torch.ones_like(rms), atol=1e-4)
    assert 0.05 < float((out - m).pow(2).mean().sqrt()) < 0.2
    assert perturb_on_sphere(m, 0.0, tokens=2) is m


def test_dynamics_input_noise_perturbs_the_update_inputs_with_its_schedule(monkeypatch):
    cfg = debug_config("retrieval", smt__dynamics_input_noise=0.3, smt__dynamics_input_noise_final=0.0)
    assert dynamics_input_sigma(cfg.smt, 0.0) == pytest.approx(0.3)
    assert dynamics_input_sigma(cfg.smt, 0.5) == pytest.approx(0.15)
    assert dynamics_input_sigma(cfg.smt, 1.0) == pytest.approx(0.0)
    model, task = build(cfg)
    x, y = batch(task, cfg.task.seq_len)
    with torch.no_grad():
        m = model.teacher.encode(x)
    previous = torch.cat([model.rnn.init_state(x.shape[0])[:, None], m[:, :-1]], dim=1).flatten(0, 1).detach()
    inputs = []
    step = model.rnn.step
    monkeypatch.setattr(model.rnn, "step", lambda state, tokens: inputs.append(state.detach()) or step(state, tokens))
    for progress, expected in ((0.0, 0.3), (1.0, 0.0)):
        inputs.clear()
        smt_loss(model, x, y, cfg.smt, smt_progress=progress)
        moved = float((inputs[0] - previous).pow(2).mean().sqrt())
        assert (moved > 0.1) if expected else (moved < 1e-5)


# --- the horizon without shortcuts --------------------------------------------------------------------------


def test_future_input_dropout_replaces_that_fraction_of_future_inputs_by_a_learned_blank(monkeypatch):
    cfg = debug_config(
        "delayed_recall",
        teacher__future_len=12,
        teacher__decoder_positions=32,
        teacher__future_input_dropout=0.5,
        smt__schedule="joint-detached",
    )
    model, task = build(cfg)
    x, y = batch(task, cfg.task.seq_len, size=16)
    futures = []
    forward = model.teacher.decoder.forward
    monkeypatch.setattr(model.teacher.decoder, "forward", lambda m, f: futures.append(f.detach()) or forward(m, f))
    loss, _ = smt_loss(model, x, y, cfg.smt)
    blank = model.teacher.blank.detach()
    is_blank = (futures[0] == blank).all(-1)
    assert 0.4 < float(is_blank.float().mean()) < 0.6
    loss.backward()
    assert model.teacher.blank.grad.abs().sum() > 0


def test_without_future_dropout_the_teacher_has_no_blank_so_older_checkpoints_load():
    model, _ = build(debug_config("retrieval"))
    assert model.teacher.blank is None
    assert not any("blank" in name for name in model.state_dict())


# --- memory size and the long recipe ----------------------------------------------------------------------------


def test_long_preset_sizes_the_memory_from_the_bits_a_task_declares_and_turns_the_noise_channel_on():
    """retrieval holds a needle of 8 symbols and a flag (4 bits), parity one bit: Z = 16, the smallest; delayed_recall
    a window of 16 symbols of 3 bits (48): Z = 64; copy declares nothing and keeps small's Z = 128."""
    for task, size in (("retrieval", 16), ("parity", 16), ("delayed_recall", 64), ("copy", 128)):
        cfg = long_range(task)
        assert cfg.memory.size == size and cfg.smt.memory_noise > 0
        model, _ = build(cfg)
        assert model.rnn.init_state(1).shape == (1, size)
        assert model.teacher.encode(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, size)
    assert long_range("delayed_recall", {"lag": 40}).memory.size == 128  # 120 bits: the size follows the parameters


def test_long_recipe_turns_the_linear_memory_lever_on_for_shift_register_tasks_only():
    """delayed_recall: a linear decoder over the window Tf = lag + 1 and the linear-skip cell; the other tasks keep
    the Transformer decoder and small's MLP cell, and BPTT under `long` runs the same cell as SMT."""
    for task in ("delayed_recall", "retrieval", "copy"):
        cfg = long_range(task)
        linear = make_task(task).target_lag() is not None
        assert cfg.teacher.decoder == ("linear" if linear else "transformer")
        assert cfg.rnn.cell == ("mlp-linear" if linear else "mlp")
        assert make_preset("recipe", task).rnn.cell == cfg.rnn.cell
    assert long_range("delayed_recall").teacher.future_len == make_task("delayed_recall").lag + 1
    recall, retrieval = long_range("delayed_recall").dmt, long_range("retrieval").dmt
    assert (recall.fraction, recall.grad_through_rollout_steps) == (0.5, 1) and retrieval == small("retrieval").dmt
    # three times small's learning rate on the shift-register tasks, for every method there; small's elsewhere
    assert long_range("delayed_recall").optim.lr == pytest.approx(3 * small("delayed_recall").optim.lr)
    assert long_range("retrieval").optim == small("retrieval").optim == long_range("copy").optim
    model, _ = build(long_range("delayed_recall"))
    assert type(model.teacher.decoder).__name__ == "LinearDecoder" and type(model.rnn.cell).__name__ == "LinearMLPCell"


def test_the_long_recipe_trains_and_evaluates_at_debug_sizes(tmp_path):
    cfg = debug_config("retrieval", "smt+dmt", steps=20)
    cfg = with_long_range_rule(cfg, make_task("retrieval", **cfg.task.params))
    cfg.rnn.hidden = 32
    validate(cfg)
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    result = trainer.run()
    assert trainer.model.rnn.size == 16 and cfg.smt.memory_noise == 0.2
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result["rnn_accuracy"] == logged[-1]["eval"]["rnn_accuracy"] and math.isfinite(result["drift_final"])


def test_noise_changes_training_so_runs_differ(tmp_path):
    """Two runs differing only in smt.memory_noise end with different weights (the option is not ignored)."""
    weights = []
    for i, noise in enumerate((0.0, 0.3)):
        trainer = Trainer(
            debug_config("retrieval", steps=4, smt__memory_noise=noise), tmp_path / f"r{i}", show_progress=False
        )
        trainer.run()
        weights.append(trainer.model.state_dict())
    assert not state_dicts_equal(*weights)


# --- the linear decoder ---------------------------------------------------------------------------------------


def test_linear_decoder_reads_each_future_target_from_the_memory_alone():
    """teacher.decoder=linear: logits for y_t..y_{t+F} from m_t by one linear map per offset; the future inputs
    are not read, and the first offset is the teacher's own next-target prediction."""
    from smtrnn.teacher import LinearDecoder

    cfg = debug_config("delayed_recall", teacher__decoder="linear")
    model, task = build(cfg)
    decoder = model.teacher.decoder
    assert isinstance(decoder, LinearDecoder)
    m = torch.randn(3, cfg.memory.size)
    future = torch.randint(0, task.vocab_size, (3, cfg.teacher.future_len - 1))
    logits = model.teacher.decode(m, future)
    assert logits.shape == (3, cfg.teacher.future_len, task.vocab_size)
    torch.testing.assert_close(logits, model.teacher.decode(m, torch.zeros_like(future)))
    per_offset = decoder.head.weight.view(cfg.teacher.future_len, task.vocab_size, -1)
    torch.testing.assert_close(
        logits[:, 1], m @ per_offset[1].T + decoder.head.bias.view(cfg.teacher.future_len, -1)[1]
    )
    torch.testing.assert_close(model.teacher.predict_next(m), logits[:, 0])


def test_next_labels_are_the_coming_targets_in_order_however_far():
    from smtrnn.teacher import next_targets

    y = torch.tensor([[-1, 4, -1, -1, 7, -1, 2, -1], [-1, -1, -1, -1, -1, -1, -1, 5]])
    ahead = next_targets(y, 2)
    assert ahead[0].tolist() == [[4, 7], [4, 7], [7, 2], [7, 2], [7, 2], [2, -1], [2, -1], [-1, -1]]
    assert ahead[1, :, 0].tolist() == [5] * 8 and (ahead[1, :, 1] == -1).all()


def test_next_labels_decoder_reads_the_coming_answer_from_every_position():
    """teacher.decoder=next-targets, Tf = 1: with one label at the end of each row, the loss is the CE of head(m_t)
    against that label at every position, whatever its distance; a sampled position is one with a label ahead."""
    import torch.nn.functional as F

    cfg = debug_config(
        "retrieval", teacher__decoder="next-targets", teacher__future_len=1, teacher__decoder_positions=0
    )
    model, task = build(cfg)
    teacher = model.teacher
    x, y = batch(task, 12)
    assert (y[:, :-1] < 0).all() and (y[:, -1] >= 0).all()
    with torch.no_grad():
        m = teacher.encode(x)
        loss = teacher.decoder_loss(m, x, y)
        torch.testing.assert_close(teacher.predict_next(m[:, -1]), teacher.decoder.head(m[:, -1]))
    every = F.cross_entropy(teacher.decoder.head(m).flatten(0, 1), y[:, -1:].expand(-1, 12).flatten())
    assert loss.item() == pytest.approx(every.item(), rel=1e-5)
    teacher.decoder_positions = 3
    y[:, :-1], y[:, 5], y[:, -1] = -1, 1, -1  # the last label at position 5
    assert teacher.sample_positions(y).max() <= 5


def test_linear_decoder_trains_the_encoder_through_the_decoder_loss():
    cfg = debug_config("delayed_recall", teacher__decoder="linear")
    model, task = build(cfg)
    x, y = batch(task, 12)
    loss = model.teacher.decoder_loss(model.teacher.encode(x), x, y)
    loss.backward()
    assert model.teacher.encoder.to_memory.weight.grad.abs().sum() > 0
    assert model.teacher.decoder.head.weight.grad.abs().sum() > 0


def test_linear_decoder_loss_does_not_embed_the_future_inputs_it_never_reads():
    """The teacher skips the (B·P, Tf-1, W) embedding of the future inputs for the linear decoder; the loss is the
    masked CE of its per-offset logits, position by position."""
    import torch.nn.functional as F

    cfg = debug_config("delayed_recall", teacher__decoder="linear")
    model, task = build(cfg)
    teacher, window = model.teacher, cfg.teacher.future_len
    x, y = batch(task, 12)
    positions = torch.tensor([[0, 5, 11]] * x.shape[0])
    embedded = []
    hook = teacher.embedding.register_forward_hook(lambda module, args, out: embedded.append(out.shape))
    with torch.no_grad():
        m = teacher.encode(x)
        embedded.clear()
        loss = teacher.decoder_loss(m, x, y, positions=positions)
    hook.remove()
    assert embedded == []
    logits = teacher.decoder.head(m[:, [0, 5, 11]]).unflatten(-1, (window, task.vocab_size))  # (B, 3, Tf, V)
    targets = torch.stack([F.pad(y, (0, window), value=-1)[:, t : t + window] for t in (0, 5, 11)], dim=1)
    expected = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=-1)
    torch.testing.assert_close(loss, expected)


# --- bad values ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("smt.memory_noise", -0.1, "smt.memory_noise must be >= 0"),
        ("smt.dynamics_input_noise", -1, "smt.dynamics_input_noise must be >= 0"),
        ("smt.memory_dropout", 1.0, "smt.memory_dropout must be in [0, 1)"),
        ("teacher.future_input_dropout", -0.5, "teacher.future_input_dropout must be in [0, 1)"),
        ("smt.dynamics_input_noise_final", 2, "smt.dynamics_input_noise_final must be in [0, 1]"),
        ("teacher.decoder", "conv", "unknown teacher.decoder 'conv'; choose from: transformer, linear"),
    ],
)
def test_out_of_range_lever_values_are_refused_naming_the_field(field, value, words, capsys, tmp_path):
    code = main(
        [
            "train",
            "--preset",
            "debug",
            "--steps",
            "1",
            "--quiet",
            "--device",
            "cpu",
            "--set",
            f"{field}={value}",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err
    assert not (tmp_path / "run").exists()


def test_levers_are_refused_with_the_one_transition_reference_recipe():
    cfg = debug_config(
        "retrieval", smt__transitions="one", smt__memory_noise=0.1, smt__teacher_alone=0.0, smt__schedule="joint"
    )
    with pytest.raises(ConfigError, match="smt.memory_noise"):
        validate(cfg)


def test_memory_size_zero_names_the_allowed_values(capsys, tmp_path):
    code = main(["train", "--preset", "debug", "--memory-size", "0", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "positive multiple of memory tokens" in err


def test_the_cli_builds_the_recipe(capsys):
    code = main(
        [
            "train",
            "--preset",
            "recipe",
            "--task",
            "retrieval",
            "--seq-len",
            "16",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--print-config",
        ]
    )
    assert code == 0
    config = json.loads(capsys.readouterr().out)
    validate(RunConfig.from_dict(config))
    assert config["memory"]["width"] == 16 and config["smt"]["memory_noise"] == 0.2


def test_demo_and_compare_use_the_long_range_recipe(capsys, tmp_path, monkeypatch):
    """The demo's two runs are built from the recipe: the configs it hands its trainers, recorded, nothing trained."""
    from smtrnn.cli import make_parser
    from smtrnn.tools import demo

    built = {}

    class Recorder:  # the demo's Trainer, keeping the config instead of training on it
        step, elapsed = 0, 0.0

        def __init__(self, cfg, out, device):
            built[out.name] = cfg

        def run(self):
            return {"rnn_accuracy": 0.0}

    monkeypatch.setattr(demo, "Trainer", Recorder)
    assert make_parser().parse_args(["compare", "--out", str(tmp_path)]).preset == "recipe"
    assert main(["demo", "--budget", "0.2", "--seq-len", "8", "--out", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    assert "preset recipe" in capsys.readouterr().out
    assert sorted(built) == ["bptt", "smt-dmt"]
    for run in ("smt-dmt", "bptt"):
        validate(built[run])
        config = built[run].to_dict()
        assert config["memory"]["width"] == 16 and config["smt"]["memory_noise"] == 0.2
        assert config["smt"]["dynamics_input_noise"] == 0.3 and config["smt"]["dynamics_input_noise_final"] == 0.0


@pytest.mark.parametrize(
    "argv, words",
    [(["--budget", "0"], "--budget must be a positive"), (["--preset", "bogus"], "unknown preset 'bogus'")],
)
def test_demo_bad_budget_or_preset_is_one_line_exit_2(argv, words, capsys, tmp_path):
    assert main(["demo", *argv, "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and not (tmp_path / "demo").exists()


# --- DMT with the teacher still learning -------------------------------------------------------------------------


@pytest.mark.parametrize("teacher_learns", [False, True])
def test_dmt_teacher_learns_routes_gradient_into_the_teacher_only_when_set(teacher_learns):
    from smtrnn.trainer import loss_function

    cfg = debug_config("retrieval", "smt+dmt", dmt__teacher_learns=teacher_learns, smt__schedule="joint-detached")
    validate(cfg)
    model, task = build(cfg)
    x, y = batch(task, cfg.task.seq_len)
    loss, metrics = loss_function(cfg, progress=0.9)(model, x, y)  # inside the DMT share
    loss.backward()
    teacher_grads = [p.grad for p in model.teacher.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in teacher_grads) == teacher_learns
    assert model.rnn.cell.net[0].weight.grad.abs().sum() > 0
    assert ("dmt_dynamics" in metrics and "decoder" in metrics) == teacher_learns


def test_dmt_teacher_learns_needs_a_teacher_and_the_time_parallel_step():
    with pytest.raises(ConfigError, match="dmt.teacher_learns"):
        validate(debug_config("retrieval", "bptt", dmt__teacher_learns=True))
    with pytest.raises(ConfigError, match="time-parallel"):
        validate(debug_config("retrieval", "smt+dmt", dmt__teacher_learns=True, dmt__time_parallel=False))


def test_the_recipes_base_is_the_long_range_rule_with_the_contraction_lever():
    cfg, _ = long_range_base("retrieval")
    assert (cfg.smt.dynamics_input_noise, cfg.smt.dynamics_input_noise_final) == (0.3, 0.0)
    cfg.smt.dynamics_input_noise, cfg.smt.dynamics_input_noise_final = 0.0, 1.0
    assert cfg == long_range("retrieval")


# --- the linear-skip cell ---------------------------------------------------------------------------------------


def test_linear_skip_cell_starts_as_the_residual_mlp_and_is_exact_for_a_shift_of_the_memory():
    """mlp-linear is m' = norm(W m + MLP([m; e])) with W = I at first (the plain residual MLP's m + MLP); with the
    MLP silenced and W a cyclic shift within each memory token, one step moves every float one place, exactly."""
    from smtrnn.cells import LinearMLPCell, MLPCell

    cfg = debug_config("delayed_recall", "smt", rnn__cell="mlp-linear")
    torch.manual_seed(0)
    cell = LinearMLPCell(cfg.memory, cfg.rnn)
    plain = MLPCell(cfg.memory, cfg.rnn)
    plain.net.load_state_dict(cell.mlp.state_dict())
    m = cell.normalize(torch.randn(5, cfg.memory.size))
    e = torch.randn(5, cfg.rnn.embed)
    torch.testing.assert_close(cell(m, e), plain(m, e))
    tokens, width = cfg.memory.tokens, cfg.memory.width
    with torch.no_grad():
        cell.skip.weight.copy_(torch.block_diag(*[torch.roll(torch.eye(width), 1, dims=0)] * tokens))
        cell.mlp[-1].weight.zero_()
        cell.mlp[-1].bias.zero_()
    shifted = torch.roll(m.unflatten(-1, (tokens, width)), 1, dims=-1).flatten(-2)
    torch.testing.assert_close(cell(m, e), shifted)


# --- the gated MLP cell -----------------------------------------------------------------------------------------


def test_gated_mlp_cell_holds_the_memory_exactly_when_its_gate_closes_and_writes_the_mlp_when_it_opens():
    """mlp-gated is m' = norm((1 - z) m + z MLP([m; e])), z = σ(W [m; e] + b): a closed gate (z -> 0) returns the
    memory unchanged whatever the input, an open one (z -> 1) the normalized MLP output, and z = 1/2 the midpoint."""
    from smtrnn.cells import GatedMLPCell

    cfg = debug_config("assoc_recall", "smt", rnn__cell="mlp-gated")
    torch.manual_seed(0)
    cell = GatedMLPCell(cfg.memory, cfg.rnn)
    m = cell.normalize(torch.randn(5, cfg.memory.size))
    e = torch.randn(5, cfg.rnn.embed)
    both = torch.cat([m, e], dim=-1)
    with torch.no_grad():
        cell.gate.weight.zero_()
        cell.gate.bias.fill_(-100.0)
        torch.testing.assert_close(cell(m, e), m)
        torch.testing.assert_close(cell(m, torch.randn(5, cfg.rnn.embed)), m)
        cell.gate.bias.fill_(100.0)
        torch.testing.assert_close(cell(m, e), cell.normalize(cell.mlp(both)))
        cell.gate.bias.zero_()
        torch.testing.assert_close(cell(m, e), cell.normalize((m + cell.mlp(both)) / 2))
    assert type(build(cfg)[0].rnn.cell) is GatedMLPCell


def test_last_input_head_adds_the_ce_of_each_memorys_own_input_to_the_teacher_objective():
    """teacher.last_input_weight = λ_in > 0: smt_loss adds λ_in · CE(head(m_t), x_t), which trains the encoder;
    off (0), the teacher has no such head and the objective is unchanged."""
    import torch.nn.functional as F

    cfg = debug_config("retrieval", teacher__last_input_weight=0.5, smt__schedule="joint")
    model, task = build(cfg)
    x, y = batch(task, 12)
    torch.manual_seed(0)
    loss, metrics = smt_loss(model, x, y, cfg.smt)
    m = model.teacher.encode(x)
    expected = F.cross_entropy(model.teacher.last_input_head(m).flatten(0, 1), x.flatten())
    assert metrics["last_input"].item() == pytest.approx(expected.item(), rel=1e-5)
    model.zero_grad()
    (0.5 * model.teacher.last_input_loss(m, x)).backward()
    assert model.teacher.encoder.to_memory.weight.grad.abs().sum() > 0
    off, _ = build(debug_config("retrieval"))
    assert off.teacher.last_input_head is None
    assert "last_input" not in smt_loss(off, x, y, cfg.smt)[1]


def test_last_inputs_head_reads_each_of_the_memorys_last_n_inputs_and_nothing_before_the_row():
    """teacher.last_inputs = n: the head's n maps read x_t, x_{t-1}, .., x_{t-n+1} from m_t, the loss their mean CE
    over the positions that have that input (offset j is not read at t < j); n = 1 is the single last-input head."""
    import torch.nn.functional as F

    cfg = debug_config("retrieval", teacher__last_input_weight=0.5, teacher__last_inputs=3)
    model, task = build(cfg)
    x, _ = batch(task, 12)
    m = model.teacher.encode(x)
    logits = model.teacher.last_input_head(m).unflatten(-1, (3, -1))  # (B, T, 3, V)
    terms = [
        F.cross_entropy(logits[:, j:, j].flatten(0, 1), x[:, : x.shape[1] - j].flatten(), reduction="sum")
        for j in range(3)
    ]
    count = sum(x[:, : x.shape[1] - j].numel() for j in range(3))
    expected = sum(terms) / count
    assert model.teacher.last_input_loss(m, x).item() == pytest.approx(expected.item(), rel=1e-5)
    one, _ = build(debug_config("retrieval", teacher__last_input_weight=0.5))
    assert one.teacher.last_input_head.out_features == model.teacher.last_input_head.out_features // 3
    m1 = one.teacher.encode(x)
    plain = F.cross_entropy(one.teacher.last_input_head(m1).flatten(0, 1), x.flatten())
    assert one.teacher.last_input_loss(m1, x).item() == pytest.approx(plain.item(), rel=1e-5)


def test_last_inputs_refuses_a_count_below_one_and_has_no_head_without_its_weight():
    with pytest.raises(ConfigError, match="teacher.last_inputs must be >= 1, got 0"):
        validate(debug_config("retrieval", teacher__last_inputs=0))
    cfg = debug_config("retrieval", teacher__last_inputs=4)  # a preset's count, its head turned off by weight 0
    validate(cfg)
    assert build(cfg)[0].teacher.last_input_head is None
