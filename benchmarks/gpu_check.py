"""One-GPU check (within --budget seconds, 270 by default, on one H100): SMT vs BPTT step throughput at T = 1024 and
4096, in fp32 and under bf16 autocast, and a short SMT training run with its losses. Prints ONE JSON object.

The training run gets what the throughput measurements leave of the budget (train.max_seconds; at least a tenth of
it), so on any GPU where those measurements fit, the check ends within the budget plus start-up and the final
evaluation; "steps" says how many training steps it managed.

    python benchmarks/gpu_check.py                 # CUDA: the full check
    python benchmarks/gpu_check.py --tiny          # CPU, a few seconds: tiny sizes, so CI runs the script
    python benchmarks/gpu_check.py --compile       # also torch.compile the training run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from harness import budget, throughput
from smtrnn.presets import debug, small
from smtrnn.trainer import Trainer


def training_run(preset, steps: int, seconds: float, device: str, precision: str, compile_: bool) -> dict:
    """An SMT run on retrieval of `steps` steps or `seconds` of training, whichever ends first: its logged losses,
    steps per second and final evaluation."""
    cfg = preset("retrieval")
    cfg.train.method, cfg.train.steps, cfg.train.log_every, cfg.train.seed = "smt", steps, max(1, steps // 20), 0
    cfg.train.max_seconds = seconds
    cfg.train.device, cfg.train.precision, cfg.train.compile = device, precision, compile_
    with tempfile.TemporaryDirectory(prefix="smtrnn-gpu-check-") as out:
        trainer = Trainer(cfg, Path(out) / "run", device, show_progress=False)
        start = time.perf_counter()
        result = trainer.run()
        seconds = time.perf_counter() - start
        records = [json.loads(line) for line in (Path(out) / "run" / "metrics.jsonl").read_text().splitlines()]
    return {
        "preset": preset.__name__,
        "task": "retrieval",
        "T": cfg.task.seq_len,
        "batch": cfg.optim.batch_size,
        "steps": trainer.step,
        "max_steps": steps,
        "precision": precision,
        "compile": compile_,
        "seconds": seconds,
        "train_seconds": trainer.elapsed,
        "steps_per_s": trainer.step / trainer.elapsed,
        "losses": [{"step": r["step"], "loss": r["loss"]} for r in records if "loss" in r],
        "eval": result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny sizes: seconds (CI)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training run's modules")
    parser.add_argument(
        "--budget", type=budget, default=270.0, help="for the whole check (training gets what remains, at least 1/10)"
    )
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.tiny
    device = "cuda" if cuda else "cpu"
    if args.tiny:
        torch.set_num_threads(1)
        lengths, batch, repeats, precisions, preset, steps = (16, 32), 2, 1, ("fp32",), debug, 10
    else:
        lengths, batch, repeats, precisions, preset, steps = (1024, 4096), 16, 3, ("fp32", "bf16"), small, 300
    start = time.perf_counter()
    rows = []
    for precision in precisions:
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        for length in lengths:
            with autocast:
                row = throughput(length, "mlp", batch, repeats, device)
            rows.append(row | {"precision": precision})
    remaining = max(args.budget / 10, args.budget - (time.perf_counter() - start))
    training = training_run(preset, steps, remaining, device, "bf16" if cuda else "fp32", args.compile)
    report = {
        "benchmark": {"script": "benchmarks/gpu_check.py"},  # printed, no table
        "device": device,
        "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "tiny": args.tiny,
        "throughput": rows,
        "training": training,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "budget_s": args.budget,
        "seconds": time.perf_counter() - start,
        "command": " ".join(sys.argv),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
