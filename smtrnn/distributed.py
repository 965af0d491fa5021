"""Data parallelism under torchrun: every rank trains the same model on its own share of the batch, and
DistributedDataParallel averages the gradients across ranks during backward (bucketed all-reduces overlapping the
backward pass). With equal per-rank batches and losses that are means over the batch, the result is the gradient of
the whole batch (tests/test_distributed.py checks it).

DDP hooks a module's forward, but the loss functions call the model's parts (`teacher.encode`, `rnn.step`,
`rnn.readout`, ...), never `model.forward`. `Objective` makes the training loss itself the forward of a module that
holds the model, and that module is what DDP wraps: every training step passes through DDP's forward. Which
parameters receive gradients depends on the method and on the training progress (the teacher alone during SMT's
warm-up, the RNN alone in DMT), so for the methods with a teacher DDP looks for unused parameters on every step.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK (and the rendezvous address); without them, or with WORLD_SIZE=1,
every helper here is a no-op and a run is the single-process run it always was.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from smtrnn.errors import ConfigError


def world_size() -> int:
    """The number of ranks: the process group's size, else torchrun's WORLD_SIZE, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0: the one that logs, evaluates and writes checkpoints."""
    return rank() == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init(device: torch.device) -> torch.device:
    """Under torchrun with WORLD_SIZE > 1: join the process group (nccl on CUDA, gloo on CPU) and return this rank's
    device (cuda:LOCAL_RANK on CUDA). Otherwise return `device` unchanged."""
    if world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise ConfigError(
            f"WORLD_SIZE={world_size()} asks for data parallelism, but this torch has no torch.distributed"
        )
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    elif device.type == "cpu":
        dist.init_process_group("gloo")
    else:
        raise ConfigError(f"data parallelism runs on cuda (nccl) or cpu (gloo), not {device.type}")
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave(code: int) -> None:
    """End this rank's process now with `code`, once its run is finished and the group destroyed: stdio is flushed
    and interpreter finalization is skipped. There, gloo's worker threads can abort a rank that has finished
    (SIGABRT, "terminate called without an active exception"; seen on busy CPU cores), which turns a finished run
    into a failed torchrun."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def per_rank_batch(batch_size: int, world: int) -> int:
    """optim.batch_size is the global batch: each of `world` ranks draws batch_size / world sequences."""
    if batch_size % world:
        raise ConfigError(
            f"optim.batch_size={batch_size} must be divisible by the world size {world} "
            f"(each rank draws an equal share)"
        )
    return batch_size // world


class Objective(nn.Module):
    """`Objective(model)(loss_fn, *batch)` is `loss_fn(model, *batch)`: a training loss as a module's forward, so
    DistributedDataParallel sees every step. It holds the model; checkpoints save the model itself."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, loss_fn, *batch):
        return loss_fn(self.model, *batch)


def data_parallel(model: nn.Module, device: torch.device, find_unused: bool) -> nn.Module:
    """The module a training step calls: `Objective(model)`, wrapped in DistributedDataParallel when there are
    several ranks (which also broadcasts rank 0's weights and buffers to every rank, once, here). `find_unused`:
    some steps leave parameters without a gradient (a teacher's methods); DDP then searches the graph each step."""
    objective = Objective(model)
    if not active():
        return objective
    return nn.parallel.DistributedDataParallel(
        objective, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=find_unused
    )


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (so a step one rank skips is skipped by all: none hangs)."""
    if not active():
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def agree_progress(elapsed: float, stop: bool, device: torch.device) -> tuple[float, bool]:
    """Rank 0's elapsed training time and whether any rank was asked to stop, on every rank: the schedules,
    `done()` and the stop then decide alike everywhere, so all ranks run the same number of steps."""
    if not active():
        return elapsed, stop
    value = torch.tensor([elapsed if is_main() else 0.0, float(stop)], dtype=torch.float64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return float(value[0]), bool(value[1])


def gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] without a process group)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()
