"""Side-by-side timings of the transform layer's implementation choices, with ratios.

    python benchmarks/bench_transforms.py [--threads 2] [--device cpu]

Each row times two implementations of the same result in one run (the machine
is shared and noisy, so compare the ratio, not the absolute times):

* DCT: our two routes, ``torch.fft`` (Makhoul) vs the dense DCT matrix, by
  length (this sets ``MATMUL_MAX_SIZE``), and the default route vs
  ``scipy.fft.dctn`` on the same data;
* Winograd: tiled ``winograd_conv2d`` vs ``F.conv2d`` (the framework's own kernel).
"""

from __future__ import annotations

import argparse

import scipy.fft
import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from freqnets.transforms import block_dct2, dct, dct2, winograd_conv2d
from freqnets.transforms._blocks import to_blocks


def seconds(fn, min_run_time: float) -> float:
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-run-time", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev, t = args.device, args.min_run_time
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads, float32\n")
    print("| operation | shape | ours (ms) | other (ms) | other / ours |")
    print("|---|---|---|---|---|")

    def row(name: str, shape: str, ours, other, other_name: str) -> None:
        a, b = seconds(ours, t), seconds(other, t)
        print(f"| {name} vs {other_name} | {shape} | {a * 1e3:.2f} | {b * 1e3:.2f} | {b / a:.2f} |")

    for n in (8, 32, 128, 256, 512, 2048):
        x = torch.randn(max(1, 4_000_000 // n), n, device=dev)
        row(
            f"dct n={n} fft",
            str(tuple(x.shape)),
            lambda: dct(x, method="fft"),
            lambda: dct(x, method="matmul"),
            "matmul",
        )
    for shape, block in [((64, 3, 224, 224), 8), ((256, 3, 32, 32), 8)]:
        x = torch.randn(shape, device=dev)
        if dev == "cpu":
            xn = to_blocks(x, block).numpy()
            row(
                f"block_dct2 b={block}",
                str(shape),
                lambda: block_dct2(x, block),
                lambda: scipy.fft.dctn(xn, norm="ortho", axes=(-2, -1)),
                "scipy",
            )
    for shape in [(256, 3, 32, 32), (16, 3, 224, 224), (4, 3, 1024, 1024)]:
        x = torch.randn(shape, device=dev)
        if dev == "cpu":
            xn = x.numpy()
            row(
                "dct2 global",
                str(shape),
                lambda: dct2(x),
                lambda: scipy.fft.dctn(xn, norm="ortho", axes=(-2, -1)),
                "scipy",
            )
    for n, c, o, hw in [(32, 64, 64, 32), (8, 128, 128, 16)]:
        x = torch.randn(n, c, hw, hw, device=dev)
        w = torch.randn(o, c, 3, 3, device=dev)
        for m in (2, 4):
            row(
                f"winograd F({m},3)",
                f"({n},{c},{hw},{hw})x({o},{c},3,3)",
                lambda: winograd_conv2d(x, w, padding=1, m=m),
                lambda: F.conv2d(x, w, padding=1),
                "F.conv2d",
            )


if __name__ == "__main__":
    main()
