"""Writes a needle task as fixed-length arrays for `smtrnn train --task arrays`, with NumPy alone (no smtrnn code):
the data a user would bring, laid out as the built-in retrieval does not lay it out.

Each row holds `length` symbols drawn uniformly from 0..symbols-1. The token KEY = symbols appears exactly twice: at
a uniform position p in the first half, and at the last position; the symbol after the first KEY is the needle and
the only target, at the last position (y = -1 elsewhere). The marker and the query are one token, so a model must
tell the first KEY from the second by what came before, and no curriculum or memory size comes with the file.

    python benchmarks/needle_arrays.py runs/data/needle256.npz --length 256 --rows 50000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def needle_rows(rows: int, length: int, symbols: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (rows, length) uint8 and y (rows, length) int8 as described above."""
    x = rng.integers(0, symbols, size=(rows, length), dtype=np.uint8)
    at = rng.integers(0, length // 2, size=rows)
    every = np.arange(rows)
    x[every, at] = symbols
    x[:, -1] = symbols
    y = np.full((rows, length), -1, dtype=np.int8)
    y[:, -1] = x[every, at + 1]
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the .npz file to write (refused if it exists)")
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--rows", type=int, default=50_000, help="training rows; validation and test get 2,000 each")
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; not overwritten")
    if args.length < 4 or not 2 <= args.symbols < 127:
        parser.error("needs --length >= 4 and 2 <= --symbols < 127")
    rng = np.random.default_rng(args.seed)
    splits = {"": args.rows, "_valid": 2000, "_test": 2000}
    arrays = {}
    for suffix, rows in splits.items():
        arrays["x" + suffix], arrays["y" + suffix] = needle_rows(rows, args.length, args.symbols, rng)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {args.rows} training rows of {args.length}, KEY {args.symbols}")


if __name__ == "__main__":
    main()
