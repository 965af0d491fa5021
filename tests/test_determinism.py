"""A seed fixes a run: the same seed gives the same logged losses and bit-identical weights; another seed does
not. Both methods, with periodic evaluation on (evaluation must not disturb the training streams)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from support import debug_config, state_dicts_equal

from smtrnn.checkpoint import METRICS_FILE, WEIGHTS_FILE, checkpoint_dir
from smtrnn.trainer import TIMING_FIELDS, train

STEPS = 10


def run(out: Path, method: str, seed: int) -> tuple[list[dict], dict]:
    """Train into `out` -> (the logged training metrics without wall-clock fields, the saved weights)."""
    cfg = debug_config("retrieval", method, steps=STEPS, train__seed=seed, train__eval_every=5)
    train(cfg, out, show_progress=False)
    records = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    losses = [{k: v for k, v in r.items() if k not in (*TIMING_FIELDS, "eval")} for r in records if "eval" not in r]
    return losses, load_file(str(checkpoint_dir(out) / WEIGHTS_FILE))


@pytest.mark.parametrize("method", ["smt", "bptt"])
def test_same_seed_same_run(tmp_path, method):
    losses_a, weights_a = run(tmp_path / "a", method, seed=3)
    losses_b, weights_b = run(tmp_path / "b", method, seed=3)
    assert len(losses_a) == STEPS
    assert losses_a == losses_b
    assert state_dicts_equal(weights_a, weights_b)


@pytest.mark.parametrize("method", ["smt", "bptt"])
def test_different_seed_different_run(tmp_path, method):
    losses_a, weights_a = run(tmp_path / "a", method, seed=3)
    losses_b, weights_b = run(tmp_path / "b", method, seed=4)
    assert [r["loss"] for r in losses_a] != [r["loss"] for r in losses_b]
    assert not state_dicts_equal(weights_a, weights_b)
