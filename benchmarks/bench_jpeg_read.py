"""Side-by-side timings of reading JPEG files: ``read_dct`` per backend vs Pillow's full decode.

    python benchmarks/bench_jpeg_read.py [--cifar data/cifar10-mini.zip] [--imagenet PATH] [--files 500]

Per image, single thread, bytes already in memory (the loader benchmark, with workers and the
model-ready tensors, is ``freqnets bench loader``; the stages of the cropped pipeline,
``benchmarks/bench_jpeg_stages.py``). Rows:

* ``pillow RGB``: ``np.asarray(Image.open(bytes).convert("RGB"))`` (entropy decoding + IDCT +
  upsampling + colour conversion), the baseline; every ratio is against it on the same files;
* ``pillow draft YCbCr``: the same without colour conversion (libjpeg's YCbCr output);
* ``read_dct[libjpeg]``, ``read_dct[jpeg2dct]`` (4:2:0/grey files only), ``read_dct[python]``
  (on ``--python-files`` files only: it is the slow reference);
* ``parse_header``: the Python marker parser alone, run before every backend.

The machine may be shared and noisy: compare the ratios, printed against Pillow RGB on the same
files; passes alternate between the rows and their baselines, and medians are reported.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from freqnets.experiments.bench_loader import load_payloads
from freqnets.jpeg import available_backends, read_dct
from freqnets.jpeg._markers import parse_header


def per_image(fn, files: list[bytes]) -> float:
    """Mean seconds per file of one pass."""
    start = time.perf_counter()
    for data in files:
        fn(data)
    return (time.perf_counter() - start) / len(files)


def pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def pillow_ycbcr(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("YCbCr", None)
    return np.asarray(image)


def bench(name: str, files: list[bytes], repeats: int, python_files: int) -> None:
    headers = [parse_header(d) for d in files]
    layouts = {}
    for header in headers:
        key = header.subsampling + (" progressive" if header.frame.progressive else "")
        layouts[key] = layouts.get(key, 0) + 1
    pixels = np.mean([h.frame.width * h.frame.height for h in headers])
    print(f"\n{name}: {len(files)} files, mean {pixels:.0f} pixels, layouts {layouts}")
    rows = [
        ("pillow RGB", pillow_rgb, files),
        ("pillow draft YCbCr", pillow_ycbcr, files),
        ("parse_header", parse_header, files),
    ]
    backends = available_backends()
    if "libjpeg" in backends:
        rows.append(("read_dct[libjpeg]", lambda d: read_dct(d, backend="libjpeg"), files))
    if "jpeg2dct" in backends:
        subset = [d for d, h in zip(files, headers, strict=True)
                  if h.sampling_factors in (((2, 2), (1, 1), (1, 1)), ((1, 1),))]  # fmt: skip
        if subset:
            rows.append((f"read_dct[jpeg2dct] ({len(subset)} 4:2:0 files)", lambda d: read_dct(d, backend="jpeg2dct"),
                         subset))  # fmt: skip
    python_subset = files[:python_files]
    rows.append((f"read_dct[python] ({len(python_subset)} files)", lambda d: read_dct(d, backend="python"),
                 python_subset))  # fmt: skip
    # Every ratio is against Pillow RGB on the same files. Passes are round-robin over the rows
    # (and the Pillow baseline of each row), so load changes on a shared machine hit all rows alike.
    timings: list[list[float]] = [[] for _ in rows]
    baselines: list[list[float]] = [[] for _ in rows]
    for _ in range(repeats):
        for index, (label, fn, subset) in enumerate(rows):
            if "python" in label and len(timings[index]) >= 2:
                continue  # the slow reference: two passes (the first warms up)
            baselines[index].append(per_image(pillow_rgb, subset))
            timings[index].append(per_image(fn, subset))
    print(f"{'':40s} {'ms/image':>10s} {'images/s':>10s} {'speed-up vs pillow RGB':>24s}")
    for (label, _, _), times, base in zip(rows, timings, baselines, strict=True):
        if "python" in label and len(times) > 1:  # the first pass of the slow reference warmed up
            times, base = times[1:], base[1:]
        seconds, reference = statistics.median(times), statistics.median(base)
        print(f"{label:40s} {seconds * 1e3:10.3f} {1 / seconds:10.0f} {reference / seconds:23.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", type=Path, default=Path("data/cifar10-mini.zip"))
    parser.add_argument("--imagenet", type=Path, default=Path("../shared/data/imagenet-sample/images.zip"))
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python-files", type=int, default=20)
    args = parser.parse_args()
    print(f"backends here: {available_backends()}")
    for name, path in (("CIFAR-10 (bundled)", args.cifar), ("ImageNet sample", args.imagenet)):
        if path.exists():
            bench(name, load_payloads(path, args.files), args.repeats, args.python_files)
        else:
            print(f"\n{name}: {path} not found, skipped")


if __name__ == "__main__":
    main()
