"""Where the time of DCT loading goes, stage by stage, and what a DataLoader worker adds.

    python benchmarks/bench_jpeg_stages.py [--imagenet PATH] [--cifar data/cifar10-mini.zip] [--repeats 5]

Part 1, ImageNet sample, 224-px centre window (``crop=(28, 28)``), per image, one thread, bytes in
memory, best of ``--repeats`` passes; the C extension's phases are separated by asking it for less:

* ``pillow RGB``: ``Image.open(...).convert("RGB")`` (the loader benchmark's baseline decode);
* ``pillow draft 1/8``: ``Image.draft`` to 1/8 scale (entropy decoding with almost no IDCT);
* ``C decode only``: entropy decoding up to the window's last MCU row, one block written per plane;
* ``C crop``, ``C crop + 4:2:0``: the window written, then also (4:4:4 files) its chroma averaged to 4:2:0;
* ``read_dct(crop, chroma="420", zigzag)``: the same through the Python API;
* ``DCTCollate`` stacked / planes on those results (batches of 32, normalised).

Part 2, CIFAR-10, ``DCTReadCollate`` (stacked, batch 128): images/s in one process, in two plain
processes (``multiprocessing``, no DataLoader), and through a DataLoader with 2 workers (torch's
default sharing strategy), with the workers' CPU time per image from ``/proc/<pid>/stat`` (Linux).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import time
from pathlib import Path

import torch
from PIL import Image

from freqnets.experiments.bench_loader import load_payloads
from freqnets.jpeg import DCTCollate, DCTReadCollate, read_dct
from freqnets.jpeg._backends import _jpegc, _kernel_bytes
from freqnets.jpeg.chroma import centre_windows
from freqnets.jpeg.reader import HEADER_CACHE

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def best_ms(fn, count: int, repeats: int) -> float:
    """Best of ``repeats`` passes of ``fn()``, in ms per item of ``count``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / count * 1e3


def stages(files: list[bytes], repeats: int) -> None:
    headers = [HEADER_CACHE.parse(f, None) for f in files]
    windows = [centre_windows(h.frame, (28, 28))[0] for h in headers]
    last_block = [[(r + n - 1, c, 1, 1) for r, c, n, _ in w] for w in windows]
    kernel = (2, 2, _kernel_bytes())
    samples = [(read_dct(f, crop=(28, 28), chroma="420", order="zigzag"), 0) for f in files]
    stats = torch.zeros(192), torch.ones(192)
    stacked = DCTCollate("stacked", grid=(28, 28), normalize=stats)
    planes = DCTCollate("planes", grid=(28, 28), normalize=stats)

    def draft() -> None:
        for f in files:
            with Image.open(io.BytesIO(f)) as image:
                image.draft("YCbCr", (image.width // 8, image.height // 8))
                image.load()

    def pillow() -> None:
        for f in files:
            with Image.open(io.BytesIO(f)) as image:
                image.convert("RGB")

    def collate(fn) -> None:
        for i in range(0, len(samples), 32):
            fn(samples[i : i + 32])

    def read_c(window_list, with_kernel: bool = False) -> None:
        for f, w, h in zip(files, window_list, headers, strict=True):
            down = kernel if with_kernel and h.subsampling == "4:4:4" else None
            _jpegc.read_coefficients(f, 1 << 30, 1000, 1, w, down)

    rows = [
        ("pillow RGB", pillow),
        ("pillow draft 1/8", draft),
        ("C decode only", lambda: read_c(last_block)),
        ("C crop", lambda: read_c(windows)),
        ("C crop + 4:2:0", lambda: read_c(windows, True)),
        ("read_dct(crop, chroma, zigzag)", lambda: [read_dct(f, crop=(28, 28), chroma="420", order="zigzag")
                                                    for f in files]),
        ("DCTCollate stacked", lambda: collate(stacked)),
        ("DCTCollate planes", lambda: collate(planes)),
    ]  # fmt: skip
    print(f"ImageNet sample, {len(files)} files, 224-px window, ms per image (best of {repeats}):")
    for name, fn in rows:
        print(f"  {name:32s} {best_ms(fn, len(files), repeats):7.3f}")


def _rate_in_process(files: list[bytes], seconds: float, queue) -> None:
    torch.set_num_threads(1)
    reader = DCTReadCollate(DCTCollate("stacked"))
    samples = [(f, 0) for f in files]
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        for i in range(0, len(samples), 128):
            reader(samples[i : i + 128])
        count += len(samples)
    queue.put(count / (time.perf_counter() - start))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_overhead(files: list[bytes]) -> None:
    for processes in (1, 2):
        queue = mp.Queue()
        jobs = [mp.Process(target=_rate_in_process, args=(files, 2.0, queue)) for _ in range(processes)]
        for job in jobs:
            job.start()
        total = sum(queue.get() for _ in jobs)
        for job in jobs:
            job.join()
        print(f"  {processes} plain process(es): {total:,.0f} images/s")
    items = [(f, 0) for f in (files * -(-10_000 // len(files)))[:10_000]]
    loader = torch.utils.data.DataLoader(
        items, batch_size=128, num_workers=2, persistent_workers=True,
        collate_fn=DCTReadCollate(DCTCollate("stacked")),
    )  # fmt: skip
    for _ in range(2):  # the second epoch is timed
        iterator = iter(loader)
        pids = [w.pid for w in iterator._workers]
        before = [_cpu_seconds(p) for p in pids]
        start = time.perf_counter()
        for _ in iterator:
            pass
        elapsed = time.perf_counter() - start
        cpu = sum(_cpu_seconds(p) for p in pids) - sum(before)
    rate, per_image = len(items) / elapsed, cpu / len(items) * 1e6
    print(f"  DataLoader, 2 workers: {rate:,.0f} images/s, workers' CPU {per_image:.1f} us per image")
    single = best_ms(lambda: _rate_once(files), len(files), 3) * 1e3
    print(f"  one process, per image: {single:.1f} us")


def _rate_once(files: list[bytes]) -> None:
    reader = DCTReadCollate(DCTCollate("stacked"))
    samples = [(f, 0) for f in files]
    for i in range(0, len(samples), 128):
        reader(samples[i : i + 128])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imagenet", type=Path, default=SHARED / "imagenet-sample" / "images.zip")
    parser.add_argument("--cifar", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "cifar10-mini.zip")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.imagenet.exists():
        stages(load_payloads(args.imagenet, 10**9), args.repeats)
    else:
        print(f"{args.imagenet} not found: ImageNet stages skipped")
    print(f"CIFAR-10 ({args.cifar.name}, train files), DCTReadCollate stacked, batch 128:")
    worker_overhead(load_payloads(args.cifar, 10**9, "train"))


if __name__ == "__main__":
    main()
