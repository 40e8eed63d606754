"""Side-by-side timings of reading JPEG files: ``read_dct`` per backend vs Pillow's full decode.

    python benchmarks/bench_jpeg_read.py [--cifar data/cifar10-mini.zip] [--imagenet PATH] [--files 500]
                                         [--simd /work/simd]

Per image, single thread, bytes already in memory (the loader benchmark, with workers and the
model-ready tensors, is ``freqnets bench loader``; the stages of the cropped pipeline,
``benchmarks/bench_jpeg_stages.py``). Rows:

* ``pillow RGB``: ``np.asarray(Image.open(bytes).convert("RGB"))`` (entropy decoding + IDCT +
  upsampling + colour conversion), the baseline; every ratio is against it on the same files;
* ``pillow draft YCbCr``: the same without colour conversion (libjpeg's YCbCr output);
* ``read_dct[libjpeg]``, ``read_dct[jpeg2dct]`` (4:2:0/grey files only), ``read_dct[python]``
  (on ``--python-files`` files only: it is the slow reference);
* ``parse_header``: the Python marker parser alone, run before every backend;
* ``read_dct[libjpeg], direct path off``: the same reads through libjpeg's ``jpeg_read_coefficients`` (the
  C extension's direct decoder switched off: the path before it);
* ``jpeg2dct loads`` (``jpeg2dct.numpy.loads(data, normalized=False)``, 4:2:0/grey files) and the C reader
  alone (``_jpegc.read_coefficients``; ``_jpegc.read_direct``, the direct path, on the files it takes):
  per-call references, ``read_dct``'s rows also get a ratio to jpeg2dct's time on the same files (issue 17's
  target: within 1.2x on CIFAR-sized files);
* ``pillow-simd RGB`` (with ``--simd DIR``, a folder holding Pillow-SIMD, e.g. ``pip install --target DIR
  pillow-simd``): the same decode by Pillow-SIMD, timed in a child process (one process cannot import two
  PIL packages) whose passes alternate with this process's rows.

The machine may be shared and noisy: compare the ratios, printed against Pillow RGB on the same
files; passes alternate between the rows and their baselines, and medians are reported.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

from freqnets.experiments.bench_loader import load_payloads
from freqnets.jpeg import _backends, available_backends, read_dct
from freqnets.jpeg._markers import MAX_SCANS, parse_header

# The child process of --simd: receives the files (pickled) on stdin, reports its PIL, then times one pass of
# the Pillow RGB decode per line it reads.
_SIMD_CHILD = """
import io, pickle, sys, time
import numpy as np
import PIL
from PIL import Image, features
files = pickle.load(sys.stdin.buffer)
print(PIL.__version__, PIL.__file__, features.check_feature('libjpeg_turbo'), flush=True)
for line in sys.stdin:
    subset = files[: int(line)]
    start = time.perf_counter()
    for data in subset:
        np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    print((time.perf_counter() - start) / len(subset), flush=True)
"""


class SimdPillow:
    """Pillow-SIMD (from the folder ``path``) decoding ``files`` in a child process, one pass per call."""

    def __init__(self, path: Path, files: list[bytes]) -> None:
        env = dict(os.environ, PYTHONPATH=f"{path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.child = subprocess.Popen([sys.executable, "-c", _SIMD_CHILD], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, text=False)  # fmt: skip
        pickle.dump(files, self.child.stdin)
        self.child.stdin.flush()
        self.version = self.child.stdout.readline().decode().strip()

    def per_image(self, count: int) -> float:
        self.child.stdin.write(f"{count}\n".encode())
        self.child.stdin.flush()
        return float(self.child.stdout.readline())

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait()


def per_image(fn, files: list[bytes]) -> float:
    """Mean seconds per file of one pass."""
    start = time.perf_counter()
    for data in files:
        fn(data)
    return (time.perf_counter() - start) / len(files)


def pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def libjpeg_path(data: bytes):
    """read_dct with the C extension's direct path switched off: libjpeg's jpeg_read_coefficients reads every file
    (the path before issue 17's direct decoder)."""
    _backends.DIRECT = False
    try:
        return read_dct(data, backend="libjpeg")
    finally:
        _backends.DIRECT = True


def pillow_ycbcr(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("YCbCr", None)
    return np.asarray(image)


def bench(name: str, files: list[bytes], repeats: int, python_files: int, simd: Path | None = None) -> None:
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
    subset = [d for d, h in zip(files, headers, strict=True)
              if h.sampling_factors in (((2, 2), (1, 1), (1, 1)), ((1, 1),))]  # fmt: skip
    if "libjpeg" in backends:
        rows.append(("read_dct[libjpeg]", lambda d: read_dct(d, backend="libjpeg"), files))
        rows.append(("read_dct[libjpeg], direct path off", libjpeg_path, files))
        read = _backends._jpegc.read_coefficients
        rows.append(("_jpegc.read_coefficients (C alone)", lambda d: read(d, 1 << 30, MAX_SCANS, False), files))
        # the direct path's C call alone, its header capsules made beforehand, one per distinct header as read_dct
        # keeps them (files it does not take: None)
        by_header: dict[bytes, object] = {}
        for d, h in zip(files, headers, strict=True):
            prefix = d[: h.first_scan.data_start]
            if prefix not in by_header:
                by_header[prefix] = _backends.direct_header(prefix, h)
        capsules = {id(d): by_header[d[: h.first_scan.data_start]] for d, h in zip(files, headers, strict=True)}
        taken = [d for d in files if capsules[id(d)] is not None]
        if taken:
            direct = _backends._jpegc.read_direct
            rows.append((f"_jpegc.read_direct (C alone, {len(taken)} files)",
                         lambda d: direct(d, capsules[id(d)], False), taken))  # fmt: skip
    if "jpeg2dct" in backends and subset:
        from jpeg2dct.numpy import loads

        rows.append((f"read_dct[jpeg2dct] ({len(subset)} 4:2:0 files)", lambda d: read_dct(d, backend="jpeg2dct"),
                     subset))  # fmt: skip
        rows.append((f"jpeg2dct loads ({len(subset)} 4:2:0 files)", lambda d: loads(d, normalized=False), subset))

        def loads_as_tensors(data: bytes) -> list[torch.Tensor]:
            # what a PyTorch pipeline pays for jpeg2dct's NumPy planes: read_dct returns tensors
            return [torch.from_numpy(plane) for plane in loads(data, normalized=False)]

        rows.append((f"jpeg2dct loads + torch.from_numpy ({len(subset)} 4:2:0 files)", loads_as_tensors, subset))
        if "libjpeg" in backends and len(subset) < len(files):
            rows.append((f"read_dct[libjpeg] ({len(subset)} 4:2:0 files)", lambda d: read_dct(d, backend="libjpeg"),
                         subset))  # fmt: skip
    child = SimdPillow(simd, files) if simd is not None else None
    if child is not None:
        print(f"pillow-simd child: PIL {child.version}")
        rows.append(("pillow-simd RGB (child process)", None, files))
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
            # files in the same order as the child's copy: the first len(subset) of them are the subset
            timings[index].append(child.per_image(len(subset)) if fn is None else per_image(fn, subset))
    if child is not None:
        child.close()
    medians = {label: statistics.median(times[1:] if "python" in label and len(times) > 1 else times)
               for (label, _, _), times in zip(rows, timings, strict=True)}  # fmt: skip
    j2d = next((label for label in medians if label.startswith("jpeg2dct loads")), None)
    print(f"PIL in this process: {PIL.__version__} ({Path(PIL.__file__).parent})")
    print(f"{'':44s} {'us/image':>10s} {'images/s':>10s} {'vs pillow RGB':>14s} {'time / jpeg2dct':>16s}")
    for (label, _, subset), times, base in zip(rows, timings, baselines, strict=True):
        if "python" in label and len(times) > 1:  # the first pass of the slow reference warmed up
            times, base = times[1:], base[1:]
        seconds, reference = statistics.median(times), statistics.median(base)
        versus = ""
        if j2d is not None and len(subset) == len(rows[[r[0] for r in rows].index(j2d)][2]):
            versus = f"{seconds / medians[j2d]:15.2f}x"
        print(f"{label:44s} {seconds * 1e6:10.1f} {1 / seconds:10.0f} {reference / seconds:13.2f}x {versus}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", type=Path, default=Path("data/cifar10-mini.zip"))
    parser.add_argument("--imagenet", type=Path, default=Path("../shared/data/imagenet-sample/images.zip"))
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python-files", type=int, default=20)
    parser.add_argument("--simd", type=Path, default=None, help="a folder holding Pillow-SIMD (pip install --target)")
    args = parser.parse_args()
    print(f"backends here: {available_backends()}; load average {os.getloadavg()[0]:.1f}")
    for name, path in (("CIFAR-10", args.cifar), ("ImageNet sample", args.imagenet)):
        if path.exists():
            bench(name, load_payloads(path, args.files), args.repeats, args.python_files, args.simd)
        else:
            print(f"\n{name}: {path} not found, skipped")


if __name__ == "__main__":
    main()
