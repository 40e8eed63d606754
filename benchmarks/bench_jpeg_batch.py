"""Batches decoded on several threads inside the C extension: ``DCTReadCollate(threads=N)`` side by side.

    python benchmarks/bench_jpeg_batch.py [--files 5000] [--batch-size 128] [--rounds 5] [--data ../shared/data]

One process, files in memory, batches of ``--batch-size`` files straight into a stacked, normalised
``DCTCollate`` batch (as ``freqnets bench loader``'s ``DCTReadCollate`` rows, without a DataLoader):
threads 1 (the calling thread only), 2 and every core, on CIFAR-10 files (shared ``train.zip``) and on
ImageNet photos with the 224-px ``grid`` window; each with the C extension's direct decoder (the default) and
without it (``_backends.DIRECT = False``: libjpeg's ``jpeg_read_coefficients`` reads every file, the path before
it). The machine may be shared: rounds alternate the runs and each keeps its fastest round; the ratios are
against one thread and against the direct path off in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from freqnets.experiments.bench_loader import SHARED, load_payloads
from freqnets.jpeg import DCTCollate, DCTReadCollate, _backends


def epoch_seconds(collate: DCTReadCollate, files: list[bytes], batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(files), batch_size):
        collate([(data, 0) for data in files[i : i + batch_size]])
    return time.perf_counter() - start


def bench(name: str, files: list[bytes], grid, batch_size: int, rounds: int) -> None:
    counts = sorted({1, 2, os.cpu_count() or 1})
    collates = {n: DCTReadCollate(DCTCollate(layout="stacked", grid=grid), threads=n) for n in counts}
    # each thread count with the C extension's direct decoder and without it (libjpeg reads every file)
    runs = [(n, direct) for n in counts for direct in (True, False)]
    best = dict.fromkeys(runs, float("inf"))
    for r in range(rounds):
        for n, direct in runs if r % 2 == 0 else runs[::-1]:
            _backends.DIRECT = direct
            try:
                best[n, direct] = min(best[n, direct], epoch_seconds(collates[n], files, batch_size))
            finally:
                _backends.DIRECT = True
    print(f"\n{name}: {len(files)} files, batch {batch_size}, best of {rounds} rounds")
    print("| threads | direct path | images/s | vs 1 thread | vs direct path off |")
    print("|---:|---|---:|---:|---:|")
    for n, direct in runs:
        seconds = best[n, direct]
        print(f"| {n} | {'on' if direct else 'off'} | {len(files) / seconds:,.0f} | {best[1, direct] / seconds:.2f}x "
              f"| {best[n, False] / seconds:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=SHARED, help="folder holding cifar10-jpeg/ and imagenet-sample/")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the collate's own tensor work on the calling thread only
    cifar = args.data / "cifar10-jpeg" / "train.zip"
    if cifar.exists():
        bench("CIFAR-10 (shared train.zip)", load_payloads(cifar, args.files), None, args.batch_size, args.rounds)
    imagenet = args.data / "imagenet-sample" / "images.zip"
    if imagenet.exists():
        files = load_payloads(imagenet, max(args.files // 10, 32))
        bench("ImageNet sample, grid (28, 28)", files, (28, 28), min(args.batch_size, 32), args.rounds)


if __name__ == "__main__":
    main()
