"""Pack CIFAR-10's JPEG files into the git-ignored folder that travels to the GPU machine.

    python scripts/pack_device_data.py [--source ../shared/data/cifar10-jpeg] [--out device_data] [--per-class N]

Writes ``<out>/cifar10_jpeg.npz`` (all 50,000 + 10,000 files' bytes, offsets and labels; the identical
JPEG headers compress away) and prints its size and the time taken. ``../shared`` does not travel to the
GPU machine and the checkout that does is limited to 64 MiB, so this is how scripts/device_check.py
gets its data there (docs/device.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freqnets.experiments.cifar_gpu import load_pack, pack_cifar_jpeg  # noqa: E402

# ../shared/data/cifar10-jpeg beside the checkout (found from a git worktree nested deeper, too)
DEFAULT_SOURCE = next(
    (p / "shared" / "data" / "cifar10-jpeg" for p in ROOT.parents if (p / "shared" / "data" / "cifar10-jpeg").is_dir()),
    ROOT.parent / "shared" / "data" / "cifar10-jpeg",
)
PACK_NAME = "cifar10_jpeg.npz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with train.zip and test.zip")
    parser.add_argument("--out", type=Path, default=ROOT / "device_data", help="folder to write the pack into")
    parser.add_argument("--per-class", type=int, default=None, help="first N files per class (default: all)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        info = pack_cifar_jpeg(args.source, args.out / PACK_NAME, args.per_class)
    except (FileNotFoundError, ValueError) as error:
        print(f"pack_device_data: error: {error}", file=sys.stderr)
        return 2
    packed = time.perf_counter() - start
    splits, _ = load_pack(args.out / PACK_NAME)  # read back: the pack is whole
    counts = ", ".join(f"{name} {len(split)}" for name, split in splits.items())
    print(f"wrote {args.out / PACK_NAME}: {counts} images, {info['bytes'] / 2**20:.1f} MiB, {packed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
