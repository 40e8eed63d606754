"""Per-photo cost of ``read_dct`` around its C call: header parses, read plans, the garbage collector.

    python benchmarks/bench_jpeg_header.py [--imagenet PATH] [--files 500] [--repeats 5]

Every photo of a photo set has a header of its own (size, Huffman tables), so a whole-file read pays, per file,
what ``read_dct`` does before and after decoding: finding the header's facts and a read plan, and the result
object. Rows, in microseconds per photo (bytes in memory, one thread, medians of round-robin passes):

* ``read_dct`` and the direct path's C call alone (``_jpegc.read_direct`` with capsules made beforehand): their
  difference is what ``read_dct`` adds per photo;
* the stages: ``parse_header`` (the Python parser), ``_plan`` from its header (including ``direct_header``, the
  C parse of the same header bytes for the direct path), ``direct_header`` alone, and, where the tree has them,
  ``_jpegc.parse_direct`` (one C parse of the file's header) and ``_direct_plan`` (the plan from it);
* the cyclic garbage collector's time during the ``read_dct`` passes (``gc.callbacks``), per photo.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from pathlib import Path

from freqnets.experiments.bench_loader import load_payloads
from freqnets.jpeg import _backends, read_dct, reader
from freqnets.jpeg._markers import parse_header


class GcTimer:
    """Time spent in the cyclic garbage collector while enabled, and its runs per generation."""

    def __init__(self) -> None:
        self.seconds, self.runs, self.enabled, self._start = 0.0, [0, 0, 0], False, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if not self.enabled:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.runs[info["generation"]] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet", type=Path, default=Path("../shared/data/imagenet-sample/images.zip"))
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    files = load_payloads(args.imagenet, args.files)
    options = reader._checked_options(True, reader.DEFAULT_MAX_PIXELS, "auto", "natural", None, None,
                                      reader.DEFAULT_MAX_BYTES, False)  # fmt: skip
    headers = [parse_header(d) for d in files]
    prefixes = [d[: h.first_scan.data_start] for d, h in zip(files, headers, strict=True)]
    plans = [reader._plan(h, options, p) for h, p in zip(headers, prefixes, strict=True)]
    taken = [(d, p) for d, p in zip(files, plans, strict=True) if p.direct is not None]
    read_direct = _backends._jpegc.read_direct
    rows = {
        "read_dct (whole file)": lambda: [read_dct(d) and None for d in files],
        f"_jpegc.read_direct, C alone ({len(taken)} files)": lambda: [
            read_direct(d, p.direct, p.zigzag, p.windows, p.down) and None for d, p in taken
        ],
        "parse_header (Python)": lambda: [parse_header(d) for d in files],
        "_plan from the parsed header (incl. direct_header)": lambda: [
            reader._plan(h, options, p) for h, p in zip(headers, prefixes, strict=True)
        ],
        "direct_header (C parse of the header bytes)": lambda: [
            _backends.direct_header(p, h) for h, p in zip(headers, prefixes, strict=True)
        ],
    }
    if hasattr(_backends._jpegc, "parse_direct"):
        rows["_jpegc.parse_direct (one C parse of the file's header)"] = lambda: [
            _backends.parse_direct(d, reader.DEFAULT_MAX_PIXELS) for d in files
        ]
        rows["_direct_plan (C parse + plan)"] = lambda: [reader._direct_plan(d, options) for d in files]
    counts = {label: len(taken) if label.startswith("_jpegc.read_direct") else len(files) for label in rows}
    timer = GcTimer()
    times: dict[str, list[float]] = {label: [] for label in rows}
    for _ in range(args.repeats):
        for label, run in rows.items():
            timer.enabled = label.startswith("read_dct")
            start = time.perf_counter()
            run()
            times[label].append((time.perf_counter() - start) / counts[label])
            timer.enabled = False
    reads = args.repeats * len(files)
    print(f"{len(files)} photos, {args.repeats} round-robin passes, load average {os.getloadavg()[0]:.1f}")
    for label, values in times.items():
        print(f"{label:56s} {statistics.median(values) * 1e6:9.1f} us/photo (min {min(values) * 1e6:.1f})")
    print(f"{'garbage collector during the read_dct passes':56s} {timer.seconds / reads * 1e6:9.1f} us/photo "
          f"(runs per generation {timer.runs}, {len(gc.get_objects())} objects tracked)")  # fmt: skip


if __name__ == "__main__":
    main()
