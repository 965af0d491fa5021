"""Step time before and after the one-host-read training step: the same `Trainer.train_step` of smtrnn at an earlier
commit (each loss term read with `.item()` inside the objectives, a finiteness check before backward, masked CE's
`any()`: about a dozen host reads per step) and of this checkout (one read per step), side by side.

Each version runs in its own process (its own copy of `smtrnn`, taken from git), one thread, alternating
before/after for several rounds so both see the same machine load; a round times `--steps` steps after two warm-up
steps and keeps the median step time. On a CPU a host read costs almost nothing, so the ratio measures only that the
change costs nothing here; on an accelerator each read is a device synchronization (not measured here).

    python benchmarks/step_syncs.py                       # the default: `small` on retrieval T = 64, 3 methods
    python benchmarks/step_syncs.py --rounds 2 --steps 5  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from harness import ROOT, save_report

BEFORE = "9a05483"  # the last commit with per-term .item() in the objectives
# method name -> (train.method, dmt.fraction): smt+dmt at fraction 0.99 trains by DMT from the second step on
METHODS = {"smt": ("smt", 0.25), "dmt": ("smt+dmt", 0.99), "bptt": ("bptt", 0.25)}

WORKER = r"""
import json, statistics, sys, tempfile, time
import torch
torch.set_num_threads(1)
from smtrnn.presets import small
from smtrnn.trainer import Trainer
method, fraction, length, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg = small("retrieval")
cfg.train.method, cfg.dmt.fraction, cfg.task.seq_len, cfg.train.steps = method, fraction, length, 10**6
cfg.train.curriculum_start, cfg.train.device = 0, "cpu"  # no curriculum: every step at T
trainer = Trainer(cfg, tempfile.mkdtemp() + "/run", "cpu", show_progress=False)
for _ in range(2):
    trainer.train_step()
times = []
for _ in range(steps):
    start = time.perf_counter()
    trainer.train_step()
    times.append(time.perf_counter() - start)
print(json.dumps({"median_s": statistics.median(times)}))
"""


def checkout(rev: str, into: Path) -> Path:
    """The smtrnn package as it was at `rev` (git archive), under `into`."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "smtrnn"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as archive:
        archive.extractall(into, filter="data")
    return into


def time_steps(source: Path, method: str, length: int, steps: int) -> float:
    train_method, fraction = METHODS[method]
    env = os.environ | {"PYTHONPATH": str(source), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, train_method, str(fraction), str(length), str(steps)],
        capture_output=True,
        text=True,
        env=env,
        cwd=source,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])["median_s"]


def markdown(report: dict) -> str:
    lines = [
        f"Median seconds per training step, `small` preset on retrieval T = {report['seq_len']}, 1 thread, "
        f"{report['rounds']} alternating rounds of {report['steps']} steps; before = smtrnn at "
        f"{report['before']} (a host read per loss term), after = one host read per step. {report['device']}, "
        f"torch {report['torch']}.",
        "",
        "| method | before (s/step) | after (s/step) | after / before |",
        "|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(f"| {row['method']} | {row['before_s']:.4f} | {row['after_s']:.4f} | {row['ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE, help="the git revision to compare against")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"before": checkout(args.before, Path(tmp)), "after": ROOT}
        for method in METHODS:
            times = {"before": [], "after": []}
            for _ in range(args.rounds):
                for version, source in sources.items():
                    times[version].append(time_steps(source, method, args.seq_len, args.steps))
            before, after = statistics.median(times["before"]), statistics.median(times["after"])
            rows.append(
                {"method": method, "before_s": before, "after_s": after, "ratio": after / before, "rounds": times}
            )
            print(f"{method}: {before:.4f} -> {after:.4f} s/step", flush=True)
    report = {
        "before": args.before,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "rounds": args.rounds,
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "torch": torch.__version__,
        "rows": rows,
    }
    save_report(report, args.out, "step_syncs", markdown)


if __name__ == "__main__":
    main()
