"""Training and test images for the ablation, from JPEG zips, folder trees, ImageFolders or CIFAR-10.

Every source becomes the same in-memory :class:`ImageSplit` pair: ``uint8``
images ``(N, 3, S, S)`` and ``int64`` labels, classes in sorted-name order and
files in sorted-name order within a class, so a seed fixes everything.

Accepted ``data`` values:

* ``cifar10``: torchvision's CIFAR-10 (downloaded to ``$FREQNETS_DATA`` or ``~/.cache/freqnets``).
* a zip holding ``.../train/<class>/<image>`` and ``.../test/<class>/<image>`` (the bundled data);
* a folder holding ``train.zip`` and ``test.zip`` of that layout (``../shared/data/cifar10-jpeg/``);
* a folder holding ``train/`` and ``test/`` folders of class folders;
* an ImageFolder (class folders of images, no split): every fifth file of each class,
  in name order, is held out for testing.
"""

from __future__ import annotations

import os
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..images import IMAGE_SUFFIXES, decode_rgb
from . import storage

SPLITS = ("train", "test")


@dataclass
class ImageSplit:
    """One split in memory: ``images`` ``(N, 3, S, S)`` uint8, ``labels`` ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def _pick(by_class: dict[str, list[str]], per_class: int) -> list[tuple[str, int]]:
    classes = sorted(by_class)
    return [(name, label) for label, c in enumerate(classes) for name in sorted(by_class[c])[: per_class or None]]


def _build(
    chosen: list[tuple[str, int]], classes: list[str], read: Callable[[str], bytes], size: int, where: str
) -> ImageSplit:
    if not chosen:
        raise ValueError(f"no images found in {where}")
    arrays = [decode_rgb(read(name), name, size) for name, _ in chosen]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSplit(images, torch.tensor([label for _, label in chosen], dtype=torch.int64), classes)


def _split_members(names: Iterable[str], split: str) -> dict[str, list[str]]:
    """``.../<split>/<class>/<image>`` members grouped by class."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for name in names:
        parts = name.split("/")
        if len(parts) >= 3 and parts[-3] == split and name.lower().endswith(IMAGE_SUFFIXES):
            by_class[parts[-2]].append(name)
    return by_class


def _from_zip(archive_path: Path, split: str, per_class: int, size: int) -> ImageSplit:
    with zipfile.ZipFile(archive_path) as archive:
        by_class = _split_members(archive.namelist(), split)
        return _build(_pick(by_class, per_class), sorted(by_class), archive.read, size, f"{archive_path}:{split}/")


def _from_tree(root: Path, per_class: int, size: int, keep: Callable[[int], bool] = lambda i: True) -> ImageSplit:
    by_class: dict[str, list[str]] = defaultdict(list)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        by_class[folder.name] = [f for i, f in enumerate(files) if keep(i)]
    return _build(_pick(by_class, per_class), sorted(by_class), lambda n: Path(n).read_bytes(), size, str(root))


def _from_cifar10(split: str, per_class: int, size: int) -> ImageSplit:
    import torchvision

    root = Path(os.environ.get("FREQNETS_DATA", Path.home() / ".cache" / "freqnets"))
    dataset = torchvision.datasets.CIFAR10(root, train=split == "train", download=True)
    labels = np.asarray(dataset.targets)
    order = np.concatenate([np.flatnonzero(labels == c)[: per_class or None] for c in range(len(dataset.classes))])
    images = torch.from_numpy(dataset.data[order]).permute(0, 3, 1, 2).contiguous()
    if size != images.shape[-1]:
        images = F.interpolate(images.float(), size=(size, size), mode="bilinear").round().clamp(0, 255).byte()
    return ImageSplit(images, torch.from_numpy(labels[order]).long(), list(dataset.classes))


def load_split(data: str | Path, split: str, per_class: int = 0, size: int = 32) -> ImageSplit:
    """Load ``split`` (``"train"`` or ``"test"``) of ``data``; ``per_class`` 0 keeps every image.

    Raises:
        FileNotFoundError: ``data`` is neither ``cifar10`` nor an existing path.
        ValueError: bad ``split``, no images found, or an image that cannot be decoded.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if str(data) == "cifar10":
        return _from_cifar10(split, per_class, size)
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"no such data: {path} (give 'cifar10', a zip or a folder of images)")
    if path.is_file():
        return _from_zip(path, split, per_class, size)
    if (path / f"{split}.zip").is_file():
        return _from_zip(path / f"{split}.zip", split, per_class, size)
    if (path / split).is_dir():
        return _from_tree(path / split, per_class, size)
    held_out = split == "test"
    return _from_tree(path, per_class, size, keep=lambda i: (i % 5 == 4) == held_out)


def load_cached(data: str | Path, split: str, per_class: int, size: int, cache_dir: Path | None) -> ImageSplit:
    """:func:`load_split`, decoded once and kept in ``cache_dir`` (a ``.pt`` file per source and setting)."""
    if cache_dir is None:
        return load_split(data, split, per_class, size)
    source = Path(data).resolve() if str(data) != "cifar10" else "cifar10"
    stamp = f"{source}|{split}|{per_class}|{size}"
    if isinstance(source, Path) and source.exists():
        stat = source.stat()
        stamp += f"|{stat.st_size}|{stat.st_mtime_ns}"

    def build() -> dict:
        loaded = load_split(data, split, per_class, size)
        return {"images": loaded.images, "labels": loaded.labels, "classes": loaded.classes}

    saved = storage.cached(cache_dir, split, stamp, build)
    return ImageSplit(saved["images"], saved["labels"], list(saved["classes"]))


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 ``images`` ``(N, 3, H, W)`` in ``[0, 1]`` units, each ``(1, 3, 1, 1)``."""
    x = images.double() / 255.0
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return mean.float(), std.float()


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> float32 standardised by ``mean`` and ``std``."""
    return (images.float() / 255.0 - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random ``padding``-pixel-padded crops and horizontal flips, drawn per image from ``generator``.

    Args:
        images: ``(B, C, H, W)`` float.
    Returns:
        ``(B, C, H, W)``, the same dtype.
    """
    b, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding), mode="reflect")
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5
    out = torch.empty_like(images)
    for i, ((dy, dx), flip) in enumerate(zip(offsets.tolist(), flips.tolist(), strict=True)):
        crop = padded[i, :, dy : dy + h, dx : dx + w]
        out[i] = crop.flip(-1) if flip else crop
    return out
