"""Data parallelism under torchrun: every rank trains the same model on its own share of the batch, and the
gradients are averaged across ranks before each optimizer step.

Why not DistributedDataParallel: DDP hooks `model.forward`, and our loss functions never call it; they call the
parts (`model.teacher.encode`, `model.rnn.step`, `model.rnn.readout`, ...), which DDP's forward hooks would not see.
`average_gradients` does what DDP's reducer does, explicitly: after `backward()`, one all-reduce of every gradient
(flattened into one buffer), divided by the world size. With equal per-rank batches and losses that are means over
the batch, the result is the gradient of the whole batch (tests/test_distributed.py checks it).

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK (and the rendezvous address); without them, or with WORLD_SIZE=1,
every helper here is a no-op and a run is the single-process run it always was.
"""

from __future__ import annotations

import os

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
        raise ConfigError(f"WORLD_SIZE={world_size()} asks for data parallelism, but this torch has no "
                          "torch.distributed")
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


def per_rank_batch(batch_size: int, world: int) -> int:
    """optim.batch_size is the global batch: each of `world` ranks draws batch_size / world sequences."""
    if batch_size % world:
        raise ConfigError(f"optim.batch_size={batch_size} must be divisible by the world size {world} "
                          f"(each rank draws an equal share)")
    return batch_size // world


def broadcast_parameters(module: nn.Module) -> None:
    """Make every rank start from rank 0's weights (and buffers), as DDP does at construction."""
    if not active():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(params: list[nn.Parameter]) -> None:
    """Replace each .grad by its mean over ranks: one all-reduce of all gradients flattened into one buffer.

    Only parameters that have a gradient take part: which ones do is decided by the method and the training
    progress, which every rank shares (the trainer keeps progress in step across ranks), so all ranks pass the
    same list in the same order. Non-finite entries stay non-finite in the sum, so every rank sees the same
    verdict on the averaged gradient.
    """
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for grad, chunk in zip(grads, flat.split([g.numel() for g in grads])):
        grad.copy_(chunk.view_as(grad))


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
