"""The `smtrnn` command line's grammar: every subcommand's parser, its flags, defaults and help.

What each command does lives in `smtrnn.cli`, which hands each parser its `cmd_*` function; this module never
imports it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from smtrnn.config import RunConfig, describe_fields, field_docs
from smtrnn.errors import ConfigError
from smtrnn.presets import PRESETS, RECIPE

Command = Callable[[argparse.Namespace], int]  # a cmd_* function of smtrnn.cli: the parsed flags -> exit code
Subparsers = argparse._SubParsersAction  # what ArgumentParser.add_subparsers returns


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2, like ours
        raise ConfigError(message)


def top_parser() -> tuple[argparse.ArgumentParser, Subparsers]:
    """`smtrnn` itself, and the subparsers object each `add_*_parser` adds its command to."""
    parser = _Parser(prog="smtrnn", description="Train nonlinear RNNs without backpropagation through time.")
    return parser, parser.add_subparsers(dest="command", required=True, parser_class=_Parser)


# The train command's short flags, each the alias of one config field: its type and help come from the field
# (`config.field_docs`), so a flag never drifts from the field it sets. --task, --init and --labels also choose the
# base config (a preset for the task, the SMT run DMT continues, the labelling teacher's run).
FLAG_FIELDS = {
    "--task": "task.name",
    "--method": "train.method",
    "--init": "train.init",
    "--labels": "train.labels",
    "--cell": "rnn.cell",
    "--seq-len": "task.seq_len",
    "--steps": "train.steps",
    "--budget": "train.max_seconds",
    "--batch-size": "optim.batch_size",
    "--lr": "optim.lr",
    "--memory-tokens": "memory.tokens",
    "--seed": "train.seed",
    "--device": "train.device",
}


def _add_field_flags(p: argparse.ArgumentParser) -> None:
    defaults = RunConfig()
    for flag, name in FLAG_FIELDS.items():
        section, field_name = name.split(".")
        kind = type(getattr(getattr(defaults, section), field_name))
        doc = field_docs(type(getattr(defaults, section))).get(field_name, "")
        p.add_argument(
            flag,
            dest=flag[2:].replace("-", "_"),
            type=str if flag == "--budget" else kind if kind in (int, float) else str,  # "90", "10m": parse_budget
            help=f"{name}: {doc}".replace("%", "%%"),
        )


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    _add_field_flags(p)
    p.add_argument(
        "--data",
        help="text: a text file or folder, a .npy/.bin token file, hf:NAME or builtin:english (default: the "
        "embedded corpus); pixels: an IDX file or torchvision:NAME:ROOT (default: digits); arrays: an .npz or a "
        "folder of x.npy, y.npy (your labelled sequences)",
    )
    p.add_argument("--memory-size", type=int, help="Z = K·D, total memory floats (sets memory.width = Z / K)")
    _add_preset_flag(p, "the recipe for the task, as compare and demo use")
    p.add_argument("--config", help="JSON or YAML file with (part of) a run config")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any config field, e.g. --set smt.dynamics_weight=0.1 (repeatable; the fields are listed below)",
    )


def _add_preset_flag(p: argparse.ArgumentParser, recipe_is: str, lead: str = "") -> None:
    """--preset, the recipe by default; its help names every preset of `smtrnn.presets.PRESETS`."""
    names = [f"{RECIPE} (default: {recipe_is})", *(name for name in PRESETS if name != RECIPE)]
    listed = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
    p.add_argument("--preset", default=RECIPE, help=lead + listed)


def _add_trust_flag(p: argparse.ArgumentParser, source: str) -> None:
    p.add_argument(
        "--trust-cell-code",
        action="store_true",
        help=f"import a user's cell (rnn.cell MODULE:CLASS or FILE.py:CLASS) that {source} names: importing "
        "runs its code, so only for runs you trust (without this flag such a run is refused, naming "
        "the file and its sha256 at training)",
    )


def add_train_parser(sub: Subparsers, run: Command) -> None:
    p = sub.add_parser(
        "train",
        help="train an RNN by SMT, DMT, SMT then DMT, or BPTT",
        description="Train a run: a preset, then --config, then the flags, then --set.",
        epilog="config fields (--set FIELD=VALUE; defaults of the plain RunConfig, presets change "
        "some):\n" + describe_fields().replace("%", "%%"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_train_arguments(p)
    p.add_argument("--out", help="run directory (refused if it already holds a run, unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the whole config these settings build, as JSON (a file --config takes), and exit: no run",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_trust_flag(p, "the --init run or the --labels store (and no --cell of yours)")
    p.set_defaults(func=run)


def add_label_parser(sub: Subparsers, run: Command) -> None:
    p = sub.add_parser(
        "label",
        help="write a trained teacher's memories m_t for a seeded set of sequences, or for "
        "every position of a dataset (--data), to fit RNNs to (train --method labels)",
    )
    p.add_argument("--teacher", required=True, help="a trained SMT (or DMT) run directory")
    p.add_argument("--out", required=True, help="label directory (a store begun with the same arguments resumes)")
    p.add_argument(
        "--data",
        nargs="?",
        const="",
        default=None,
        help="label every position of a text/pixels/arrays dataset: PATH (same vocabulary as the teacher), or "
        "no value for the teacher run's own data",
    )
    p.add_argument("--split", default="train", help="with --data: train (default) or valid")
    p.add_argument("--sequences", type=int, help="sampled labels: sequences of the teacher run's task (default 4096)")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per teacher forward")
    p.add_argument("--dtype", default="float16", help="float16 (default) or float32 memories")
    p.add_argument("--seed", type=int, help="sampled labels: which sequences are drawn (default 0)")
    p.add_argument("--shard-sequences", type=int, default=1024, help="sequences per shard file")
    p.add_argument("--quiet", action="store_true", help="no per-shard progress lines")
    p.add_argument("--device", default="auto")
    _add_trust_flag(p, "the teacher run")
    p.set_defaults(func=run)


def add_eval_parser(sub: Subparsers, run: Command) -> None:
    p = sub.add_parser("eval", help="evaluate a run's RNN alone (and its teacher)")
    p.add_argument("run_dir")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--last",
        action="store_true",
        help="score the last checkpoint even where the run kept its best (train.keep_best)",
    )
    p.add_argument(
        "--split",
        default="valid",
        choices=("valid", "test"),
        help="the held-out split scored: valid (default; what training evaluates and settings are chosen "
        "on) or test (final numbers only; synthetic tasks: a stream under its own seed). The failure "
        "diagnostics always use validation sequences",
    )
    p.add_argument(
        "--data",
        metavar="PATH",
        help="the run's data where it has moved: it must hold what the run trained on (the fingerprint recorded "
        "at training); without it the run's own absolute path is read",
    )
    p.add_argument(
        "--seq-len",
        metavar="T[,T...]",
        help="also score the RNN alone at these sequence lengths, e.g. 1024,16384,65536: length generalization "
        "past the training length; streamed from m_∅, O(1) memory per token, no teacher",
    )
    p.add_argument(
        "--key-at",
        metavar="P[,P...]",
        help="passkey: also score the key with its statement placed P bytes into every row, at each --key-lengths "
        "length with room for it (the RNN alone, streamed): after how much prose it still writes the key",
    )
    p.add_argument(
        "--key-lengths",
        metavar="T[,T...]",
        help="the lengths --key-at asks the key at (default: the --seq-len lengths, else the run's own); unlike "
        "--seq-len they are not also scored plainly",
    )
    p.add_argument(
        "--teacher-at-lengths",
        action="store_true",
        help="also score the teacher (and drift) at the --seq-len lengths: its attention holds whole sequences, "
        "so a length whose estimate exceeds the free memory is refused",
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=100_000,
        help="text/pixels: score at most this many held-out tokens over whole documents (0: all)",
    )
    p.add_argument(
        "--no-diagnostics",
        action="store_true",
        help="SMT runs: leave out the failure diagnostics (Markov gap, error growth, information probe)",
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="require the information probe (refused for tasks without a needed symbol, or without a teacher)",
    )
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="also write diagnostic PNGs (drift, collapse, accuracy by "
        "position, gradient norms) and their data to DIR; needs matplotlib",
    )
    p.add_argument("--device", default="auto")
    _add_trust_flag(p, "the run")
    p.set_defaults(func=run)


def add_export_parser(sub: Subparsers, run: Command) -> None:
    p = sub.add_parser(
        "export",
        help="write the RNN alone as a step function with explicit state: TorchScript or ONNX, to run without smtrnn",
    )
    p.add_argument("run_dir")
    p.add_argument("--format", default="torchscript", help="torchscript (default) or onnx (needs smtrnn[export])")
    p.add_argument("--out", required=True, help="the file to write (refused if it exists)")
    _add_trust_flag(p, "the run")
    p.set_defaults(func=run)


def add_sample_parser(sub: Subparsers, run: Command) -> None:
    p = sub.add_parser("sample", help="continue a prompt (token ids or text) or complete images, RNN alone")
    p.add_argument("run_dir")
    p.add_argument("--prompt", help="token ids, e.g. '3,1,4'")
    p.add_argument("--text", help="text runs: a string, fed as UTF-8 bytes; the continuation is printed as text")
    p.add_argument(
        "--png",
        metavar="FILE",
        help="pixels runs: write a PNG grid of held-out images, their lower "
        "halves completed by the RNN, and unconditional samples",
    )
    p.add_argument("--count", type=int, default=8, help="--png: images per row")
    p.add_argument("--length", type=int, default=16)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (--png: 0 means 1.0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    _add_trust_flag(p, "the run")
    p.set_defaults(func=run)


def add_compare_parser(sub: Subparsers, run: Command) -> None:
    p = sub.add_parser("compare", help="SMT vs BPTT (and baselines) across lengths, cells and seeds, same budget")
    p.add_argument("--task", default="retrieval")
    p.add_argument("--data", help="text, pixels, arrays: the data path (see train --data)")
    p.add_argument("--lengths", default="64,256", help="comma-separated sequence lengths")
    p.add_argument(
        "--methods",
        default="smt,smt+dmt,bptt",
        help="comma-separated, from: smt, smt+dmt, smt+dmt+bptt, bptt, tbptt (truncated, 32 steps), gru-fused, "
        "lstm-fused, mingru (the last three are BPTT baselines with their own cell)",
    )
    p.add_argument("--cells", default="mlp", help="comma-separated cells for smt / smt+dmt / bptt / tbptt")
    p.add_argument("--seeds", type=int, default=2, help="seeds per combination (0, 1, ...)")
    p.add_argument("--budget", help="wall-clock training time per run: 90, 90s, 10m, 1.5h")
    p.add_argument("--steps", type=int, help="optimizer steps per run (with --budget: whichever ends first)")
    _add_preset_flag(p, "the long-range recipe for the task", lead="the base config of every run: ")
    p.add_argument("--config", help="JSON or YAML file with (part of) the base config")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a base config field")
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument(
        "--eval-lengths",
        metavar="T[,T...]",
        help="also score every run's RNN alone at these lengths (length generalization), e.g. 128,256,512; "
        "streamed from m_∅, O(1) memory per token",
    )
    p.add_argument(
        "--teacher-at-lengths",
        action="store_true",
        help="also score the teacher at the --eval-lengths (whole sequences in memory: refused where they exceed it)",
    )
    p.add_argument("--out", required=True, help="study directory; run again to finish or extend it")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1: each has the whole machine)")
    p.add_argument("--threads", type=int, help="threads per run (default: torch's, all the cores)")
    p.add_argument("--device", default="auto")
    _add_trust_flag(p, "a finished run of the study scored again at --eval-lengths")
    p.set_defaults(func=run)


def add_demo_parser(sub: Subparsers, run: Command) -> None:
    p = sub.add_parser("demo", help="SMT→DMT vs BPTT on an embedded long-range task, same wall-clock each")
    p.add_argument("--task", default="retrieval")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--budget", default="100", help="training time per method: 100, 100s, 2m, 0.5h")
    p.add_argument("--out", help="directory for the two runs (default: a new temporary directory)")
    p.add_argument("--seed", type=int, default=0)
    _add_preset_flag(p, "the long-range recipe for the task")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)
