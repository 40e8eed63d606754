"""Measure the numbers quoted in docs/jpeg.md: encode_dct vs libjpeg, and DCT-domain augmentation vs pixels.

1. ``encode_dct`` against Pillow's (libjpeg) encoding of the same RGB pixels, read back by ``read_dct``:
   the fraction of quantised coefficients that are equal, off by one step, and the largest difference.
2. Exact augmentations (flips, rotation, transpose): largest difference from the pixel operation
   re-encoded in float64; ``resized_crop``: PSNR of the decoded planes against a per-plane bicubic
   antialiased pixel resize.

Needs ``../shared/data/imagenet-sample/images.zip`` (and the bundled ``data/cifar10-mini.zip``).

    python scripts/measure_jpeg_accuracy.py
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from freqnets.experiments.data import DEFAULT_DATA, image_payloads
from freqnets.jpeg import augment as A
from freqnets.jpeg import decode_planes, encode_dct, read_dct
from freqnets.jpeg.encode import encode_planes

ROOT = Path(__file__).resolve().parent.parent
IMAGENET = ROOT.parent / "shared" / "data" / "imagenet-sample" / "images.zip"
CIFAR = DEFAULT_DATA


def members(path: Path, suffix: str, limit: int | None) -> list[bytes]:
    """The first ``limit`` files (name order) of a zip whose names end with ``suffix``."""
    return [payload for _, payload in image_payloads(path, limit=limit, suffixes=(suffix,))]


def agreement() -> None:
    for label, files, crop in (
        ("ImageNet", members(IMAGENET, ".jpeg", 40), 256),
        ("CIFAR-10", members(CIFAR, ".jpg", 200), 32),
    ):
        for quality in (50, 75, 95):
            equal = off_by_one = total = 0
            largest = 0.0
            for payload in files:
                image = Image.open(io.BytesIO(payload)).convert("RGB")
                image = image.crop((0, 0, min(image.size[0], crop), min(image.size[1], crop)))
                buffer = io.BytesIO()
                image.save(buffer, "JPEG", quality=quality, subsampling=2)
                theirs, ours = read_dct(buffer.getvalue()), encode_dct(image, quality=quality)
                for a, b, table in zip(ours.planes(), theirs.planes(), ours.quant_tables, strict=True):
                    steps = ((a - b) / table.view(-1, 1, 1)).round().abs()
                    equal += int((steps == 0).sum())
                    off_by_one += int((steps == 1).sum())
                    total += steps.numel()
                    largest = max(largest, float(steps.max()))
            print(f"{label} q{quality}: {equal / total:.2%} equal, {off_by_one / total:.2%} off by one, "
                  f"max {largest:.0f} steps ({total} coefficients)")  # fmt: skip


def planes_psnr(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    err = torch.cat([(x.double() - y.double()).flatten() for x, y in zip(a, b, strict=True)])
    return 10 * torch.log10(255.0**2 / err.pow(2).mean()).item()


def augmentation() -> None:
    files = members(IMAGENET, ".jpeg", None)
    exact_ops = {
        "hflip": (A.hflip, lambda p: p.flip(-1)),
        "rot90": (lambda c: A.rot90(c, 1), lambda p: torch.rot90(p, 1, (-2, -1))),
        "transpose": (A.transpose, lambda p: p.transpose(-1, -2)),
    }
    worst = dict.fromkeys(exact_ops, 0.0)
    psnr: dict[tuple[int, int], list[float]] = {}
    for payload in files[::25]:
        c = read_dct(payload)
        if min(c.size) < 256:
            continue
        c = A.crop(c, 0, 0, 256, 256)
        for op_name, (dct_op, pixel_op) in exact_ops.items():
            out = dct_op(c)
            ref = encode_planes(
                [pixel_op(p) for p in decode_planes(c, crop=False)], out.quant_tables, size=out.size,
                subsampling=out.subsampling, sampling_factors=out.sampling_factors, quantize_coefficients=False,
            )  # fmt: skip
            pairs = zip(out.planes(), ref.planes(), strict=True)
            err = max((a.double() - b.double()).abs().max().item() for a, b in pairs)
            worst[op_name] = max(worst[op_name], err)
        for crop, size in ((256, 128), (192, 128), (128, 224), (256, 224), (128, 96)):
            out = A.resized_crop(c, 0, 0, crop, crop, (size, size))
            refs = []
            for plane, pixels in zip(c.planes(), decode_planes(c, crop=False), strict=True):
                fy, fx = c.y.shape[1] // plane.shape[1], c.y.shape[2] // plane.shape[2]
                window = pixels[: crop // fy, : crop // fx][None, None]
                refs.append(F.interpolate(window, size=(size // fy, size // fx), mode="bicubic", antialias=True)[0, 0])
            psnr.setdefault((crop, size), []).append(planes_psnr(decode_planes(out), refs))
    print("exact transforms, largest difference (coefficient units):", {k: f"{v:.1e}" for k, v in worst.items()})
    for (crop, size), values in psnr.items():
        print(f"resized_crop {crop}->{size} ({len(values)} photos): median {np.median(values):.1f} dB, "
              f"10th percentile {np.percentile(values, 10):.1f} dB, min {np.min(values):.1f} dB")  # fmt: skip


if __name__ == "__main__":
    if not IMAGENET.exists():
        raise SystemExit(f"needs {IMAGENET}")
    agreement()
    augmentation()
