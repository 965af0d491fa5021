"""The `smtrnn` command: train, label, eval, sample, and demo (SMT vs BPTT side by side on an embedded synthetic task).

The CLI alone picks the device. Any input problem ends with one line on stderr and exit code 2 (a user's cell that
raises: that line, then the cell's own traceback; `smtrnn.user_cell`).
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import torch

from smtrnn import distributed
from smtrnn.best import best_checkpoint
from smtrnn.checkpoint import has_checkpoint, load_model, read_config
from smtrnn.cli_parsers import (
    FLAG_FIELDS,
    add_compare_parser,
    add_demo_parser,
    add_eval_parser,
    add_export_parser,
    add_label_parser,
    add_sample_parser,
    add_train_parser,
    top_parser,
)
from smtrnn.config import RunConfig, TrainConfig, flatten, shown, size_text
from smtrnn.data.labels import read_manifest
from smtrnn.data.real import DATA_TASKS
from smtrnn.data.tasks import TaskError, make_task
from smtrnn.diagnostics import diagnostics
from smtrnn.errors import ConfigError, SaveError, SmtrnnError, TrainingError, UserCodeError, out_of_memory
from smtrnn.evaluate import (
    evaluate,
    evaluate_documents,
    evaluate_lengths,
    evaluation_bytes,
    rnn_alone_bytes,
)
from smtrnn.free_memory import available_memory
from smtrnn.labelling import write_dataset_labels, write_labels
from smtrnn.presets import make_preset
from smtrnn.sample import complete_images, stream_continuation
from smtrnn.settings import load_config_file, make_config, parse_budget, parse_set, with_settings
from smtrnn.step_timer import StepOverrun, StepTimer
from smtrnn.tools.gradients import gradient_curves
from smtrnn.tools.png import image_grid, write_png
from smtrnn.trainer import Trainer, check_can_train, resolve_device
from smtrnn.user_cell import require_trusted_cell

UNBOUNDED_STEPS = 10**12  # train.steps where --budget alone ends a run


def build_config(args: argparse.Namespace) -> RunConfig:
    """Preset, then config file, then explicit flags, then --set overrides (`smtrnn.settings`)."""
    file_data = load_config_file(args.config) if args.config else {}
    if args.init and args.labels:
        raise ConfigError("--init (method dmt) and --labels (method labels) exclude each other")
    fields = {
        name: getattr(args, flag[2:].replace("-", "_"))
        for flag, name in FLAG_FIELDS.items()
        if flag not in ("--init", "--labels")  # those two choose the base config below
    }
    if args.budget is not None:  # one reading of a budget for every command: 90, 90s, 10m, 1.5h
        fields["train.max_seconds"] = parse_budget(args.budget)
    steps_named = args.steps is not None or "train.steps" in parse_set(args.set) or "train.steps" in flatten(file_data)
    if args.budget and not steps_named:  # a budget alone is the budget: no preset's step count ends the run first
        fields["train.steps"] = UNBOUNDED_STEPS
    settings = {
        "file_data": file_data,
        "fields": fields,
        "sets": args.set,
        "data": args.data,
        "memory_size": args.memory_size,
    }
    # A cell named on this command line is the user's choice; one that comes with a stored config is the run's code
    named_cell = args.cell is not None or "rnn.cell" in parse_set(args.set) or "rnn.cell" in flatten(file_data)
    if args.init:  # DMT continues an SMT run: its config, not a preset, is the base
        cfg, _ = read_config(args.init, trust_cell_code=True if named_cell else args.trust_cell_code)
        cfg.train = TrainConfig(method="dmt", init=args.init, seed=cfg.train.seed)
        return with_settings(cfg, **settings)
    if args.labels:  # an RNN fit to stored labels: the labelling teacher run's config is the base
        manifest = read_manifest(args.labels)
        cfg = RunConfig.from_dict(manifest["config"])
        if not named_cell:
            require_trusted_cell(cfg, manifest.get("cell_code"), args.labels, args.trust_cell_code)
        cfg.train = TrainConfig(method="labels", labels=args.labels, seed=cfg.train.seed)
        return with_settings(cfg, **settings)
    return make_config(args.preset, args.task, **settings)


class _SecondSignal(BaseException):
    """A second SIGINT/SIGTERM: leave at once (a BaseException, so no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _stop_on_signals(trainer: Trainer):
    """While training: the first SIGINT or SIGTERM asks the trainer to stop after its current step (it then saves);
    a second one raises _SecondSignal. Yields the names of the signals received; restores the handlers after."""
    received: list[str] = []

    def handle(signum, frame):
        received.append(signal.Signals(signum).name)
        if len(received) > 1:
            raise _SecondSignal(signum)
        trainer.request_stop()
        if trainer.step_timer is not None:  # a step that never ends is stopped after the grace
            trainer.step_timer.stop_requested(received[0])

    if threading.current_thread() is not threading.main_thread():  # handlers can only be set from the main thread
        yield received
        return
    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cmd_train(args: argparse.Namespace) -> int:
    """Exit 0 when the budget is spent, or after SIGINT/SIGTERM once the current step is saved; 1 when training
    fails (a non-finite step, the last checkpoint kept); 128 + N on a second signal N (nothing more saved).

    Under torchrun (WORLD_SIZE > 1) every rank runs this; each joins the process group, and only rank 0 prints."""
    if args.print_config:  # a config that would train: checked like one (train's verdict), then printed
        cfg = build_config(args)
        check_can_train(cfg, resolve_device(cfg.train.device))
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if args.out is None:
        raise ConfigError("--out is required: the run directory (or --print-config to see the config alone)")
    if not str(args.out).strip():
        raise ConfigError("--out must name a run directory, got an empty path")
    cfg = build_config(args)
    if cfg.train.steps <= 0:
        raise ConfigError(f"--steps must be > 0, got {cfg.train.steps}")
    distributed.per_rank_batch(cfg.optim.batch_size, distributed.world_size())  # before joining the group
    device = distributed.init(resolve_device(cfg.train.device))
    world = distributed.world_size()
    try:
        code = _train(cfg, args, device)
        distributed.barrier()  # every rank is done with the group before any rank tears it down
    finally:
        distributed.shutdown()
    if world > 1:
        distributed.leave(code)
    return code


def _train(cfg: RunConfig, args: argparse.Namespace, device: torch.device) -> int:
    new_folder = not Path(args.out).exists()
    trainer = Trainer(cfg, args.out, device, resume=args.resume, show_progress=not args.quiet)
    trainer.step_timer = StepTimer(cfg.train.stop_grace)
    try:
        try:
            with _stop_on_signals(trainer) as received:
                result = trainer.run()
        except BaseException:
            if new_folder and Path(args.out).is_dir() and not any(Path(args.out).iterdir()):
                Path(args.out).rmdir()  # a run that failed before writing anything leaves no empty folder
            raise
    except _SecondSignal as stop:
        print(
            f"smtrnn: {signal.Signals(stop.signum).name} again: stopped at once after {trainer.step} steps, "
            f"without saving; {args.out} keeps its last checkpoint",
            file=sys.stderr,
        )
        return 128 + stop.signum
    except StepOverrun as overrun:
        kept = "keeps its last checkpoint" if has_checkpoint(args.out) else "holds no checkpoint"
        print(
            f"smtrnn: {'' if overrun.stopped_by else 'error: '}{overrun}: stopped after {trainer.step} steps, "
            f"without saving; {args.out} {kept}",
            file=sys.stderr,
        )
        return 128 + signal.Signals[overrun.stopped_by] if overrun.stopped_by else 1
    except TrainingError as exc:  # every rank reaches the same verdict (see Trainer.train_step): rank 0 says it
        if distributed.is_main():
            print(f"smtrnn: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SaveError) else 1
    if not distributed.is_main():
        return 0
    if result is None:
        cause = received[0] if received else "stop requested"
        print(
            f"smtrnn: {cause}: stopped after step {trainer.step} of {cfg.train.steps} and saved {args.out}; "
            "continue with --resume",
            file=sys.stderr,
        )
        return 0
    print(json.dumps(result, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.batches <= 0:
        raise ConfigError(f"--batches must be > 0, got {args.batches}")
    if args.max_tokens < 0:
        raise ConfigError(f"--max-tokens must be >= 0, got {args.max_tokens}")
    plots = None
    if args.plots:
        from smtrnn.tools import plots  # fails here, before any work, when matplotlib is missing

        plots.require_matplotlib()
        if Path(args.plots).exists() and not Path(args.plots).is_dir():
            raise ConfigError(f"--plots {args.plots} exists and is not a directory")
    best = None if args.last else best_checkpoint(args.run_dir)  # train.keep_best: that checkpoint is the run's
    cfg, model = load_model(
        best or args.run_dir, resolve_device(args.device), trust_cell_code=args.trust_cell_code, data=args.data
    )
    task = make_task(cfg.task.name, **cfg.task.params)
    if args.probe and model.teacher is None:
        raise ConfigError("--probe compares teacher memories with the RNN's rollout; this run has no teacher (BPTT)")
    if args.probe:
        task.needed_symbol(*task.sample(1, cfg.task.seq_len, torch.Generator().manual_seed(0)))  # TaskError if none
    lengths = parse_lengths(args.seq_len, "--seq-len") if args.seq_len is not None else []
    if args.key_lengths is not None and args.key_at is None:
        raise ConfigError("--key-lengths are the lengths --key-at asks the key at; give --key-at")
    key_lengths = lengths or [cfg.task.seq_len]  # --key-at asks at --key-lengths, else --seq-len, else the run's own
    if args.key_lengths is not None:
        key_lengths = parse_lengths(args.key_lengths, "--key-lengths")
    placed = key_placements(task, args.key_at, key_lengths, args.split)
    if args.teacher_at_lengths and not lengths:
        raise ConfigError("--teacher-at-lengths scores the teacher at the --seq-len lengths; give --seq-len")
    with_teacher = args.teacher_at_lengths and model.teacher is not None
    free = available_memory(next(model.parameters()).device)
    for length in lengths:  # before any work: a length that cannot fit would be ended by the kernel, unexplained
        if with_teacher:
            need = evaluation_bytes(cfg, model.vocab_size, length, cfg.optim.batch_size)
            what = f"to evaluate with the teacher (batch {cfg.optim.batch_size})"
        else:
            need = rnn_alone_bytes(cfg, model.vocab_size, length, args.batches * cfg.optim.batch_size)
            what = f"to evaluate the RNN alone ({args.batches * cfg.optim.batch_size} sequences)"
        if free is not None and need > free:
            raise ConfigError(
                f"--seq-len {shown(length)} needs about {size_text(need)} {what}; {size_text(free)} are available"
            )
    task.held_out(args.split).check_seq_len(cfg.task.seq_len)  # a split too small (or missing) is refused first
    checkpoint = f"best ({best.name})" if best else "last"
    result = {"split": args.split, "checkpoint": checkpoint} | evaluate(
        model, task, cfg.task.seq_len, args.batches, cfg.optim.batch_size, curves=plots is not None, split=args.split
    )
    if lengths:
        result["lengths"] = evaluate_lengths(
            model, task, lengths, args.batches, cfg.optim.batch_size, args.split, teacher=with_teacher
        )
    if placed:  # the RNN alone with the key's statement at each position: where can it still write the key?
        result["key_at"] = {
            str(at): {str(n): None for n in key_lengths}  # null: no room for the statement at that length
            | evaluate_lengths(model, t, fits, args.batches, cfg.optim.batch_size, args.split)
            for at, (t, fits) in placed.items()
        }
    if model.teacher is not None and not args.no_diagnostics:
        result["diagnostics"] = diagnostics(model, task, cfg.task.seq_len)
    if cfg.task.name in DATA_TASKS:  # bits over whole held-out documents / images, the RNN reading each from m_∅
        result["held_out_documents"] = evaluate_documents(
            model, task, cfg.task.seq_len, cfg.optim.batch_size, args.max_tokens, args.split
        )
    if plots is not None:
        gradients = gradient_curves(model, task, cfg.task.seq_len, cfg.optim.batch_size)
        title = f"{Path(args.run_dir).name}: {cfg.train.method}, {cfg.task.name} T={cfg.task.seq_len}"
        paths = plots.write_plots(result, gradients, args.plots, title)
        if "diagnostics" in result:
            paths += plots.write_diagnostic_plots(result["diagnostics"], args.plots, title)
        data = {"run": str(args.run_dir), "method": cfg.train.method, "eval": result, "gradient_norms": gradients}
        (Path(args.plots) / "diagnostics.json").write_text(json.dumps(data) + "\n")
        print(f"wrote {', '.join(p.name for p in paths)} and diagnostics.json to {args.plots}", file=sys.stderr)
        del result["curves"]
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28s} {json.dumps(value)}")
    return 0


def parse_lengths(text: str, flag: str, smallest: int = 1, what: str = "positive sequence lengths") -> list[int]:
    """'256,512,1024' -> [256, 512, 1024]: integers of at least `smallest` (`what` names them), each once."""
    try:
        lengths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(f"{flag} must be {what} separated by commas, got {shown(text)}") from exc
    if not lengths or any(n < smallest for n in lengths):
        raise ConfigError(f"{flag} must be {what} separated by commas, got {shown(text)}")
    return list(dict.fromkeys(lengths))


def key_placements(task, text: str | None, lengths: list[int], split: str) -> dict:
    """`--key-at P,...` -> {P: (the task with its key's statement at byte P, the lengths that have room for it)},
    checked before any work; {} without the flag. Only a task that places a statement (passkey) takes it; a
    position that fits none of the lengths is refused with the error of the longest."""
    if text is None:
        return {}
    if "statement_at" not in {field.name for field in dataclasses.fields(task)}:
        raise ConfigError(f"--key-at places a passkey's statement; task '{task.name}' has none")
    placed = {}
    for at in parse_lengths(text, "--key-at", smallest=0, what="byte positions (>= 0)"):
        held_out = dataclasses.replace(task, statement_at=at).held_out(split)
        fits = []
        for length in sorted(lengths):
            try:
                held_out.check_seq_len(length)
                fits.append(length)
            except TaskError:
                if length == max(lengths) and not fits:
                    raise
        placed[at] = (held_out, fits)
    return placed


def parse_tokens(text: str, vocab_size: int) -> list[int]:
    """'3,1,4' or '3 1 4' -> [3, 1, 4]; ids must lie in [0, vocab_size)."""
    parts = text.replace(",", " ").split()
    try:
        tokens = [int(p) for p in parts]
    except ValueError as exc:
        raise ConfigError(f"--prompt must be token ids separated by commas or spaces, got {shown(text)}") from exc
    bad = [t for t in tokens if not 0 <= t < vocab_size]
    if bad:
        raise ConfigError(f"--prompt token {bad[0]} is outside the vocabulary [0, {vocab_size})")
    return tokens


def cmd_export(args: argparse.Namespace) -> int:
    """Write the run's RNN alone (no teacher) as a step function with explicit state (smtrnn.export)."""
    from smtrnn.export import FORMATS, export

    if args.format not in FORMATS:
        raise ConfigError(f"unknown --format {args.format!r}; choose from: {', '.join(FORMATS)}")
    _, model = load_model(args.run_dir, torch.device("cpu"), trust_cell_code=args.trust_cell_code, open_data=False)
    path = export(model.rnn, args.format, args.out)
    print(
        f"wrote {path}: step(state (B, {model.rnn.size}), token (B,)) -> next_state, logits (B, {model.vocab_size})",
        file=sys.stderr,
    )
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    if args.length < 0:
        raise ConfigError(f"--length must be >= 0, got {args.length}")
    if not args.temperature >= 0 or args.temperature == float("inf"):  # NaN fails the first test
        raise ConfigError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if sum(a is not None for a in (args.prompt, args.text, args.png)) != 1:
        raise ConfigError(
            "sample needs exactly one of --prompt TOKENS, --text STRING (text runs) or --png FILE (pixels runs)"
        )
    device = resolve_device(args.device)
    cfg, model = load_model(  # only a PNG of held-out images reads the run's data
        args.run_dir, device, trust_cell_code=args.trust_cell_code, open_data=args.png is not None
    )
    generator = torch.Generator(device=device).manual_seed(args.seed)
    if args.png is not None:
        return _sample_png(args, cfg, model, generator)
    if args.text is not None:
        if cfg.task.name not in ("text", "passkey") or model.vocab_size != 256:
            raise ConfigError(
                f"--text needs a byte-level text run; {args.run_dir} is a '{cfg.task.name}' run with "
                f"vocabulary {model.vocab_size}"
            )
        # the bytes as given: argv that is not valid UTF-8 arrives surrogate-escaped, and a byte-level model reads
        # any bytes
        tokens = list(args.text.encode("utf-8", errors="surrogateescape"))
    else:
        tokens = parse_tokens(args.prompt, model.vocab_size)
    prompt = torch.tensor([tokens], dtype=torch.long, device=device)
    # printed as drawn, so any --length runs in constant memory and shows its progress
    stream = (int(token) for token in stream_continuation(model.rnn, prompt, args.length, args.temperature, generator))
    try:
        if args.text is not None:  # bytes decoded as they come: a character split over tokens prints once, whole
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            _emit(decoder.decode(bytes(tokens)))
            for token in stream:
                _emit(decoder.decode(bytes([token])))
            _emit(decoder.decode(b"", final=True) + "\n")
        else:
            for index, token in enumerate(stream):
                _emit(f" {token}" if index else str(token))
            _emit("\n")
    except BrokenPipeError:  # the reader stopped (`| head`): nothing more is wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit fails no more
    return 0


def _emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _sample_png(args: argparse.Namespace, cfg, model, generator: torch.Generator) -> int:
    """Pixels runs: one PNG grid — held-out images, their lower halves completed by the RNN, unconditional samples
    (one row each, `--count` images per row)."""
    from smtrnn.data.images import dequantize

    if cfg.task.name != "pixels":
        raise ConfigError(f"--png needs a pixels run; {args.run_dir} is a '{cfg.task.name}' run")
    if args.count <= 0:
        raise ConfigError(f"--count must be > 0, got {args.count}")
    task = make_task(cfg.task.name, **cfg.task.params)
    temperature = args.temperature if args.temperature > 0 else 1.0
    rows = complete_images(model.rnn, task, args.count, temperature, generator)
    levels = task.held_out().images().levels
    grid = image_grid(dequantize(torch.cat(rows), levels), columns=rows[0].shape[0])
    write_png(args.png, grid)
    print(
        f"wrote {args.png}: {grid.shape[1]}x{grid.shape[0]} pixels; rows: held-out images, lower halves "
        f"completed by the RNN, unconditional samples (temperature {temperature})"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Every (T, method, cell, seed) as a plan of `smtrnn train` runs for the same budget, run by the study runner
    (`smtrnn.tools.study`); resumable; results.json/.md/plots."""
    from smtrnn.tools import compare
    from smtrnn.tools.study import Study

    lengths = []
    for item in compare.parse_list(args.lengths, "--lengths"):
        if not item.isdigit() or int(item) < 1:
            raise ConfigError(f"--lengths must be positive integers, got '{item}'")
        lengths.append(int(item))
    methods = compare.parse_list(args.methods, "--methods", list(compare.STUDY_METHODS))
    cells = compare.parse_list(args.cells, "--cells")
    for name, value in (("--seeds", args.seeds), ("--parallel", args.parallel), ("--threads", args.threads or 1)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    budget = parse_budget(args.budget) if args.budget else 0.0
    if not budget and not args.steps:
        raise ConfigError("compare needs --budget (wall-clock per run) or --steps")
    extra = [*(["--data", args.data] if args.data is not None else [])]
    extra += ["--config", str(Path(args.config).resolve())] if args.config else []
    extra += [word for setting in args.set for word in ("--set", setting)]
    base = compare.base_args(args.task, args.preset, budget, args.steps, args.eval_batches, extra)
    parser, out = make_parser(), Path(args.out)

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    report = compare.run_study(
        compare.plan(lengths, methods, cells, args.seeds),
        base,
        lambda train_args: build_config(parser.parse_args(["train", *train_args])),
        Study(out / "runs", args.parallel, args.threads, args.device, log, args.trust_cell_code),
        out,
        {"task": args.task, "preset": args.preset, "lengths": lengths, "methods": methods, "cells": cells}
        | {"seeds": args.seeds, "budget_s": budget, "steps": args.steps or UNBOUNDED_STEPS},
        eval_batches=args.eval_batches,
        eval_lengths=parse_lengths(args.eval_lengths, "--eval-lengths") if args.eval_lengths is not None else (),
        teacher_at_lengths=args.teacher_at_lengths,
    )
    print(compare.markdown(report), end="")
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    """Write a trained teacher's memories for a seeded set of its task's sequences, or with --data for every position
    of a dataset split (resumable); print the manifest's summary."""
    log = None if args.quiet else lambda line: print(line, file=sys.stderr)
    device = resolve_device(args.device)
    if args.data is None:
        if args.split != "train":
            raise ConfigError("--split chooses the split of --data; sampled labels come from the training split")
        sequences = 4096 if args.sequences is None else args.sequences
        seed = 0 if args.seed is None else args.seed
        manifest = write_labels(
            args.teacher,
            args.out,
            sequences,
            args.batch_size,
            args.dtype,
            seed,
            args.shard_sequences,
            device,
            log=log,
            trust_cell_code=args.trust_cell_code,
        )
    else:
        if args.sequences is not None or args.seed is not None:
            raise ConfigError("--data labels every position of the data: --sequences and --seed do not apply")
        manifest = write_dataset_labels(
            args.teacher,
            args.out,
            args.data or None,
            args.split,
            args.batch_size,
            args.dtype,
            args.shard_sequences,
            device,
            log=log,
            trust_cell_code=args.trust_cell_code,
        )
    keys = ("source", "teacher_hash", "task", "data", "seq_len", "memory", "dtype", "sequences_written", "shapes")
    print(json.dumps({"labels": str(args.out)} | {k: manifest[k] for k in keys}))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """SMT→DMT vs BPTT, same cell and wall-clock budget, on a long-range task; prints a table of the RNN alone."""
    from smtrnn.tools.demo import run_demo

    budget = parse_budget(args.budget)
    make_preset(args.preset, args.task)  # an unknown preset or task: one line before anything trains

    run_demo(
        args.task,
        args.seq_len,
        budget,
        Path(args.out) if args.out else None,
        resolve_device(args.device),
        args.seed,
        args.preset,
    )
    return 0


def make_parser() -> argparse.ArgumentParser:
    """The command line (its grammar: `smtrnn.cli_parsers`), each subcommand bound to its cmd_* function."""
    parser, sub = top_parser()
    add_train_parser(sub, cmd_train)
    add_label_parser(sub, cmd_label)
    add_eval_parser(sub, cmd_eval)
    add_export_parser(sub, cmd_export)
    add_sample_parser(sub, cmd_sample)
    add_compare_parser(sub, cmd_compare)
    add_demo_parser(sub, cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    command = None
    try:
        args = make_parser().parse_args(argv)
        command = args.command
        return args.func(args)
    except (SmtrnnError, TaskError) as exc:
        if distributed.is_main() or not isinstance(exc, ConfigError):  # under torchrun every rank has the same
            where = f" (rank {distributed.rank()})" if not distributed.is_main() else ""  # config: rank 0 says it
            print(f"smtrnn: error{where}: {exc}", file=sys.stderr)
            if isinstance(exc, UserCodeError):  # the user's own code failed: after its line, its own traceback
                print(exc.traceback, file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped reading (`... --print-config | head`): nothing to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 1
    except OSError as exc:  # an output path under a file, a read-only or full disk, no permission
        where = exc.filename or "a file"
        print(f"smtrnn: error: cannot use {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError and the CPU allocator's are RuntimeErrors
        if not out_of_memory(exc):
            raise
        print(
            f"smtrnn: error: out of memory: {_first_line(exc)} ({_MEMORY_HINTS.get(command, _MEMORY_HINTS[None])})",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("smtrnn: interrupted", file=sys.stderr)
        return 130


# What to change when a command runs out of memory: only flags the command takes
_MEMORY_HINTS = {
    None: "a smaller --seq-len, --batch-size or --memory-size fits",
    "eval": "fewer or shorter --seq-len lengths, or --no-diagnostics, fit",
    "label": "a smaller --batch-size fits",
    "export": "the model does not fit in memory",
    "sample": "the model does not fit in memory",
}


def _first_line(exc: BaseException) -> str:
    """The allocator's own words, without its source location: 'you tried to allocate N bytes'."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split("DefaultCPUAllocator: ")[-1][:200]
