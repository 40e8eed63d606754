"""Build all of CIFAR-10 as JPEG files, in the layout of the shared ``cifar10-jpeg`` set, on any machine.

Downloads CIFAR-10 (Krizhevsky, 2009) with torchvision (about 170 MB, once) and writes

    <out>/train.zip   train/<class>/<NNNN>.jpg   5,000 per class
    <out>/test.zip    test/<class>/<NNNN>.jpg    1,000 per class

as baseline JPEG files (IJG quality 75, 4:2:0 chroma subsampling, Pillow/libjpeg), numbered per
class in data-set order from 0000, stored uncompressed (zip method 0, random access) with fixed
timestamps, so a second run gives the same bytes. The result reads with
``freqnets.jpeg.JpegFolderDataset(out / "train.zip", split="train")``.

    python scripts/make_cifar10_jpeg.py [--root ~/.cache/cifar10] [--out data/cifar10-jpeg] [--quality 75]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

FIXED_TIME = (2020, 1, 1, 0, 0, 0)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def jpeg_bytes(image, quality: int = 75) -> bytes:
    """A PIL image (or HxWx3 uint8 array) as baseline JPEG bytes, 4:2:0."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    return buffer.getvalue()


def write_split(samples: Iterable, classes: Sequence[str], split: str, out: Path, quality: int = 75) -> int:
    """Write ``(image, label)`` samples to ``out`` (a zip) as ``<split>/<class>/<NNNN>.jpg``; return the count."""
    counts = [0] * len(classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in [f"{split}/"] + [f"{split}/{cls}/" for cls in classes]:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o40755 << 16
            archive.writestr(info, b"")
        for image, label in samples:
            label = int(label)
            if not 0 <= label < len(classes):
                raise ValueError(f"label {label} outside the {len(classes)} classes")
            info = zipfile.ZipInfo(f"{split}/{classes[label]}/{counts[label]:04d}.jpg", date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, jpeg_bytes(image, quality))
            counts[label] += 1
    tmp.replace(out)
    return sum(counts)


def build(splits: dict[str, Iterable], classes: Sequence[str], out_dir: Path, quality: int = 75) -> dict[str, int]:
    """Write ``out_dir/<split>.zip`` for each ``split -> samples``; return the image count per split."""
    return {
        split: write_split(samples, classes, split, out_dir / f"{split}.zip", quality)
        for split, samples in splits.items()
    }


def main(argv: Sequence[str] | None = None) -> None:
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root", type=Path, default=Path.home() / ".cache" / "cifar10", help="torchvision download folder"
    )
    parser.add_argument(
        "--out", type=Path, default=root / "data" / "cifar10-jpeg", help="folder for train.zip, test.zip"
    )
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality (default 75, as the shared set)")
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 100:
        parser.error(f"--quality must be in [1, 100], got {args.quality}")
    from torchvision.datasets import CIFAR10

    splits = {split: CIFAR10(str(args.root), train=split == "train", download=True) for split in ("train", "test")}
    classes = list(splits["train"].classes)
    if tuple(classes) != CIFAR10_CLASSES:
        raise ValueError(f"unexpected CIFAR-10 classes {classes}")
    counts = build(splits, classes, args.out, args.quality)
    for split, count in counts.items():
        path = args.out / f"{split}.zip"
        print(f"wrote {count} images, {path.stat().st_size / 1e6:.1f} MB, to {path}")


if __name__ == "__main__":
    main()
