"""Shared fixtures: tiny debug configs and trained debug runs, reused across the test files.

The models here are a few thousand parameters; on a busy 2-core machine, intra-op threads only add contention
(a BPTT step is 30x slower with 2 threads than with 1 when another process holds a core), so tests run on one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from support import debug_config

from smtrnn.trainer import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smt_run(tmp_path_factory) -> tuple[Path, Trainer]:
    """A finished 6-step SMT debug run (retrieval): its directory (do not modify: copy it) and its Trainer."""
    out = tmp_path_factory.mktemp("smt") / "run"
    trainer = Trainer(debug_config("retrieval", "smt"), out, show_progress=False)
    trainer.run()
    return out, trainer


@pytest.fixture(scope="session")
def bptt_run(tmp_path_factory) -> tuple[Path, Trainer]:
    out = tmp_path_factory.mktemp("bptt") / "run"
    trainer = Trainer(debug_config("retrieval", "bptt"), out, show_progress=False)
    trainer.run()
    return out, trainer


@pytest.fixture
def smt_run_copy(smt_run, tmp_path) -> Path:
    """A private copy of the SMT run directory that a test may damage."""
    return Path(shutil.copytree(smt_run[0], tmp_path / "run"))
