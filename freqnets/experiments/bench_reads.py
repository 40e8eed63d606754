"""Per-file reads side by side: ``read_dct`` per backend against Pillow's full decode and jpeg2dct's ``loads``.

``freqnets bench loader --reads`` (and ``benchmarks/bench_jpeg_read.py``, the same code with its own options)::

    freqnets bench loader --reads [--data CIFAR_ZIP] [--images 1000] [--simd DIR]

Per image, one thread, bytes already in memory (the loader rows of ``freqnets bench loader`` add workers and
model-ready tensors; ``benchmarks/bench_jpeg_stages.py`` has the stages of the cropped pipeline). Rows:

* ``pillow RGB``: ``np.asarray(Image.open(bytes).convert("RGB"))`` (entropy decoding + IDCT + upsampling +
  colour conversion), the anchor: every row's ratio is against it on the same files, in the same pass;
* ``pillow draft YCbCr``: the same without colour conversion (libjpeg's YCbCr output);
* ``parse_header``: the Python marker parser alone;
* ``read_dct[libjpeg]`` (whole files: the per-file call a data set pays), the same with the C extension's
  direct path off (libjpeg's ``jpeg_read_coefficients``), the C calls alone (``_jpegc.read_coefficients``;
  ``_jpegc.read_direct`` on the files it takes, header capsules made beforehand);
* ``read_dct[jpeg2dct]``, ``jpeg2dct loads`` (``jpeg2dct.numpy.loads(data, normalized=False)``) and ``loads`` +
  ``torch.from_numpy`` on the 4:2:0 and grey files (what jpeg2dct reads without re-encoding), where jpeg2dct is
  installed: ``read_dct``'s rows then also get a ratio to ``loads``' time on the same files;
* ``read_dct[python]`` on ``python_files`` files (the slow reference);
* ``pillow-simd RGB`` (``simd``: a folder holding Pillow-SIMD, e.g. ``pip install --target DIR pillow-simd``):
  the same decode by Pillow-SIMD in a child process (one process cannot import two PIL packages) whose passes
  alternate with this process's rows.

Passes are round-robin over the rows and their Pillow baselines and medians are reported, so a shared, noisy
machine's load hits all rows alike: compare the ratios.
"""

from __future__ import annotations

import io
import os
import pickle
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

from ..jpeg import _backends, available_backends, read_dct
from ..jpeg._markers import MAX_SCANS, parse_header

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


def check_simd(path: Path) -> None:
    """Refuse a Pillow-SIMD folder that is not a folder (before any work: the child would import plain Pillow)."""
    if not Path(path).is_dir():
        raise ValueError(f"--simd {path}: not a folder holding Pillow-SIMD (pip install --target DIR pillow-simd)")


class SimdPillow:
    """Pillow-SIMD (from the folder ``path``) decoding ``files`` in a child process, one pass per call."""

    def __init__(self, path: Path, files: list[bytes]) -> None:
        check_simd(path)
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


@dataclass
class ReadRow:
    """One row: median ``seconds`` per file over ``files`` files, the Pillow RGB decode's median on the same files
    in the same passes (``pillow``), and jpeg2dct ``loads``' median on them where it ran on the same files."""

    label: str
    files: int
    seconds: float
    pillow: float
    jpeg2dct: float | None = None


@dataclass
class ReadReport:
    """The rows of one data set and what it holds (``layouts``: subsampling name -> file count)."""

    name: str
    files: int
    mean_pixels: float
    layouts: dict[str, int]
    rows: list[ReadRow]


def measure(
    name: str, files: list[bytes], repeats: int = 5, python_files: int = 3, simd: Path | None = None
) -> ReadReport:
    """Time the rows (module docstring) on ``files`` (JPEG bytes), ``repeats`` round-robin passes."""
    if not files:
        raise ValueError(f"{name}: no JPEG files to time")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    headers = [parse_header(d) for d in files]
    layouts: dict[str, int] = {}
    for header in headers:
        key = header.subsampling + (" progressive" if header.frame.progressive else "")
        layouts[key] = layouts.get(key, 0) + 1
    pixels = float(np.mean([h.frame.width * h.frame.height for h in headers]))
    rows: list[tuple[str, object, list[bytes]]] = [
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
    loads_label = None
    if "jpeg2dct" in backends and subset:
        from jpeg2dct.numpy import loads

        loads_label = f"jpeg2dct loads ({len(subset)} 4:2:0 files)"
        rows.append((f"read_dct[jpeg2dct] ({len(subset)} 4:2:0 files)", lambda d: read_dct(d, backend="jpeg2dct"),
                     subset))  # fmt: skip
        rows.append((loads_label, lambda d: loads(d, normalized=False), subset))

        def loads_as_tensors(data: bytes) -> list[torch.Tensor]:
            # what a PyTorch pipeline pays for jpeg2dct's NumPy planes: read_dct returns tensors
            return [torch.from_numpy(plane) for plane in loads(data, normalized=False)]

        rows.append((f"jpeg2dct loads + torch.from_numpy ({len(subset)} 4:2:0 files)", loads_as_tensors, subset))
        if "libjpeg" in backends and len(subset) < len(files):
            rows.append((f"read_dct[libjpeg] ({len(subset)} 4:2:0 files)", lambda d: read_dct(d, backend="libjpeg"),
                         subset))  # fmt: skip
    child = SimdPillow(simd, files) if simd is not None else None
    if child is not None:
        rows.append((f"pillow-simd RGB (child process: PIL {child.version.split()[0]})", None, files))
    python_subset = files[: max(0, python_files)]
    if python_subset:
        rows.append((f"read_dct[python] ({len(python_subset)} files)", lambda d: read_dct(d, backend="python"),
                     python_subset))  # fmt: skip
    # Passes are round-robin over the rows (and the Pillow baseline of each row), so load changes on a shared
    # machine hit all rows alike. The slow python reference gets two passes, the first a warm-up.
    timings: list[list[float]] = [[] for _ in rows]
    baselines: list[list[float]] = [[] for _ in rows]
    try:
        for _ in range(repeats):
            for index, (label, fn, chosen) in enumerate(rows):
                if label.startswith("read_dct[python]") and len(timings[index]) >= 2:
                    continue
                baselines[index].append(per_image(pillow_rgb, chosen))
                # files in the same order as the child's copy: the first len(chosen) of them are the subset
                timings[index].append(child.per_image(len(chosen)) if fn is None else per_image(fn, chosen))
    finally:
        if child is not None:
            child.close()
    result = []
    for (label, _, chosen), times, base in zip(rows, timings, baselines, strict=True):
        if label.startswith("read_dct[python]") and len(times) > 1:  # the first pass warmed up
            times, base = times[1:], base[1:]
        result.append(ReadRow(label, len(chosen), statistics.median(times), statistics.median(base)))
    if loads_label is not None:
        loads_row = next(r for r in result if r.label == loads_label)
        for row in result:
            if row.files == loads_row.files and (row.label.startswith("read_dct") or row is loads_row):
                row.jpeg2dct = loads_row.seconds
    return ReadReport(name, len(files), pixels, layouts, result)


def report(reports: list[ReadReport]) -> str:
    """Markdown tables, one per data set: us per image, images/s, x Pillow RGB, time / jpeg2dct ``loads``."""
    lines = [f"PIL in this process: {PIL.__version__} ({Path(PIL.__file__).parent}); backends: "
             f"{', '.join(available_backends())}; load average {os.getloadavg()[0]:.1f}"]  # fmt: skip
    for r in reports:
        layouts = ", ".join(f"{k} {v}" for k, v in r.layouts.items())
        lines += ["", f"{r.name}: {r.files} files, mean {r.mean_pixels:,.0f} pixels ({layouts})", "",
                  "| read | files | us/image | images/s | x Pillow RGB (speed) | time / jpeg2dct loads |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in r.rows:
            versus = "" if row.jpeg2dct is None else f"{row.seconds / row.jpeg2dct:.2f}x"
            lines.append(f"| {row.label} | {row.files} | {row.seconds * 1e6:,.1f} | {1 / row.seconds:,.0f} | "
                         f"{row.pillow / row.seconds:.2f}x | {versus} |")  # fmt: skip
    return "\n".join(lines)
