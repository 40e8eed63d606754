"""Per-frequency mean and std of JPEG DCT coefficients, the input statistics of the DCT-input models.

    python scripts/dct_stats.py                      # both data sets, prints the tables for _dct_input.py
    python scripts/dct_stats.py --data cifar10 --source reencode

For every image: the dequantised DCT coefficients of Y, Cb and Cr, chroma at 4:2:0 resolution, in
zigzag order; the statistics are over all blocks of all images (greyscale images count with zero
chroma, as the collate gives them). Two sources:

* ``read_dct`` (default when ``freqnets.jpeg.read_dct`` exists): the coefficients stored in the file,
  batched by ``freqnets.jpeg.DCTCollate`` (chroma converted to 4:2:0 in the DCT domain where the file
  is not 4:2:0, zero chroma for greyscale).
* ``reencode``: decode with Pillow, convert to YCbCr (JFIF), average chroma 2x2, blockwise DCT of the
  level-shifted planes, rounded to the file's own quantisation steps. Close to, but not exactly, the
  stored coefficients (Pillow's decoder rounds and upsamples chroma); kept as a cross-check.

Data: ``data/cifar10-mini.zip`` (train/ split) and ``/work/shared/data/imagenet-sample/images.zip``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch

from freqnets.experiments.data import DEFAULT_DATA, image_payloads
from freqnets.transforms import block_dct2, blocks_to_channels

DATA = {
    "cifar10": (DEFAULT_DATA, "train"),
    "imagenet": (Path("/work/shared/data/imagenet-sample/images.zip"), None),
}
NAMES = {"cifar10": "CIFAR10", "imagenet": "IMAGENET"}


def _zigzag_steps(table) -> torch.Tensor:
    """Pillow's quantisation table (natural order) as (64, 1, 1) zigzag-ordered steps."""
    from freqnets.transforms import zigzag_indices

    return torch.tensor(list(table), dtype=torch.float64)[zigzag_indices(8)].view(64, 1, 1)


def reencode_planes(data: bytes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, cb, cr)`` zigzag channels ``(64, h, w)`` re-computed from the decoded image (see module docstring)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    tables = image.quantization
    gray = image.mode == "L"
    ycbcr = torch.from_numpy(np.asarray(image.convert("L" if gray else "YCbCr"), dtype=np.float64))
    ycbcr = ycbcr[None] if gray else ycbcr.permute(2, 0, 1)

    def dct(plane: torch.Tensor, table) -> torch.Tensor:
        coeffs = blocks_to_channels(block_dct2(plane - 128.0), order="zigzag")
        steps = _zigzag_steps(table)
        return torch.round(coeffs / steps) * steps

    y = dct(ycbcr[0], tables[0])
    if gray:
        h, w = -(-y.shape[1] // 2), -(-y.shape[2] // 2)
        zeros = torch.zeros(64, h, w, dtype=torch.float64)
        return y, zeros, zeros
    chroma = torch.nn.functional.avg_pool2d(ycbcr[1:][None], 2, ceil_mode=True)[0]
    table = tables.get(1, tables[0])
    return y, dct(chroma[0], table), dct(chroma[1], table)


def read_dct_planes(data: bytes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, cb, cr)`` zigzag channels as stored in the file, chroma at 4:2:0: exactly what the models get.

    Goes through ``DCTCollate`` (one sample), so greyscale files get its zero chroma and 4:4:4 files
    its DCT-domain conversion.
    """
    from freqnets.jpeg import DCTCollate, read_dct

    batch = DCTCollate(layout="planes")([(read_dct(data), 0)])
    y, cbcr = batch.y[0].double(), batch.cbcr[0].double()
    return y, cbcr[:64], cbcr[64:]


class RunningStats:
    """Per-channel sums in float64, merged over images."""

    def __init__(self) -> None:
        self.count = 0
        self.sum = torch.zeros(64, dtype=torch.float64)
        self.sum_sq = torch.zeros(64, dtype=torch.float64)

    def add(self, channels: torch.Tensor) -> None:
        flat = channels.reshape(64, -1)
        self.count += flat.shape[1]
        self.sum += flat.sum(1)
        self.sum_sq += (flat * flat).sum(1)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.sum / self.count
        # Floored at 1 (a coefficient's smallest quantisation step): some high chroma frequencies are
        # zero in every block of a data set and would otherwise divide by zero.
        return mean, (self.sum_sq / self.count - mean * mean).clamp_min(0).sqrt().clamp_min(1.0)


def dataset_stats(
    zip_path: Path, prefix: str | None, source: str, limit: int | None
) -> tuple[list[float], list[float], int]:
    planes = read_dct_planes if source == "read_dct" else reencode_planes
    stats = [RunningStats() for _ in range(3)]
    files = image_payloads(zip_path, prefix, limit or None, suffixes=(".jpg", ".jpeg"))
    for _, payload in files:
        for stat, channels in zip(stats, planes(payload), strict=True):
            stat.add(channels)
    mean = torch.cat([s.mean_std()[0] for s in stats]).tolist()
    std = torch.cat([s.mean_std()[1] for s in stats]).tolist()
    return mean, std, len(files)


def _table(name: str, values: list[float]) -> str:
    rows = [", ".join(f"{v:.4g}" for v in values[i : i + 8]) for i in range(0, len(values), 8)]
    return f"{name}: tuple[float, ...] = (\n" + "".join(f"    {row},\n" for row in rows) + ")"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=sorted(DATA), nargs="+", default=sorted(DATA))
    parser.add_argument("--source", choices=("read_dct", "reencode"), default="read_dct")
    parser.add_argument("--limit", type=int, default=None, help="first N images only (for a quick look)")
    args = parser.parse_args(argv)
    for key in args.data:
        path, prefix = DATA[key]
        if not path.exists():
            print(f"# {key}: {path} not found, skipped", file=sys.stderr)
            continue
        mean, std, count = dataset_stats(path, prefix, args.source, args.limit)
        print(f"# {key}: {count} images from {path} ({prefix or 'all'}/), source={args.source}")
        print(_table(f"{NAMES[key]}_DCT_MEAN", mean))
        print(_table(f"{NAMES[key]}_DCT_STD", std))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
