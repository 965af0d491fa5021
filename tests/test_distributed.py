"""Data parallelism on CPU (gloo): gradients averaged by DistributedDataParallel equal the whole batch's (also
across steps that use different parameters, and after a step that skipped its backward), a torchrun run writes one
run directory, a resume with another world size is refused; the precision flags; gpu_check's tiny mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from support import debug_config

from smtrnn import distributed
from smtrnn.bptt import bptt_loss
from smtrnn.checkpoint import load_trainer_state
from smtrnn.cli import main
from smtrnn.config import validate
from smtrnn.data.tasks import make_task
from smtrnn.errors import ConfigError
from smtrnn.model import Model
from smtrnn.smt import smt_loss
from smtrnn.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)
ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def test_the_global_batch_must_divide_among_the_ranks():
    assert distributed.per_rank_batch(16, 2) == 8
    with pytest.raises(ConfigError, match="optim.batch_size=15 must be divisible by the world size 2"):
        distributed.per_rank_batch(15, 2)


def _losses(cfg):
    """Each method's loss as (model, x, y) -> scalar; SMT without its two sampled terms (decoder positions and
    uniformity pairs are drawn at random, so they match the whole batch's only in expectation), the dynamics loss
    reaching the encoder; and a teacher-only loss, as in SMT's warm-up, where the RNN's parameters get no gradient."""
    cfg.smt.decoder_weight, cfg.smt.uniformity_weight, cfg.smt.schedule = 0.0, 0.0, "joint"
    return {
        "bptt": lambda m, x, y: bptt_loss(m, x, y, cfg.bptt)[0],
        "smt": lambda m, x, y: smt_loss(m, x, y, cfg.smt, rnn_active=True)[0],
        "smt-warmup": lambda m, x, y: m.teacher.encode(x)[..., :3].sum(-1).mean(),
    }


def _model(cfg) -> Model:
    torch.manual_seed(0)
    return Model.for_run(cfg, make_task("retrieval", **cfg.task.params).vocab_size)


def _gradients(method: str, x, y, rank: int | None = None, world: int = 1, skip_first: bool = False) -> dict:
    """Gradients of the method's loss at the seed-0 init, on x, y; with a rank, through DistributedDataParallel on
    that rank's slice of the batch (after a forward whose backward was skipped, when `skip_first`)."""
    cfg = debug_config("retrieval", method.split("-")[0])
    loss = _losses(cfg)[method]
    model = _model(cfg)
    step = distributed.Objective(model)
    if rank is not None:
        share = x.shape[0] // world
        x, y = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
        step = distributed.data_parallel(model, torch.device("cpu"), find_unused=method.startswith("smt"))
        assert isinstance(step, torch.nn.parallel.DistributedDataParallel)
        if skip_first:
            step(loss, x, y)  # a step every rank skips (a non-finite loss somewhere): no backward
    step(loss, x, y).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _rank_worker(rank: int, world: int, rendezvous: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        cfg = debug_config("retrieval")
        x, y = make_task("retrieval", **cfg.task.params).sample(8, cfg.task.seq_len, torch.Generator().manual_seed(1))
        for method, skip_first in (("bptt", False), ("smt", False), ("smt-warmup", False), ("smt", True)):
            averaged = _gradients(method, x, y, rank, world, skip_first)
            whole = _gradients(method, x, y)
            alone = _gradients(method, x[:4] if rank == 0 else x[4:], y[:4] if rank == 0 else y[4:])
            assert averaged.keys() == whole.keys() and len(whole) > 5, method
            for name in whole:
                torch.testing.assert_close(averaged[name], whole[name], rtol=1e-4, atol=1e-6, msg=f"{method} {name}")
            # The check can fail: one rank's own half-batch gradient is not the whole batch's.
            assert any(not torch.allclose(alone[n], whole[n], rtol=1e-3, atol=1e-5) for n in whole), method
            if method.startswith("smt"):
                assert any(n.startswith("teacher.encoder") for n in whole)  # the all-reduce covers the teacher too
            if method == "smt-warmup":  # unused on every rank: left without a gradient, as in one process
                assert not any(n.startswith("rnn.") for n in averaged)
            everyone = distributed.gather_objects(averaged)
            assert all(torch.equal(everyone[0][n], everyone[1][n]) for n in whole)  # every rank steps alike
    except BaseException:
        dist.destroy_process_group()
        raise
    # A finished rank leaves as the CLI's do: both ranks done with the group, the group destroyed, no interpreter
    # finalization (where gloo's threads can abort a finished rank with SIGABRT on busy cores).
    distributed.barrier()
    dist.destroy_process_group()
    distributed.leave(0)


@needs_gloo
def test_two_ranks_with_half_batches_average_to_the_whole_batch_gradient(tmp_path):
    torch.multiprocessing.spawn(_rank_worker, args=(2, f"file://{tmp_path / 'rendezvous'}"), nprocs=2)


def _torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--standalone",
        "-m",
        "smtrnn",
        *args,
    ]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
@needs_gloo
def test_torchrun_writes_one_run_from_rank_0_and_refuses_a_resume_on_another_world_size(tmp_path, capsys):
    out = tmp_path / "run"
    proc = _torchrun(
        "train",
        "--preset",
        "debug",
        "--steps",
        "3",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--quiet",
        "--set",
        "train.log_every=1",
        "--set",
        "train.save_every=2",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["labelled_tokens"] > 0  # one evaluation printed, by rank 0 alone
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "latest", "metrics.jsonl"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]  # each step logged once, not once per rank
    assert sum("eval" in r for r in records) == 1
    state = load_trainer_state(out)
    assert state["world_size"] == 2 and len(state["rank_rngs"]) == 2
    assert not torch.equal(state["rank_rngs"][0]["data_rng"], state["rank_rngs"][1]["data_rng"])  # own streams

    assert (
        main(
            ["train", "--resume", "--preset", "debug", "--steps", "4", "--out", str(out), "--device", "cpu", "--quiet"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "world size 2" in err and "world size 1" in err


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
@needs_gloo
@pytest.mark.parametrize("method", ["bptt", "smt+dmt"])
def test_torchrun_trains_every_method(tmp_path, method):
    """BPTT (every parameter used every step) and SMT then DMT (the teacher left unused once DMT starts) under DDP."""
    out = tmp_path / "run"
    proc = _torchrun(
        "train",
        "--preset",
        "debug",
        "--method",
        method,
        "--steps",
        "4",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--quiet",
        "--set",
        "train.log_every=1",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)


@pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="torch.compile on CPU generates C++ (needs a compiler)",
)
def test_compile_trains_like_eager_on_cpu(tmp_path):
    """train.compile=true compiles the teacher's and the RNN's modules in place (inductor's C++ backend on CPU): the
    same losses as eager to float tolerance, graphs actually compiled, checkpoint names unchanged."""
    from torch._dynamo.utils import counters

    losses = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        counters.clear()
        cfg = debug_config(steps=3)
        cfg.train.compile = compiled
        trainer = Trainer(cfg, tmp_path / f"compiled-{compiled}", show_progress=False)
        losses[compiled] = [trainer.train_step()["loss"] for _ in range(3)]
        assert (counters["stats"]["unique_graphs"] > 0) == compiled
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-4, atol=1e-5)
    trainer.save()
    assert not any("_orig_mod" in k for k in trainer.model.state_dict())
    assert load_trainer_state(tmp_path / "compiled-True")["step"] == 3


def test_precision_and_compile_validate():
    cfg = debug_config()
    cfg.train.precision = "fp16"
    with pytest.raises(ConfigError, match="train.precision"):
        validate(cfg)
    cfg.train.precision, cfg.train.compile = "bf16", True
    validate(cfg)


def test_bf16_on_cpu_is_refused_in_one_line(tmp_path, capsys):
    code = main(
        [
            "train",
            "--preset",
            "debug",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
            "--quiet",
            "--set",
            "train.precision=bf16",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "bf16" in err and "cpu" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast and torch.compile are CUDA paths")
def test_bf16_and_compile_train_on_cuda(tmp_path):
    cfg = debug_config(steps=3)
    cfg.train.precision, cfg.train.compile = "bf16", True
    trainer = Trainer(cfg, tmp_path / "run", "cuda", show_progress=False)
    trainer.run()
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # fp32 master weights
    keys = set(trainer.model.state_dict())
    assert not any("_orig_mod" in k for k in keys)  # compiled in place: checkpoints keep their names


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_gpu_check_tiny_prints_one_json():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["device"] == "cpu" and len(report["throughput"]) == 2
    assert all(row["bptt_transitions_per_s"] > 0 for row in report["throughput"])
    assert len(report["training"]["losses"]) > 1 and report["training"]["eval"]["labelled_tokens"] > 0
    assert report["training"]["steps"] == report["training"]["max_steps"] == 10


@pytest.mark.slow  # a subprocess (torchrun, a killed run, the CLI): -m 'not slow' skips it
def test_gpu_check_training_stops_at_the_budget():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--budget", "0.01"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    training = json.loads(proc.stdout)["training"]
    assert 1 <= training["steps"] < training["max_steps"]


def test_leave_flushes_what_was_written_and_exits_with_the_code():
    """`distributed.leave` ends a finished rank without interpreter finalization (where gloo's threads can abort
    it), and loses nothing already printed."""
    script = (
        "import sys\nfrom smtrnn import distributed\nprint('result', end='')\nsys.stderr.write('note')\n"
        "distributed.leave(3)\nprint('never')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "result", "note")
