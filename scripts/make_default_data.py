"""Build the bundled default data set (``freqnets/experiments/bundled/cifar10-mini.zip``) from shared CIFAR-10.

A class-balanced subset of CIFAR-10 (Krizhevsky, 2009) as the baseline JPEG
files (quality 75, 4:2:0) of ``../shared/data/cifar10-jpeg/``: for each of the 10
classes, the first ``--train-per-class`` files of ``train/<class>/`` and the
first ``--test-per-class`` of ``test/<class>/`` in file-name order. The archive
is stored uncompressed with fixed timestamps, so running this script again
gives the same bytes.

    python scripts/make_default_data.py [--source ../shared/data/cifar10-jpeg] [--out PATH]
"""

from __future__ import annotations

import argparse
import zipfile
from collections import defaultdict
from pathlib import Path

FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def build(source: Path, out: Path, train_per_class: int, test_per_class: int) -> int:
    """Write the subset to ``out``; return the number of images."""
    members: list[tuple[str, bytes]] = []
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        with zipfile.ZipFile(source / f"{split}.zip") as archive:
            by_class: dict[str, list[str]] = defaultdict(list)
            for name in archive.namelist():
                parts = name.split("/")
                if len(parts) == 3 and parts[2].lower().endswith(".jpg"):
                    by_class[parts[1]].append(name)
            if len(by_class) != 10:
                raise ValueError(f"{source / split}.zip should hold 10 class folders, found {sorted(by_class)}")
            for cls in sorted(by_class):
                names = sorted(by_class[cls])[:per_class]
                if len(names) < per_class:
                    raise ValueError(f"class {cls!r} of {split} has only {len(names)} images")
                members += [(name, archive.read(name)) for name in names]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, payload in members:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, payload)
    tmp.replace(out)
    return len(members)


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=root.parent / "shared" / "data" / "cifar10-jpeg")
    bundled = root / "freqnets" / "experiments" / "bundled" / "cifar10-mini.zip"
    parser.add_argument("--out", type=Path, default=bundled)
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=50)
    args = parser.parse_args()
    count = build(args.source, args.out, args.train_per_class, args.test_per_class)
    print(f"wrote {count} images, {args.out.stat().st_size / 1e6:.2f} MB, to {args.out}")


if __name__ == "__main__":
    main()
