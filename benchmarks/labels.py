"""Label once, train many: three RNN cells fit to one label set against joint SMT of the same cell.

One joint-SMT run per cell trains teacher and RNN together for the budget; the first cell's teacher labels a fixed
set of sequences (`smtrnn.data.labels`); each cell is then fit to those labels alone (method labels) for the same
budget. Reported: transitions/s of a labels step vs a joint SMT step (same cell, batch and T, median after
warm-up), the RNN alone from m_∅ on held-out sequences for both, and the label store's disk bytes per million
tokens. Writes benchmarks/results/labels.json and labels.md.

    python benchmarks/labels.py                                   # about 8 minutes on one core
    python benchmarks/labels.py --budget 10 --sequences 512 --repeats 3     # a quick check (about 2 minutes)
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import torch

from harness import ROOT, budget, save_report, step_time
from smtrnn.config import TrainConfig
from smtrnn.data.labels import load_labels
from smtrnn.labelling import write_labels
from smtrnn.model import Model
from smtrnn.presets import small
from smtrnn.smt import labels_loss, smt_loss
from smtrnn.trainer import train


def base_config(task: str, length: int, cell: str, budget: float, seed: int):
    cfg = small(task)
    cfg.task.seq_len, cfg.rnn.cell, cfg.train.device, cfg.train.seed = length, cell, "cpu", seed
    cfg.train.steps, cfg.train.max_seconds, cfg.train.eval_batches = 10**9, budget, 8
    return cfg


def throughput(cfg, store, repeats: int) -> dict:
    """Seconds per optimizer-free step (forward + backward) of joint SMT and of labels training, same batch."""
    torch.manual_seed(0)
    joint = Model.for_run(cfg, store.manifest["vocab_size"])
    labels_cfg = base_config(cfg.task.name, cfg.task.seq_len, cfg.rnn.cell, 0, 0)
    labels_cfg.train.method = "labels"
    alone = Model.for_run(labels_cfg, store.manifest["vocab_size"])
    x, y, m = store.sample(cfg.optim.batch_size, cfg.task.seq_len, torch.Generator().manual_seed(0))
    times = {
        "joint_smt": step_time(lambda: smt_loss(joint, x, y, cfg.smt)[0].backward(), repeats),
        "labels": step_time(lambda: labels_loss(alone, x, y, m, cfg.smt)[0].backward(), repeats),
    }
    per_s = {f"{name}_transitions_per_s": x.numel() / t for name, t in times.items()}
    return per_s | {"ratio_labels_over_joint": per_s["labels_transitions_per_s"] / per_s["joint_smt_transitions_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="retrieval")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--cells", default="mlp,gru,transformer")
    parser.add_argument("--budget", type=budget, default=60.0, help="training time per run: 60, 1m")
    parser.add_argument("--sequences", type=int, default=4096, help="sequences labelled")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cells = args.cells.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        joint = {}
        for cell in cells:
            joint[cell] = train(
                base_config(args.task, args.seq_len, cell, args.budget, args.seed),
                work / f"smt-{cell}",
                show_progress=False,
            )
        manifest = write_labels(work / f"smt-{cells[0]}", work / "labels", args.sequences)
        store = load_labels(work / "labels")
        disk = sum(s["bytes"] for s in manifest["shards"])
        for cell in cells:
            cfg = store.config()
            cfg.rnn.cell = cell
            cfg.train = TrainConfig(
                method="labels",
                labels=str(work / "labels"),
                steps=10**9,
                max_seconds=args.budget,
                seed=args.seed,
                device="cpu",
                eval_batches=8,
            )
            alone = train(cfg, work / f"labels-{cell}", show_progress=False)
            rows.append(
                {
                    "cell": cell,
                    "joint_smt_rnn_accuracy": joint[cell]["rnn_accuracy"],
                    "labels_rnn_accuracy": alone["rnn_accuracy"],
                    "joint_smt_rnn_bits": joint[cell]["rnn_bits_per_token"],
                    "labels_rnn_bits": alone["rnn_bits_per_token"],
                }
                | throughput(base_config(args.task, args.seq_len, cell, 0, 0), store, args.repeats)
            )
    report = {
        "device": "cpu",
        "threads": 1,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "task": args.task,
        "T": args.seq_len,
        "budget_s": args.budget,
        "sequences": args.sequences,
        "teacher": f"joint SMT, cell {cells[0]}",
        "label_dtype": manifest["dtype"],
        "disk_bytes_per_million_tokens": disk / (args.sequences * args.seq_len) * 1e6,
        "cells": rows,
    }
    save_report(report, args.out, "labels", markdown)


def markdown(report: dict) -> str:
    lines = [
        f"Label once, train many: {report['task']} T={report['T']}, {report['budget_s']:.0f} s per run, "
        f"{report['sequences']} labelled sequences ({report['label_dtype']}, "
        f"{report['disk_bytes_per_million_tokens'] / 1e6:.1f} MB per million tokens), CPU 1 thread.",
        "",
        "| cell | labels transitions/s | joint SMT transitions/s | ratio | RNN acc, labels | RNN acc, joint SMT |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["cells"]:
        lines.append(
            f"| {r['cell']} | {r['labels_transitions_per_s']:.0f} | {r['joint_smt_transitions_per_s']:.0f} | "
            f"{r['ratio_labels_over_joint']:.2f} | {r['labels_rnn_accuracy']:.3f} | "
            f"{r['joint_smt_rnn_accuracy']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
