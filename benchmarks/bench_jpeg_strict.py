"""The strict Huffman decoder of the libjpeg backend against libjpeg's own, side by side.

    python benchmarks/bench_jpeg_strict.py [--files 1000] [--rounds 7] [--data ../shared/data]

``freqnets.jpeg._jpegc`` replaces libjpeg's Huffman decoder with one that also reports the damage
libjpeg lets through (issue 15). This times ``_jpegc.read_coefficients`` (decode + float32 planes,
the work of ``read_dct`` without the Python wrapper) with both decoders on the same files already in
memory, single thread: CIFAR-10 files, ImageNet photos (sequential) and the same photos re-encoded
progressive by Pillow (quality 90). The machine may be shared and noisy: every round times each file
with both decoders back to back (alternating which goes first), each file keeps its fastest time
per decoder, and the ratio is of the sums of those minima.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

from PIL import Image

from freqnets.experiments.bench_loader import SHARED, load_payloads
from freqnets.jpeg._backends import _jpegc


def _read(data: bytes, libjpeg_huffman: bool) -> float:
    start = time.perf_counter()
    _jpegc.read_coefficients(data, 1 << 31, 1000, False, libjpeg_huffman=libjpeg_huffman)
    return time.perf_counter() - start


def compare(files: list[bytes], rounds: int) -> tuple[float, float]:
    """Sum over files of the fastest read, (libjpeg's decoder, the strict one), in seconds."""
    best = [[float("inf"), float("inf")] for _ in files]
    for r in range(rounds):
        for i, data in enumerate(files):
            order = (True, False) if (r + i) % 2 else (False, True)
            for libjpeg_huffman in order:
                t = _read(data, libjpeg_huffman)
                slot = 0 if libjpeg_huffman else 1
                best[i][slot] = min(best[i][slot], t)
    return sum(b[0] for b in best), sum(b[1] for b in best)


def progressive(files: list[bytes]) -> list[bytes]:
    out = []
    for data in files:
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buffer, "JPEG", progressive=True, quality=90)
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="CIFAR-10 files (ImageNet: a tenth of it)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--data", type=Path, default=SHARED, help="folder holding cifar10-jpeg/ and imagenet-sample/")
    args = parser.parse_args()
    cifar = load_payloads(args.data / "cifar10-jpeg" / "test.zip", args.files)
    imagenet = load_payloads(args.data / "imagenet-sample" / "images.zip", max(args.files // 10, 1))
    sets = [("CIFAR-10 test (32x32, 4:2:0)", cifar), ("ImageNet sample (sequential)", imagenet)]
    sets.append(("ImageNet sample re-encoded progressive", progressive(imagenet)))
    print("| files | n | libjpeg's Huffman decoder | strict decoder | ratio |")
    print("|---|---|---|---|---|")
    for name, files in sets:
        if not files:
            continue
        libjpeg, strict = compare(files, args.rounds)
        n = len(files)
        print(f"| {name} | {n} | {libjpeg / n * 1e6:.1f} us | {strict / n * 1e6:.1f} us | {strict / libjpeg:.3f} |")


if __name__ == "__main__":
    main()
