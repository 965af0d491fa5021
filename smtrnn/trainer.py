"""The training loop shared by every method: AdamW, warm-up then constant or cosine learning rate, gradient
clipping, JSONL metrics, periodic evaluation of the RNN alone, checkpoints, and an optional wall-clock budget.

Schedules follow *progress* = max(step / steps, elapsed / max_seconds), so a run bounded by wall-clock (the fair
way to compare SMT with BPTT) still warms up, stages and anneals over its whole budget.

Reliability: a resumed run restores the weights, the optimizer, the step, the elapsed time and both RNG streams, so
with a step budget its losses on CPU are bit-identical to a run that never stopped. A step whose loss terms or
gradients are not finite never reaches the optimizer: it stops the run (TrainingError, naming the step and the
term) or, up to `train.skip_nonfinite_steps`, is skipped and logged. `request_stop()` (the CLI calls it on
SIGINT/SIGTERM) ends the run after the current step with a checkpoint.

Data parallel (under torchrun, see `smtrnn.distributed`): optim.batch_size is the global batch; each rank draws its
share from its own data stream (seed + rank), the gradients are averaged across ranks before the update, and rank 0
alone logs, evaluates and writes checkpoints. Progress (elapsed time, a stop request, a non-finite step) is agreed
across ranks every step, so all ranks take the same steps and none waits for a collective another skipped.

Precision: train.precision="bf16" runs the losses under CUDA autocast (bfloat16 matmuls, fp32 master weights and
optimizer state; no loss scaling is needed with bf16's exponent range). train.compile compiles the teacher's
encoder and decoder and the RNN's cell and readout in place (`nn.Module.compile`: the state_dict keys, hence the
checkpoints, do not change).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from smtrnn import distributed
from smtrnn.best import SCORE, best_checkpoint, mark_best, read_best
from smtrnn.bptt import bptt_loss
from smtrnn.checkpoint import (
    METRICS_FILE,
    check_run_layout,
    has_checkpoint,
    holds_run,
    load_trainer_state,
    load_weights,
    open_run_data,
    read_config,
    save_checkpoint,
    trim_metrics,
)
from smtrnn.config import (
    LABEL_METHODS,
    TEACHER_METHODS,
    OptimConfig,
    RunConfig,
    flatten,
    shown,
    size_text,
    validate,
)
from smtrnn.data.identity import check_same_data, fingerprint
from smtrnn.data.labels import load_labels
from smtrnn.data.tasks import Task, build_task
from smtrnn.dmt import dmt_loss, dmt_loss_on_labels, dmt_with_teacher_loss
from smtrnn.errors import CheckpointError, ConfigError, SaveError, SmtrnnError, TrainingError
from smtrnn.evaluate import evaluate, evaluation_bytes
from smtrnn.free_memory import available_memory
from smtrnn.model import Model
from smtrnn.reference import dmt_sequential_loss, smt_one_transition_loss
from smtrnn.smt import labels_loss, smt_loss
from smtrnn.step_timer import StepTimer

# The fields of a training-log record that depend on the machine's speed, not on the run: a resumed or repeated run
# logs everything else bit for bit. transitions_per_s = supervised transitions (B·T per step, over all ranks; B for
# smt.transitions='one') per second of training since the previous record.
TIMING_FIELDS = ("elapsed", "transitions_per_s")
TENSORBOARD_DIR = "tensorboard"  # train.tensorboard's event files, inside the run directory
LOSS_TERMS = (
    "decoder",
    "dynamics",
    "uniformity",
    "readout",
    "onestep_readout",
    "dmt_dynamics",
    "dmt_readout",
)  # as the loss functions name them
_STATE_KEYS = ("optimizer", "step", "elapsed", "torch_rng", "data_rng")


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
    return min(full, start * 2**stage)


def loss_function(cfg: RunConfig, progress: float) -> Callable:
    """The method's loss at this point of training, bound to its config: (model, *batch) -> (loss, metrics), where
    the batch is (x, y), or (x, y, m) for the label methods.

    smt+dmt spends the first 1 - dmt.fraction of training on SMT (with its own warm-up inside that share) and the
    rest on DMT; smt+dmt+bptt then ends with bptt.fraction of BPTT on the RNN alone (the teacher idle); labels+dmt
    fits the stored labels first, then runs DMT against the same stored memories.
    """
    method = cfg.train.method
    if method == "bptt" or (method == "smt+dmt+bptt" and progress >= 1.0 - cfg.bptt.fraction):
        return partial(bptt_loss, cfg=cfg.bptt)
    if method in LABEL_METHODS:
        share = 1.0 if method == "labels" else 1.0 - cfg.dmt.fraction
        if progress < share:
            return partial(labels_loss, cfg=cfg.smt, smt_progress=progress / share)
        return partial(dmt_loss_on_labels, cfg=cfg.dmt)
    smt_share = {
        "smt": 1.0,
        "smt+dmt": 1.0 - cfg.dmt.fraction,
        "smt+dmt+bptt": 1.0 - cfg.dmt.fraction - cfg.bptt.fraction,
        "dmt": 0.0,
    }[method]
    if progress < smt_share:
        if cfg.smt.transitions == "one":
            return partial(smt_one_transition_loss, cfg=cfg.smt)
        return partial(
            smt_loss,
            cfg=cfg.smt,
            rnn_active=progress / smt_share >= cfg.smt.teacher_alone,
            smt_progress=progress / smt_share,
        )
    if cfg.dmt.teacher_learns:
        return partial(dmt_with_teacher_loss, cfg=cfg.dmt, smt_cfg=cfg.smt)
    return partial(dmt_loss if cfg.dmt.time_parallel else dmt_sequential_loss, cfg=cfg.dmt)


def check_can_train(cfg: RunConfig, device: torch.device) -> Task:
    """Train's verdict on a config before any folder, model or batch exists (`--print-config` gives the same): the
    config, its task (the data read and its lengths checked), a best checkpoint to choose by validation, and the
    memory: a step holds at least what evaluating a batch at T holds (`evaluation_bytes`), refused where that
    exceeds the memory free. Returns the task."""
    validate(cfg)
    task = build_task(cfg)
    if cfg.train.keep_best and not task.has_splits:
        raise ConfigError(
            f"train.keep_best picks a checkpoint by its validation bits; task '{cfg.task.name}' has no validation "
            "split (fresh draws never overfit): the data tasks (text, pixels, arrays) have one"
        )
    need = evaluation_bytes(cfg, task.vocab_size, cfg.task.seq_len, cfg.optim.batch_size)
    free = available_memory(device)
    if free is not None and need > free:
        raise ConfigError(
            f"task.seq_len {shown(cfg.task.seq_len)} with batch {cfg.optim.batch_size} needs at least "
            f"{size_text(need)} to train; {size_text(free)} are available (a shorter T or a smaller batch fits)"
        )
    return task


class Trainer:
    """Owns one run: its model, optimizer, data stream and run directory."""

    def __init__(
        self,
        cfg: RunConfig,
        out_dir: str | Path,
        device: torch.device | str = "cpu",
        resume: bool = False,
        show_progress: bool = True,
    ):
        validate(cfg)
        self.cfg, self.out_dir, self.device = cfg, Path(out_dir), torch.device(device)
        self.show_progress = show_progress
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.batch_size = distributed.per_rank_batch(cfg.optim.batch_size, self.world)
        if cfg.train.precision == "bf16" and self.device.type != "cuda":
            raise ConfigError(
                f"train.precision='bf16' runs under CUDA autocast; this run is on {self.device.type} (use fp32 there)"
            )
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise CheckpointError(f"output path {self.out_dir} exists and is not a directory")
        check_run_layout(self.out_dir)  # before anything is read or written: a refused run changes nothing
        if holds_run(self.out_dir) and not resume:
            raise CheckpointError(
                f"{self.out_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        if resume and not holds_run(self.out_dir):
            raise CheckpointError(
                f"--resume: {self.out_dir} holds no run to continue (no checkpoint or metrics "
                "log); drop --resume to start one there"
            )
        self.task = check_can_train(cfg, self.device)  # evaluation draws from task.held_out()
        self.data_identity = fingerprint(cfg.task.params.get("path"))  # recorded in every checkpoint
        self.tensorboard = None  # a SummaryWriter when train.tensorboard (rank 0)
        if cfg.train.tensorboard and distributed.is_main():
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ConfigError(
                    "train.tensorboard needs the tensorboard package: pip install 'smtrnn[tensorboard]'"
                ) from exc
            self.tensorboard = SummaryWriter(str(self.out_dir / TENSORBOARD_DIR))
        self.data = self.task  # what training batches come from: .sample(batch, length, generator) -> tensors
        if cfg.train.method in LABEL_METHODS:
            self.data = load_labels(cfg.train.labels)
            self.data.check(cfg)
        torch.manual_seed(cfg.train.seed)
        self.data_generator = torch.Generator().manual_seed(cfg.train.seed + self.rank)
        self.model = Model.for_run(cfg, self.task.vocab_size).to(self.device)  # the same weights on every rank
        if self.world > 1:  # the losses' own sampling (decoder positions, ...) differs between ranks too
            torch.manual_seed(cfg.train.seed + self.rank)
        self.optimizer = make_optimizer(self.model, cfg.optim)
        self.step, self.elapsed = 0, 0.0
        self.skipped = 0  # non-finite steps skipped so far (train.skip_nonfinite_steps)
        self.stop_requested = False
        self.step_timer: StepTimer | None = None  # the CLI's bound on a step that never ends (smtrnn.step_timer)
        self.best = None  # train.keep_best: the best checkpoint's record so far (`smtrnn.best`)
        if cfg.train.keep_best:
            if self.world > 1:
                raise ConfigError("train.keep_best runs on one process (not yet under torchrun)")
            self.best = read_best(self.out_dir) if resume else None
        if resume and has_checkpoint(self.out_dir):
            self._resume()
        elif cfg.train.init:
            self._start_from(cfg.train.init)
        if cfg.train.compile:
            for module in self._compiled_modules():
                module.compile()
        # DDP over the ranks, if several; with a teacher, some steps leave parameters without a gradient
        self.step_module = distributed.data_parallel(self.model, self.device, self.model.teacher is not None)
        # Records past the starting step were written by a run killed after its last checkpoint (or, at step 0, by
        # one that failed before its first): this run logs those steps afresh.
        if distributed.is_main():
            trim_metrics(self.out_dir, self.step)

    def _compiled_modules(self) -> list[torch.nn.Module]:
        """The modules whose forward the loss functions call (the losses call teacher.encode, rnn.step, ... rather
        than model.forward)."""
        teacher, rnn = self.model.teacher, self.model.rnn
        return ([teacher.encoder, teacher.decoder] if teacher is not None else []) + [rnn.cell, rnn.readout_net]

    def _start_from(self, init_dir: str) -> None:
        """Load the teacher and RNN of a finished SMT run (the start of DMT); its architecture must match."""
        saved, meta = read_config(init_dir)
        open_run_data(init_dir, saved, meta)  # the data it trained on is still there, unchanged
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
        saved, meta = read_config(self.out_dir)  # compared with this run's config, whose task is built
        check_same_data(meta.get("data"), self.cfg.task.params.get("path"), self.data_identity)
        changed = changed_fields(saved, self.cfg, budget=False)
        if changed:
            ours, theirs = flatten(self.cfg.to_dict()), flatten(saved.to_dict())
            shown = ", ".join(f"{name}={theirs.get(name)!r} there, {ours[name]!r} here" for name in changed[:2])
            raise CheckpointError(
                f"{self.out_dir} was trained with a different config ({shown}"
                f"{f' and {len(changed) - 2} more' if len(changed) > 2 else ''}); resume with the "
                "same one"
            )
        load_weights(self.out_dir, self.model)
        state = load_trainer_state(self.out_dir)
        if not isinstance(state, dict) or any(key not in state for key in _STATE_KEYS):
            raise CheckpointError(
                f"{self.out_dir}: the trainer state lacks "
                f"{[k for k in _STATE_KEYS if not isinstance(state, dict) or k not in state]}"
            )
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world:
            raise CheckpointError(
                f"{self.out_dir} was trained with world size {saved_world}, this run has world size "
                f"{self.world}; resume with {saved_world} processes (the data streams are per rank)"
            )
        if self.world > 1:  # rank r continues its own streams
            state = state | state["rank_rngs"][self.rank]
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
            self.skipped = int(state.get("skipped", 0))
            torch.set_rng_state(state["torch_rng"])
            self.data_generator.set_state(state["data_rng"])
            if "cuda_rng" in state and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{self.out_dir}: the trainer state does not fit this run: {str(exc).splitlines()[0]}"
            ) from exc

    def progress(self) -> float:
        budget = self.cfg.train.max_seconds
        by_time = self.elapsed / budget if budget else 0.0
        return min(1.0, max(self.step / self.cfg.train.steps, by_time))

    def done(self) -> bool:
        return self.progress() >= 1.0

    def request_stop(self) -> None:
        """End `run()` after the current step, with a checkpoint (safe to call from a signal handler)."""
        self.stop_requested = True

    def train_step(self) -> dict:
        """One optimizer step of the configured method; returns its metrics ("skipped": True when the step was not
        finite and `train.skip_nonfinite_steps` let it pass without an update)."""
        cfg = self.cfg
        progress = self.progress()
        lr = learning_rate(cfg.optim, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        length = sequence_length(cfg, progress)
        batch = [t.to(self.device) for t in self.data.sample(self.batch_size, length, self.data_generator)]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.train.precision == "bf16" else nullcontext()
        objective = loss_function(cfg, progress)
        with autocast:
            loss, terms = self.step_module(objective, *batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # a non-finite loss only makes non-finite gradients; under DDP they arrive averaged
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        # the step's one host sync: every loss term and the gradient norm in one transfer, read as floats
        values = torch.stack([*(t.detach().float() for t in terms.values()), grad_norm.detach().float()]).tolist()
        metrics = dict(zip(terms, values[:-1]))
        problem = _nonfinite_loss(metrics)
        if problem is None and not math.isfinite(values[-1]):
            problem = _nonfinite_gradient(self.model, metrics)
        if distributed.any_rank(problem is not None, self.device) and problem is None:
            problem = "loss", "on another rank"
        if problem is not None:
            kind, details = problem
            return self._nonfinite(f"non-finite {kind} at step {self.step + 1}: {details}", metrics)
        if cfg.optim.grad_clip:  # as clip_grad_norm_, whose in-place scaling would have hidden which grads broke
            scale = (cfg.optim.grad_clip / (grad_norm + 1e-6)).clamp(max=1.0)
            for grad in grads:
                grad.mul_(scale)
        self.optimizer.step()
        self.step += 1
        per_sequence = 1 if objective.func is smt_one_transition_loss else length  # supervised transitions
        return metrics | {
            "lr": lr,
            "grad_norm": values[-1],
            "seq_len": length,
            "transitions": self.batch_size * self.world * per_sequence,
        }

    def _nonfinite(self, message: str, metrics: dict) -> dict:
        """Skip the step (no update) while `train.skip_nonfinite_steps` allows, else stop; either way, log it."""
        self.optimizer.zero_grad(set_to_none=True)
        allowed = self.cfg.train.skip_nonfinite_steps
        if self.skipped >= allowed:
            if allowed:
                message += f" (after skipping {allowed}, the most train.skip_nonfinite_steps allows)"
            self._log({"step": self.step + 1, "elapsed": round(self.elapsed, 3), "nonfinite": message})
            kept = "its last checkpoint is kept" if has_checkpoint(self.out_dir) else "no checkpoint was written"
            raise TrainingError(f"{message}; {kept}")
        self.skipped += 1
        self.step += 1
        self._log({"step": self.step, "elapsed": round(self.elapsed, 3), "skipped": message})
        return metrics | {"skipped": True}

    def evaluate(self, model: Model | None = None) -> dict:
        """The RNN alone (and teacher) on the validation split: the trainer's model, or `model` (same config)."""
        cfg = self.cfg
        with self._guard("evaluation"):
            return evaluate(
                model or self.model, self.task, cfg.task.seq_len, cfg.train.eval_batches, cfg.optim.batch_size
            )

    def _guard(self, what: str, budget_left: float | None = None):
        return self.step_timer.guard(what, budget_left) if self.step_timer is not None else nullcontext()

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0; every rank calls this, to hand rank 0 its RNG states); returns its folder on
        rank 0."""
        rngs = {"torch_rng": torch.get_rng_state(), "data_rng": self.data_generator.get_state()}
        if self.device.type == "cuda":
            rngs["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        rank_rngs = distributed.gather_objects(rngs)
        if not distributed.is_main():
            return
        problem = self.model.damage()
        if problem:  # a destructive update: the previous checkpoint stays the run's last good state
            kept = "the previous checkpoint is kept" if has_checkpoint(self.out_dir) else "no checkpoint was written"
            raise TrainingError(f"after step {self.step} {problem}; not saved, {kept}")
        state = {
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "skipped": self.skipped,
            "world_size": self.world,
        } | rngs
        if self.world > 1:
            state["rank_rngs"] = rank_rngs
        try:
            return save_checkpoint(
                self.out_dir,
                self.cfg,
                self.model,
                state,
                keep=self.cfg.train.keep_checkpoints,
                protect=self.best["checkpoint"] if self.best else None,
                data=self.data_identity,
            )
        except OSError as exc:  # a full disk, lost permissions: the previous checkpoint is still whole
            raise SaveError(
                f"cannot save the checkpoint of step {self.step} in {self.out_dir}: "
                f"{exc.strerror or exc}; the previous checkpoint is kept"
            ) from exc

    def _log(self, record: dict) -> None:
        if not distributed.is_main():
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for name, value in flatten({k: v for k, v in record.items() if k != "step"}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tensorboard.add_scalar(name.replace(".", "/"), value, record["step"])
            self.tensorboard.flush()

    def run(self) -> dict | None:
        """Train until the step or time budget is spent, save, and return the final evaluation; after
        `request_stop()`, save at the end of the current step and return None."""
        cfg = self.cfg.train
        main = distributed.is_main()
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=None if self.show_progress and main else True,
            desc=f"{cfg.method} {self.cfg.task.name}",
            dynamic_ncols=True,
        )
        next_timed_eval = cfg.eval_every_seconds  # learning curves against training time (evaluation not counted)
        since = {"elapsed": self.elapsed, "transitions": 0}  # since the last log record: the throughput's window
        while not self.done() and not self.stop_requested:
            start = time.perf_counter()
            with self._guard("step", cfg.max_seconds - self.elapsed if cfg.max_seconds else None):
                metrics = self.train_step()
            self.elapsed += time.perf_counter() - start
            self.elapsed, self.stop_requested = distributed.agree_progress(
                self.elapsed, self.stop_requested, self.device
            )
            bar.update(1)
            since["transitions"] += metrics.pop("transitions", 0)
            if (self.step % cfg.log_every == 0 or self.done()) and not metrics.get("skipped"):
                window = self.elapsed - since["elapsed"]
                rate = round(since["transitions"] / window) if window > 0 else None
                since = {"elapsed": self.elapsed, "transitions": 0}
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", transitions_per_s=rate)
                self._log(
                    {"step": self.step, "elapsed": round(self.elapsed, 3)} | metrics | {"transitions_per_s": rate}
                )
            if cfg.save_every and self.step % cfg.save_every == 0 and not self.done():
                self.save()
            timed = cfg.eval_every_seconds and self.elapsed >= next_timed_eval
            periodic = cfg.eval_every and self.step % cfg.eval_every == 0 or timed
            if periodic and not self.done() and not self.stop_requested and main:  # the others wait at the next step
                evaluation = self.evaluate()
                self._log({"step": self.step, "elapsed": round(self.elapsed, 3), "eval": evaluation})
                if cfg.keep_best:
                    self._keep_if_best(evaluation)
            if timed:
                next_timed_eval = (self.elapsed // cfg.eval_every_seconds + 1) * cfg.eval_every_seconds
        bar.close()
        folder = self.save()
        if not self.done():
            distributed.barrier()
            return None
        result = self.evaluate() if main else None
        self._log({"step": self.step, "elapsed": round(self.elapsed, 3), "eval": result})
        if cfg.keep_best:
            result = self._best_result(result, folder)
        return distributed.gather_objects(result)[0]  # rank 0's evaluation, on every rank

    def _keep_if_best(self, evaluation: dict, folder: Path | None = None) -> None:
        """train.keep_best: a validation score below the best so far makes this step's checkpoint the best (saved
        now unless `folder` holds it already)."""
        score = evaluation[SCORE]
        if self.best is not None and not score < self.best[SCORE]:
            return
        folder = folder or self.save()
        mark_best(self.out_dir, folder, self.step, score)
        self.best = read_best(self.out_dir)

    def _best_result(self, final: dict, folder: Path) -> dict:
        """The run's result under train.keep_best: the evaluation of its best validation checkpoint (the final
        weights' own when they are the best), with the step it was taken at."""
        self._keep_if_best(final, folder)
        if self.best["step"] == self.step:
            best = final
        else:
            model = copy.deepcopy(self.model)  # the trainer's own model stays as training left it
            load_weights(best_checkpoint(self.out_dir), model)
            best = self.evaluate(model)
        self._log({"step": self.step, "elapsed": round(self.elapsed, 3), "best": self.best, "eval": best})
        return best | {"best_step": self.best["step"]}


def _nonfinite_loss(metrics: dict) -> tuple[str, str] | None:
    """('loss', 'dynamics=nan, readout=inf (finite: decoder=1.23)') when a loss term is not finite, else None."""
    bad = [k for k in LOSS_TERMS if k in metrics and not math.isfinite(metrics[k])]
    if not bad and math.isfinite(metrics["loss"]):
        return None
    terms = ", ".join(f"{k}={metrics[k]}" for k in bad) or f"the weighted sum {metrics['loss']}"
    finite = ", ".join(f"{k}={metrics[k]:.4g}" for k in LOSS_TERMS if k in metrics and k not in bad)
    return "loss", terms + (f" (finite: {finite})" if finite else "")


def _nonfinite_gradient(model: Model, metrics: dict) -> tuple[str, str]:
    """('gradient', 'in rnn.readout (2 tensors, first rnn.readout.net.0.weight); the loss terms were finite ...')."""
    names = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    modules = list(dict.fromkeys(".".join(name.split(".")[:2]) for name in names))
    where = (
        f"in {', '.join(modules)} ({len(names)} tensor{'s' * (len(names) > 1)}, first {names[0]})"
        if names
        else "norm overflowed, though every entry is finite"
    )
    terms = ", ".join(f"{k}={metrics[k]:.4g}" for k in LOSS_TERMS if k in metrics)
    return "gradient", f"{where}; the loss terms were finite ({terms})"


# Train fields that do not change what a run learns from its data: how it is watched, saved and placed.
_BOOKKEEPING = (
    "device",
    "eval_every",
    "eval_every_seconds",
    "eval_batches",
    "log_every",
    "save_every",
    "keep_checkpoints",
    "skip_nonfinite_steps",
    "precision",
    "compile",
    "tensorboard",
    "stop_grace",
    "keep_best",
)


def changed_fields(saved: RunConfig, cfg: RunConfig, budget: bool = True) -> list[str]:
    """The fields (dotted names) where `cfg` asks for another run than `saved` is: everything its method reads but
    bookkeeping (BPTT reads no teacher, SMT or DMT field), and the budget unless `budget` is False (a resumed run
    may be given more or less time)."""
    ours, theirs = flatten(cfg.to_dict()), flatten(saved.to_dict())
    ignored = {f"train.{name}" for name in _BOOKKEEPING + (() if budget else ("steps", "max_seconds"))}
    unread = () if cfg.train.method in TEACHER_METHODS + LABEL_METHODS else ("teacher.", "smt.", "dmt.")
    return [
        name for name in ours if name not in ignored and not name.startswith(unread) and ours[name] != theirs.get(name)
    ]


def train(
    cfg: RunConfig,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    resume: bool = False,
    show_progress: bool = True,
) -> dict | None:
    """Train a run described by `cfg` into `out_dir`; returns the final evaluation of the RNN alone (None when the
    run was stopped early by `Trainer.request_stop`)."""
    return Trainer(cfg, out_dir, device, resume, show_progress).run()
