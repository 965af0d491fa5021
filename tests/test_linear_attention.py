"""The linear-cost encoder (`teacher.encoder=linear`): its two attentions equal their quadratic definitions, it is
causal exactly (changing x_t leaves m_<t unchanged), a prefix encoded alone gives the same memories, and SMT, DMT
and evaluation run on it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support import debug_config

from smtrnn.data.tasks import make_task
from smtrnn.dmt import dmt_loss
from smtrnn.errors import ConfigError
from smtrnn.linear_attention import (
    LinearCostTransformer,
    causal_linear_attention,
    local_attention,
    taylor_features,
)
from smtrnn.model import Model
from smtrnn.smt import smt_loss


def test_the_taylor_features_give_exp_to_second_order():
    q, k = torch.randn(5, 4), torch.randn(5, 4)
    u = (q * k).sum(-1) / 2  # q·k/√f, f = 4
    assert torch.allclose((taylor_features(q) * taylor_features(k)).sum(-1), 1 + u + u**2 / 2, atol=1e-5)
    assert taylor_features(q).shape == (5, 1 + 4 + 16)


@pytest.mark.parametrize("chunk", [1, 4, 8])
def test_chunkwise_linear_attention_is_the_masked_quadratic_form(chunk):
    q, k, v = torch.randn(2, 3, 24, 4), torch.randn(2, 3, 24, 4), torch.randn(2, 3, 24, 5)
    scores = (taylor_features(q) @ taylor_features(k).transpose(-1, -2)).tril()
    expected = scores @ v / scores.sum(-1, keepdim=True)
    assert torch.allclose(causal_linear_attention(q, k, v, chunk), expected, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 4, 8])
def test_the_write_gate_weights_each_key_in_the_quadratic_form(chunk):
    q, k, v = torch.randn(2, 3, 24, 4), torch.randn(2, 3, 24, 4), torch.randn(2, 3, 24, 5)
    gate = torch.rand(2, 3, 24) + 0.01
    scores = (taylor_features(q) @ taylor_features(k).transpose(-1, -2)).tril() * gate[:, :, None, :]
    expected = scores @ v / scores.sum(-1, keepdim=True)
    assert torch.allclose(causal_linear_attention(q, k, v, chunk, gate), expected, atol=1e-5)


def test_a_closed_gate_leaves_the_one_open_position_as_the_whole_read():
    """Ungated, every key keeps a share (the kernel is at least 1/2): one needle among 1000 positions is a few percent
    of the read. Gated shut elsewhere, the read after the needle is the needle's value. (At a closed gate of 1e-7
    the 990 shut keys still took up to ~1e-3 of the read in 13 of 200 draws; 1e-9 keeps it under 2e-5.)"""
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 1, 1000, 4), torch.randn(1, 1, 1000, 4), torch.randn(1, 1, 1000, 3)
    gate = torch.full((1, 1, 1000), 1e-9)
    gate[..., 10] = 1.0
    out = causal_linear_attention(q, k, v, 8, gate)
    assert torch.allclose(out[0, 0, 10:], v[0, 0, 10].expand(990, 3), atol=1e-3)
    ungated = causal_linear_attention(q, k, v, 8)
    assert (ungated[0, 0, -1] - v[0, 0, 10]).abs().max() > 0.1


@pytest.mark.parametrize("window", [1, 4, 8])
def test_local_attention_is_softmax_over_the_last_window_positions(window):
    q, k, v = (torch.randn(2, 3, 24, 6) for _ in range(3))
    t, s = torch.arange(24)[:, None], torch.arange(24)[None, :]
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=(s <= t) & (s > t - window))
    assert torch.allclose(local_attention(q, k, v, window), expected, atol=1e-5)


def test_the_linear_encoder_is_causal_and_a_prefix_alone_gives_the_same_memories():
    torch.manual_seed(0)
    model = LinearCostTransformer(width=32, depth=2, heads=4, window=8)
    for block in model.blocks:  # a gate that reads its position's input
        torch.nn.init.normal_(block.global_gate.weight)
    x = torch.randn(2, 30, 32)
    out = model(x)
    for t in (0, 7, 8, 17, 29):
        changed = x.clone()
        changed[:, t] += 1.0
        moved = model(changed)
        assert torch.equal(moved[:, :t], out[:, :t])  # exactly: no position before t reads x_t
        assert not torch.allclose(moved[:, t], out[:, t])
    for length in (1, 8, 13):  # other paddings, the same memories
        assert torch.allclose(model(x[:, :length]), out[:, :length], atol=1e-5)


def test_the_first_memory_reads_the_whole_prefix_past_the_window():
    """The global attention reaches back past the window: the last position depends on the first input."""
    torch.manual_seed(0)
    model = LinearCostTransformer(width=32, depth=1, heads=4, window=4)
    x = torch.randn(1, 40, 32, requires_grad=True)
    model(x)[0, -1].sum().backward()
    assert x.grad[0, 0].abs().sum() > 0 and x.grad[0, 30].abs().sum() > 0


def linear_teacher_model(task_name: str = "retrieval"):
    cfg = debug_config(task_name, "smt+dmt")
    cfg.teacher.encoder, cfg.teacher.window = "linear", 4
    task = make_task(cfg.task.name, **cfg.task.params)
    torch.manual_seed(0)
    return cfg, task, Model.for_run(cfg, task.vocab_size)


def test_smt_and_dmt_train_on_the_linear_encoder():
    cfg, task, model = linear_teacher_model()
    x, y = task.sample(4, 21, torch.Generator().manual_seed(0))
    cfg.smt.schedule = "joint"
    loss, _ = smt_loss(model, x, y, cfg.smt)
    loss.backward()
    encoder = model.teacher.encoder.transformer
    assert all(p.grad is not None for p in encoder.parameters())
    loss, _ = dmt_loss(model, x, y, cfg.dmt)
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="no KV cache"):
        model.teacher.encode_next(x[:, 0], model.teacher.new_cache())


def test_a_run_with_the_linear_encoder_trains_and_resumes_from_its_checkpoint(tmp_path):
    from smtrnn.checkpoint import load_model
    from smtrnn.trainer import train

    cfg, _, _ = linear_teacher_model()
    cfg.train.steps = 3
    result = train(cfg, tmp_path / "run")
    assert 0.0 <= result["teacher_accuracy"] <= 1.0
    loaded_cfg, model = load_model(tmp_path / "run")
    assert loaded_cfg.teacher.encoder == "linear"
    assert isinstance(model.teacher.encoder.transformer, LinearCostTransformer)
