"""Loading small sets of images (a zip archive or a folder of JPEG/PNG files) as tensors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data" / "cifar10-mini.zip"


def decode_rgb(payload: bytes, name: str, size: int) -> np.ndarray:
    """Image bytes -> ``(size, size, 3)`` uint8 RGB (bilinear resize if needed); ``ValueError`` names the file."""
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot decode image {name!r}: {error}") from error


def load_images(source: str | Path, split: str | None = "test", limit: int = 500, size: int = 32) -> torch.Tensor:
    """Load up to ``limit`` images, sorted by name, as ``(N, 3, size, size)`` float64 in ``[0, 1]``.

    Args:
        source: a zip archive or a folder, searched recursively for image files.
        split: keep only files under this top-level folder (``"test"``), or ``None`` for all.
        limit: the most images to load.
        size: images of another size are resized (bilinear) to ``size x size``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: no image found, or a file that cannot be decoded.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"no such data: {source}")

    def wanted(name: str) -> bool:
        return name.lower().endswith(IMAGE_SUFFIXES) and (split is None or name.split("/")[0] == split)

    arrays = []
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if wanted(p.relative_to(source).as_posix()))[:limit]
        arrays = [decode_rgb(p.read_bytes(), str(p), size) for p in files]
    else:
        with zipfile.ZipFile(source) as archive:
            names = sorted(n for n in archive.namelist() if wanted(n))[:limit]
            arrays = [decode_rgb(archive.read(n), n, size) for n in names]
    if not arrays:
        raise ValueError(f"no images{'' if split is None else f' under {split}/'} in {source}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() / 255.0
