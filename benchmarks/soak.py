"""Soak benchmark: does a long run hold its memory flat?

One CPU run of the debug preset (SMT on retrieval, 2000 steps) through `Trainer.run`, doing everything a long run
does — logging every 25 steps, a checkpoint every 100 (the newest 3 kept), an evaluation every 500 — while the
process samples its own memory every 100 steps: the resident set (VmRSS in /proc/self/status) and its peak so far
(getrusage ru_maxrss). Growth compares the mean RSS of the last third of the samples with the first third's; the
run counts as flat when that growth is under the noise bound (the larger of 4 MiB and 2 %). The first third holds the
SMT teacher warm-up (the first 25 % of the debug preset), whose end allocates the RNN terms' buffers once, so the
report adds the least-squares slope of RSS over the samples after it: a leak shows there as a steady climb.

    python benchmarks/soak.py                 # 2000 steps, a minute or two on one core
    python benchmarks/soak.py --steps 200     # a quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness import ROOT, save_report
from smtrnn.checkpoint import CHECKPOINTS_DIR
from smtrnn.presets import debug
from smtrnn.trainer import Trainer

MIB = 2**20
NOISE_MIB, NOISE_FRACTION = 4.0, 0.02


def rss_bytes() -> int:
    """The current resident set size (Linux /proc; elsewhere the peak, the best the OS offers)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def soak(steps: int, every: int, task: str, method: str) -> dict:
    cfg = debug(task)
    cfg.train.method, cfg.train.steps, cfg.train.device = method, steps, "cpu"
    cfg.train.log_every, cfg.train.save_every, cfg.train.keep_checkpoints, cfg.train.eval_every = 25, 100, 3, 500
    samples = []
    with tempfile.TemporaryDirectory() as work:
        trainer = Trainer(cfg, Path(work) / "run", show_progress=False)
        step_once = trainer.train_step
        start = time.perf_counter()

        def step_and_sample() -> dict:
            metrics = step_once()
            if trainer.step % every == 0:
                samples.append(
                    {
                        "step": trainer.step,
                        "seconds": round(time.perf_counter() - start, 2),
                        "rss_mib": round(rss_bytes() / MIB, 2),
                        "peak_rss_mib": round(peak_rss_bytes() / MIB, 2),
                    }
                )
            return metrics

        trainer.train_step = step_and_sample
        result = trainer.run()
        kept = sorted(p.name for p in (Path(work) / "run" / CHECKPOINTS_DIR).iterdir())
    after_warmup = [s for s in samples if s["step"] > cfg.smt.teacher_alone * steps + every]
    third = max(len(samples) // 3, 1)
    first = sum(s["rss_mib"] for s in samples[:third]) / third
    last = sum(s["rss_mib"] for s in samples[-third:]) / third
    growth = last - first
    bound = max(NOISE_MIB, NOISE_FRACTION * first)
    return {
        "steps": steps,
        "sample_every": every,
        "task": task,
        "method": method,
        "seconds": samples[-1]["seconds"],
        "samples": samples,
        "first_third_rss_mib": round(first, 2),
        "last_third_rss_mib": round(last, 2),
        "growth_mib": round(growth, 2),
        "growth_fraction": round(growth / first, 4),
        "peak_growth_mib": round(samples[-1]["peak_rss_mib"] - samples[third - 1]["peak_rss_mib"], 2),
        "noise_bound_mib": round(bound, 2),
        "flat": abs(growth) < bound,
        "slope_after_warmup_mib_per_1000_steps": round(1000 * slope(after_warmup), 3),
        "checkpoints_kept": kept,
        "final_rnn_accuracy": result["rnn_accuracy"],
    }


def slope(samples: list[dict]) -> float:
    """Least-squares d(RSS MiB)/d(step) over the samples (0 with fewer than two)."""
    if len(samples) < 2:
        return 0.0
    steps, rss = [s["step"] for s in samples], [s["rss_mib"] for s in samples]
    mean_step, mean_rss = sum(steps) / len(steps), sum(rss) / len(rss)
    covariance = sum((x - mean_step) * (y - mean_rss) for x, y in zip(steps, rss))
    return covariance / sum((x - mean_step) ** 2 for x in steps)


def markdown(report: dict) -> str:
    s = report["soak"]
    threads = f"{report['threads']} thread{'s' * (report['threads'] > 1)}"
    lines = [
        f"Soak: {s['steps']} steps of the debug preset ({s['method']}, {s['task']}) on {report['device']}, "
        f"torch {report['torch']}, {threads}; RSS sampled every {s['sample_every']} steps.",
        "",
        "| step | seconds | RSS (MiB) | peak RSS (MiB) |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['step']} | {r['seconds']:.1f} | {r['rss_mib']:.1f} | {r['peak_rss_mib']:.1f} |" for r in s["samples"]
    ]
    verdict = "flat" if s["flat"] else "GROWING"
    lines += [
        "",
        f"Mean RSS, first third {s['first_third_rss_mib']:.1f} MiB, last third {s['last_third_rss_mib']:.1f} "
        f"MiB: growth {s['growth_mib']:+.2f} MiB ({100 * s['growth_fraction']:+.2f} %), peak RSS "
        f"{s['peak_growth_mib']:+.2f} MiB after the first third; noise bound {s['noise_bound_mib']:.1f} MiB: "
        f"**{verdict}**. After the teacher warm-up RSS moves "
        f"{s['slope_after_warmup_mib_per_1000_steps']:+.3f} MiB per 1000 steps. Checkpoints kept at the end: "
        f"{', '.join(s['checkpoints_kept'])}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=100, help="sample memory every this many steps")
    parser.add_argument("--task", default="retrieval")
    parser.add_argument("--method", default="smt")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="soak")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report = {
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "command": " ".join(sys.argv),
        "soak": soak(args.steps, args.every, args.task, args.method),
    }
    save_report(report, args.out, args.name, markdown)


if __name__ == "__main__":
    main()
