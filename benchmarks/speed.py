"""Speed benchmark: SMT's time-parallel training step and the RNN's O(1) inference, side by side in one run.

1. throughput — supervised transitions per second (forward + backward of one optimizer step): the all-timestep SMT
   step (B·T transitions), the reference release's one-transition recipe (`smt.transitions=one`, B transitions
   from two prefix encodings) and BPTT (B·T), at T = 256 / 1024 / 4096;
2. sequential depth — the same steps' seconds against T: BPTT grows with T step by step, SMT in one pass;
3. inference — per-token latency and state memory against context length (256 … 8192), batch 1: the RNN alone
   (one step + readout), the teacher re-encoding its whole context, and the teacher with a KV cache;
4. limit — achieved FLOP/s of the SMT step (FLOPs counted by torch.utils.flop_counter) against this device's
   measured dense fp32 matmul peak;
5. teacher scaling — seconds and peak memory of one SMT step against the training length T (1k … 16k, a fixed batch)
   for the Transformer teacher and the linear-cost one (`teacher.encoder=linear`), and of a BPTT step beside them;
   each (method, T) in a fresh process, so that its peak resident memory is its own.

    python benchmarks/speed.py                      # CPU, a few minutes
    python benchmarks/speed.py --device cuda --name speed_gpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from harness import ROOT, save_report, step_time
from smtrnn.bptt import bptt_loss
from smtrnn.data.tasks import make_task
from smtrnn.model import Model
from smtrnn.presets import small
from smtrnn.reference import smt_one_transition_loss
from smtrnn.smt import smt_loss


def build(device: str, encoder: str = "transformer"):
    torch.manual_seed(0)
    cfg = small("retrieval")
    cfg.teacher.encoder = encoder
    task = make_task("retrieval")
    return cfg, task, Model.for_run(cfg, task.vocab_size).to(device)


def training_steps(lengths: list[int], batch: int, repeats: int, device: str) -> list[dict]:
    cfg, task, model = build(device)
    rows = []
    for length in lengths:
        x, y = (t.to(device) for t in task.sample(batch, length, torch.Generator().manual_seed(0)))
        steps = {
            "smt_all": (lambda: smt_loss(model, x, y, cfg.smt)[0].backward(), batch * length),
            "smt_one": (lambda: smt_one_transition_loss(model, x, y, cfg.smt)[0].backward(), batch),
            "bptt": (lambda: bptt_loss(model, x, y, cfg.bptt)[0].backward(), batch * length),
        }
        row = {"T": length, "batch": batch}
        for name, (fn, transitions) in steps.items():
            seconds = step_time(fn, repeats)
            row |= {f"{name}_step_s": seconds, f"{name}_transitions_per_s": transitions / seconds}
        row["ratio_smt_all_over_one"] = row["smt_all_transitions_per_s"] / row["smt_one_transitions_per_s"]
        row["ratio_smt_all_over_bptt"] = row["smt_all_transitions_per_s"] / row["bptt_transitions_per_s"]
        rows.append(row)
        print(
            f"T={length}: SMT {row['smt_all_step_s']:.3f}s/step, one-transition {row['smt_one_step_s']:.3f}, "
            f"BPTT {row['bptt_step_s']:.3f}",
            flush=True,
        )
    return rows


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _per_token(fn, tokens: int, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(tokens):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / tokens


@torch.no_grad()
def inference(contexts: list[int], tokens: int, device: str) -> list[dict]:
    """Per-token seconds at each context length, batch 1; state bytes the method carries at that length."""
    cfg, task, model = build(device)
    rnn, teacher = model.rnn, model.teacher
    longest = max(contexts) + tokens + 1
    x = torch.randint(0, task.vocab_size, (1, longest), generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    state, cache, read = rnn.init_state(1), teacher.new_cache(), 0
    for length in contexts:
        for t in range(read, length):  # bring both incremental states to `length` tokens (not timed)
            state = rnn.step(state, x[:, t])
            teacher.encode_next(x[:, t], cache)
        read = length
        probe = {"m": state}

        def rnn_token():
            probe["m"] = rnn.step(probe["m"], x[:, length])
            rnn.readout(probe["m"])

        def reencode_token():
            teacher.predict_next(teacher.encode(x[:, : length + 1])[:, -1])

        def cached_token():  # one more token on a throw-away copy of the cache, so each call sees `length`
            keys = [(layer.keys, layer.values) for layer in cache.layers]
            previous = cache.previous
            teacher.predict_next(teacher.encode_next(x[:, length], cache))
            for layer, (k, v) in zip(cache.layers, keys):
                layer.keys, layer.values = k, v
            cache.previous = previous

        row = {"context": length}
        for name, fn, count in (
            ("rnn", rnn_token, tokens),
            ("teacher_reencode", reencode_token, max(2, tokens // 8)),
            ("teacher_kv_cache", cached_token, tokens),
        ):
            fn()  # warm-up
            row[f"{name}_s_per_token"] = _per_token(fn, count, device)
        row |= {"rnn_state_bytes": state.numel() * state.element_size(), "teacher_kv_cache_bytes": cache.nbytes()}
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            reencode_token()
            row["teacher_reencode_peak_bytes"] = torch.cuda.max_memory_allocated() - base
        rows.append(row)
        print(
            f"L={length}: RNN {row['rnn_s_per_token'] * 1e3:.3f} ms/token, re-encode "
            f"{row['teacher_reencode_s_per_token'] * 1e3:.2f}, "
            f"KV cache {row['teacher_kv_cache_s_per_token'] * 1e3:.2f}",
            flush=True,
        )
    first = rows[0]
    for row in rows:
        row["rnn_latency_vs_shortest"] = row["rnn_s_per_token"] / first["rnn_s_per_token"]
        row["reencode_over_rnn"] = row["teacher_reencode_s_per_token"] / row["rnn_s_per_token"]
        row["kv_cache_over_rnn"] = row["teacher_kv_cache_s_per_token"] / row["rnn_s_per_token"]
    return rows


def limit(length: int, batch: int, repeats: int, device: str) -> dict:
    """Achieved FLOP/s of the SMT step against the measured fp32 matmul peak of this device."""
    cfg, task, model = build(device)
    x, y = (t.to(device) for t in task.sample(batch, length, torch.Generator().manual_seed(0)))
    counter = FlopCounterMode(display=False)
    with counter:
        smt_loss(model, x, y, cfg.smt)[0].backward()
    flops = counter.get_total_flops()
    seconds = step_time(lambda: smt_loss(model, x, y, cfg.smt)[0].backward(), repeats)
    n = 8192 if device.startswith("cuda") else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    matmul = step_time(lambda: a @ b, repeats)
    peak = 2 * n**3 / matmul
    return {
        "T": length,
        "batch": batch,
        "smt_step_flops": flops,
        "smt_step_s": seconds,
        "smt_flops_per_s": flops / seconds,
        "matmul_n": n,
        "matmul_peak_flops_per_s": peak,
        "fraction_of_peak": flops / seconds / peak,
    }


SCALING_METHODS = {"smt_transformer": ("smt", "transformer"), "smt_linear": ("smt", "linear"), "bptt": ("bptt", "")}


def scaling_row(method: str, length: int, batch: int, repeats: int, device: str) -> dict:
    """One (method, T) of the teacher scaling study, in this process: the step's median seconds and this process's
    peak resident memory (which includes torch itself: compare rows, not absolutes)."""
    import resource

    kind, encoder = SCALING_METHODS[method]
    cfg, task, model = build(device, encoder or "transformer")
    x, y = (t.to(device) for t in task.sample(batch, length, torch.Generator().manual_seed(0)))
    loss = smt_loss if kind == "smt" else (lambda m, a, b, c: bptt_loss(m, a, b, cfg.bptt))
    seconds = step_time(lambda: loss(model, x, y, cfg.smt)[0].backward(), repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    return {"method": method, "T": length, "batch": batch, "step_s": seconds, "peak_bytes": peak}


def teacher_scaling(lengths: list[int], batch: int, repeats: int, threads: int, device: str) -> list[dict]:
    """Every (method, T) of SCALING_METHODS × lengths in a fresh process (`--scaling-row`); each row also gives its
    step time over the same method's at the shortest T. The Transformer teacher stops at 16k (its attention)."""
    rows = []
    for method in SCALING_METHODS:
        for length in lengths:
            command = [sys.executable, __file__, "--scaling-row", f"{method},{length},{batch},{repeats}"]
            command += ["--threads", str(threads), "--device", device]
            row = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            first = next((r for r in rows if r["method"] == method), row)
            row["step_over_shortest"] = row["step_s"] / first["step_s"]
            rows.append(row)
            print(
                f"{method} T={length}: {row['step_s']:.3f} s/step, peak {row['peak_bytes'] / 2**30:.2f} GiB", flush=True
            )
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"{report['device']}, torch {report['torch']}, {report['threads']} threads; model: `small` preset "
        "(MLP cell, Z = 128, width-64 teacher).",
        "",
        "Training step, forward + backward (transitions/s = supervised transitions per second):",
        "",
        "| T | SMT all-timestep (s/step) | one-transition (s/step) | BPTT (s/step) | SMT transitions/s | "
        "one-transition tr./s | BPTT tr./s | SMT / one-transition | SMT / BPTT |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["training"]:
        lines.append(
            f"| {r['T']} | {r['smt_all_step_s']:.4f} | {r['smt_one_step_s']:.4f} | {r['bptt_step_s']:.4f} | "
            f"{r['smt_all_transitions_per_s']:.0f} | {r['smt_one_transitions_per_s']:.0f} | "
            f"{r['bptt_transitions_per_s']:.0f} | {r['ratio_smt_all_over_one']:.1f}× | "
            f"{r['ratio_smt_all_over_bptt']:.2f}× |"
        )
    lines += [
        "",
        "Inference, batch 1, per generated token (ms) and state carried:",
        "",
        "| context | RNN alone | teacher re-encoding | teacher + KV cache | RNN vs shortest context | "
        "re-encode / RNN | KV cache / RNN | RNN state | KV cache |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["inference"]:
        lines.append(
            f"| {r['context']} | {r['rnn_s_per_token'] * 1e3:.3f} | "
            f"{r['teacher_reencode_s_per_token'] * 1e3:.2f} | {r['teacher_kv_cache_s_per_token'] * 1e3:.3f} | "
            f"{r['rnn_latency_vs_shortest']:.2f}× | {r['reencode_over_rnn']:.1f}× | "
            f"{r['kv_cache_over_rnn']:.1f}× | {r['rnn_state_bytes']} B | "
            f"{r['teacher_kv_cache_bytes'] / 2**20:.1f} MiB |"
        )
    lim = report["limit"]
    lines += [
        "",
        f"SMT step at T = {lim['T']}, B = {lim['batch']}: {lim['smt_flops_per_s'] / 1e9:.1f} GFLOP/s "
        f"achieved against a measured fp32 matmul peak of {lim['matmul_peak_flops_per_s'] / 1e9:.1f} GFLOP/s "
        f"({lim['matmul_n']}² matmul): {100 * lim['fraction_of_peak']:.1f} % of peak.",
    ]
    return "\n".join(lines + scaling_lines(report)) + "\n"


def scaling_lines(report: dict) -> list[str]:
    """Markdown lines (a blank line first) of the teacher scaling study; none where the report has none."""
    if not report.get("teacher_scaling"):
        return []
    lines = [
        "",
        "Teacher scaling: one training step (forward + backward) against T at a fixed batch, each in a fresh "
        "process; peak = that process's peak resident memory (torch included):",
        "",
        "| method | T | batch | s/step | over its shortest T | peak GiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["teacher_scaling"]:
        lines.append(
            f"| {r['method']} | {r['T']} | {r['batch']} | {r['step_s']:.3f} | {r['step_over_shortest']:.1f}× | "
            f"{r['peak_bytes'] / 2**30:.2f} |"
        )
    return lines


def scaling_markdown(report: dict) -> str:
    """The report of `--only-scaling`: the machine, then the scaling table."""
    head = f"{report['device']}, torch {report['torch']}, {report['threads']} threads; `small` preset on retrieval."
    return "\n".join([head, *scaling_lines(report)]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", default="256,1024,4096")
    parser.add_argument("--contexts", default="256,1024,4096,8192")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64, help="timed tokens per context length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="speed")
    parser.add_argument("--scaling-lengths", default="1024,4096,16384", help="teacher scaling: training lengths")
    parser.add_argument("--scaling-batch", type=int, default=4, help="teacher scaling: sequences per step")
    parser.add_argument("--only-scaling", action="store_true", help="run the teacher scaling study alone")
    parser.add_argument("--scaling-row", help=argparse.SUPPRESS)  # METHOD,T,BATCH,REPEATS: one row, as JSON
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    if args.scaling_row:
        method, length, batch, repeats = args.scaling_row.split(",")
        print(json.dumps(scaling_row(method, int(length), int(batch), int(repeats), device)))
        return
    scaling = teacher_scaling(
        [int(t) for t in args.scaling_lengths.split(",")], args.scaling_batch, args.repeats, args.threads, device
    )
    name = torch.cuda.get_device_name() if device.startswith("cuda") else (platform.processor() or platform.machine())
    report = {
        "device": f"{device} ({name}, {os.cpu_count()} CPU cores)",
        "torch": torch.__version__,
        "threads": args.threads,
        "command": " ".join(sys.argv),
        "teacher_scaling": scaling,
    }
    if args.only_scaling:
        save_report(report, args.out, args.name, scaling_markdown)
        return
    report |= {
        "training": training_steps([int(t) for t in args.lengths.split(",")], args.batch, args.repeats, device),
        "inference": inference([int(t) for t in args.contexts.split(",")], args.tokens, device),
        "limit": limit(1024, args.batch, args.repeats, device),
    }
    save_report(report, args.out, args.name, markdown)


if __name__ == "__main__":
    main()
