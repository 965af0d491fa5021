"""The training loop shared by every method: AdamW, warm-up then constant or cosine learning rate, gradient
clipping, JSONL metrics, periodic evaluation of the RNN alone, checkpoints, and an optional wall-clock budget.

Schedules follow *progress* = max(step / steps, elapsed / max_seconds), so a run bounded by wall-clock (the fair
way to compare SMT with BPTT) still warms up, stages and anneals over its whole budget.
"""

from __future__ import annotations

import json
import math
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from smtrnn.bptt import bptt_loss
from smtrnn.checkpoint import (METRICS_FILE, has_checkpoint, load_trainer_state, load_weights, read_config,
                               save_checkpoint)
from smtrnn.config import TEACHER_METHODS, OptimConfig, RunConfig, flatten, validate
from smtrnn.dmt import dmt_loss, dmt_sequential_loss
from smtrnn.errors import CheckpointError, SmtrnnError
from smtrnn.evaluate import evaluate
from smtrnn.model import Model
from smtrnn.smt import smt_loss, smt_one_transition_loss
from smtrnn.tasks import make_task


class TrainingError(SmtrnnError):
    """Training cannot go on (a non-finite loss)."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda, else mps, else cpu; any other name is passed to torch."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise SmtrnnError(f"unknown device '{name}'") from exc
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": torch.backends.mps.is_available(),
    }.get(device.type, False)
    if not available:
        raise SmtrnnError(f"device '{name}' is not available on this machine")
    return device


def make_optimizer(model: Model, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms, biases or the empty memory)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def learning_rate(cfg: OptimConfig, progress: float) -> float:
    if cfg.warmup and progress < cfg.warmup:
        return cfg.lr * max(progress / cfg.warmup, 1e-3)
    if cfg.schedule == "cosine":
        rest = (progress - cfg.warmup) / max(1.0 - cfg.warmup, 1e-9)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(rest, 1.0)))
    return cfg.lr


def sequence_length(cfg: RunConfig, progress: float) -> int:
    """The training length at this point: the curriculum's (start, 2·start, ... up to T, in equal stages over the
    first curriculum_fraction of training), else T. The RNN is length-agnostic; the curriculum lets a teacher (or a
    BPTT learner) find a long-range rule on short sequences first."""
    full, start = cfg.task.seq_len, cfg.train.curriculum_start
    if not start or start >= full or progress >= cfg.train.curriculum_fraction:
        return full
    stages = math.ceil(math.log2(full / start)) + 1
    stage = int(stages * progress / cfg.train.curriculum_fraction)
    return min(full, start * 2 ** stage)


def loss_function(cfg: RunConfig, progress: float) -> Callable:
    """The method's loss at this point of training, bound to its config: (model, x, y) -> (loss, metrics).

    smt+dmt spends the first 1 - dmt.fraction of training on SMT (with its own warm-up inside that share) and the
    rest on DMT.
    """
    method = cfg.train.method
    if method == "bptt":
        return partial(bptt_loss, cfg=cfg.bptt)
    smt_share = {"smt": 1.0, "smt+dmt": 1.0 - cfg.dmt.fraction, "dmt": 0.0}[method]
    if progress < smt_share:
        if cfg.smt.transitions == "one":
            return partial(smt_one_transition_loss, cfg=cfg.smt)
        return partial(smt_loss, cfg=cfg.smt, rnn_active=progress / smt_share >= cfg.smt.teacher_warmup)
    return partial(dmt_loss if cfg.dmt.time_parallel else dmt_sequential_loss, cfg=cfg.dmt)


class Trainer:
    """Owns one run: its model, optimizer, data stream and run directory."""

    def __init__(self, cfg: RunConfig, out_dir: str | Path, device: torch.device | str = "cpu",
                 resume: bool = False, show_progress: bool = True):
        validate(cfg)
        self.cfg, self.out_dir, self.device = cfg, Path(out_dir), torch.device(device)
        self.show_progress = show_progress
        if has_checkpoint(self.out_dir) and not resume:
            raise CheckpointError(f"{self.out_dir} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
        self.task = make_task(cfg.task.name, **cfg.task.params)
        torch.manual_seed(cfg.train.seed)
        self.data_generator = torch.Generator().manual_seed(cfg.train.seed)
        self.model = Model(cfg, self.task.vocab_size).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg.optim)
        self.step, self.elapsed = 0, 0.0
        if resume and has_checkpoint(self.out_dir):
            self._resume()
        elif cfg.train.init:
            self._start_from(cfg.train.init)

    def _start_from(self, init_dir: str) -> None:
        """Load the teacher and RNN of a finished SMT run (the start of DMT); its architecture must match."""
        saved, _ = read_config(init_dir)
        if saved.train.method not in TEACHER_METHODS:
            raise CheckpointError(f"--init {init_dir} is a {saved.train.method} run; DMT needs an SMT run's teacher")
        ours, theirs = flatten(self.cfg.to_dict()), flatten(saved.to_dict())
        for name in ours:
            if name == "task.seq_len":  # DMT may roll out longer (or shorter) sequences than SMT saw
                continue
            if name.split(".")[0] in ("task", "memory", "teacher", "rnn") and ours[name] != theirs[name]:
                raise CheckpointError(f"--init {init_dir} has {name}={theirs[name]!r}, this run {name}={ours[name]!r}")
        load_weights(init_dir, self.model)

    def _resume(self) -> None:
        saved, _ = read_config(self.out_dir)
        if _identity(saved) != _identity(self.cfg):
            raise CheckpointError(f"{self.out_dir} was trained with a different config; resume with the same one")
        load_weights(self.out_dir, self.model)
        state = load_trainer_state(self.out_dir)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        torch.set_rng_state(state["torch_rng"])
        self.data_generator.set_state(state["data_rng"])

    def progress(self) -> float:
        budget = self.cfg.train.max_seconds
        by_time = self.elapsed / budget if budget else 0.0
        return min(1.0, max(self.step / self.cfg.train.steps, by_time))

    def done(self) -> bool:
        return self.progress() >= 1.0

    def train_step(self) -> dict:
        """One optimizer step of the configured method; returns its metrics."""
        cfg = self.cfg
        progress = self.progress()
        lr = learning_rate(cfg.optim, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        length = sequence_length(cfg, progress)
        x, y = (t.to(self.device) for t in self.task.sample(cfg.optim.batch_size, length, self.data_generator))
        loss, metrics = loss_function(cfg, progress)(self.model, x, y)
        if not math.isfinite(metrics["loss"]):
            terms = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            raise TrainingError(f"non-finite loss at step {self.step}: {terms}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip or float("inf"))
        self.optimizer.step()
        self.step += 1
        return metrics | {"lr": lr, "grad_norm": float(grad_norm), "seq_len": length}

    def evaluate(self) -> dict:
        cfg = self.cfg
        return evaluate(self.model, self.task, cfg.task.seq_len, cfg.train.eval_batches, cfg.optim.batch_size)

    def save(self) -> None:
        state = {"optimizer": self.optimizer.state_dict(), "step": self.step, "elapsed": self.elapsed,
                 "torch_rng": torch.get_rng_state(), "data_rng": self.data_generator.get_state()}
        save_checkpoint(self.out_dir, self.cfg, self.model, state)

    def _log(self, record: dict) -> None:
        with open(self.out_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def run(self) -> dict:
        """Train until the step or time budget is spent, save, and return the final evaluation."""
        cfg = self.cfg.train
        self.out_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=None if self.show_progress else True,
                   desc=f"{cfg.method} {self.cfg.task.name}", dynamic_ncols=True)
        next_timed_eval = cfg.eval_every_seconds  # learning curves against training time (evaluation not counted)
        while not self.done():
            start = time.perf_counter()
            metrics = self.train_step()
            self.elapsed += time.perf_counter() - start
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.done():
                bar.set_postfix(loss=f"{metrics['loss']:.3f}")
                self._log({"step": self.step, "elapsed": round(self.elapsed, 3)} | metrics)
            if cfg.save_every and self.step % cfg.save_every == 0 and not self.done():
                self.save()
            timed = cfg.eval_every_seconds and self.elapsed >= next_timed_eval
            if (cfg.eval_every and self.step % cfg.eval_every == 0 or timed) and not self.done():
                self._log({"step": self.step, "elapsed": round(self.elapsed, 3), "eval": self.evaluate()})
            if timed:
                next_timed_eval = (self.elapsed // cfg.eval_every_seconds + 1) * cfg.eval_every_seconds
        bar.close()
        self.save()
        result = self.evaluate()
        self._log({"step": self.step, "elapsed": round(self.elapsed, 3), "eval": result})
        return result


def _identity(cfg: RunConfig) -> dict:
    """The config fields a resumed run must share with the saved one (the budget and device may change)."""
    data = cfg.to_dict()
    for name in ("steps", "max_seconds", "device", "eval_every", "eval_every_seconds", "eval_batches", "log_every",
                 "save_every"):
        data["train"].pop(name)
    return data


def train(cfg: RunConfig, out_dir: str | Path, device: torch.device | str = "cpu", resume: bool = False,
          show_progress: bool = True) -> dict:
    """Train a run described by `cfg` into `out_dir`; returns the final evaluation of the RNN alone."""
    return Trainer(cfg, out_dir, device, resume, show_progress).run()
