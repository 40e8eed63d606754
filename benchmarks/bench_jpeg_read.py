"""Per-file reads side by side (:mod:`freqnets.experiments.bench_reads`, also ``freqnets bench loader --reads``).

python benchmarks/bench_jpeg_read.py [--cifar data/cifar10-mini.zip] [--imagenet PATH] [--files 500]
                                     [--repeats 5] [--python-files 20] [--simd /work/simd]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from freqnets.experiments import bench_reads
from freqnets.experiments.bench_loader import load_payloads


def main() -> None:
    parser = argparse.ArgumentParser(description=bench_reads.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--cifar", type=Path, default=Path("data/cifar10-mini.zip"))
    parser.add_argument("--imagenet", type=Path, default=Path("../shared/data/imagenet-sample/images.zip"))
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python-files", type=int, default=20)
    parser.add_argument("--simd", type=Path, default=None, help="a folder holding Pillow-SIMD (pip install --target)")
    args = parser.parse_args()
    reports = []
    for name, path in (("CIFAR-10", args.cifar), ("ImageNet sample", args.imagenet)):
        if path.exists():
            files = load_payloads(path, args.files)
            reports.append(bench_reads.measure(name, files, args.repeats, args.python_files, args.simd))
        else:
            print(f"{name}: {path} not found, skipped")
    print(bench_reads.report(reports))


if __name__ == "__main__":
    main()
