"""Helpers shared by the test files (fixtures live in conftest.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from smtrnn.config import RunConfig
from smtrnn.presets import debug

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def debug_config(task: str = "retrieval", method: str = "smt", steps: int = 6, **sections) -> RunConfig:
    """`debug(task)` with the method and step count set, logging every step, on CPU; keyword overrides are
    spelled section__field, e.g. memory__tokens=3."""
    cfg = debug(task)
    cfg.train.method, cfg.train.steps, cfg.train.log_every, cfg.train.device = method, steps, 1, "cpu"
    for name, value in sections.items():
        section, field = name.split("__")
        setattr(getattr(cfg, section), field, value)
    return cfg


def state_dicts_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run directory, by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(Path(run_dir).iterdir()) if p.is_file()}


def load_benchmark(name: str):
    """The module of benchmarks/NAME.py, loaded from its file (benchmarks/ is not a package)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmark scripts import their shared `core` module
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
