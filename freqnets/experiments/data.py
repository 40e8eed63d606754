"""The one data path of the experiments: image files -> in-memory tensors, through the library's datasets.

Labelled splits (the ablation, the robustness study, ``bench accuracy``, ``scripts/train_sanity.py``)
are listed by :class:`freqnets.jpeg.JpegFolderDataset` (``raw=True``: it yields the files' bytes) and
decoded with Pillow (RGB) here, or read as DCT coefficients by the dataset itself. Every source becomes
an :class:`ImageSplit`: ``uint8`` images ``(N, 3, S, S)`` and ``int64`` labels, classes in sorted-name
order and files in name order within a class, so a seed fixes everything.

Accepted ``data`` values (:func:`labelled_files`):

* ``cifar10``: torchvision's CIFAR-10 (downloaded to ``$FREQNETS_DATA`` or ``~/.cache/freqnets``);
* a zip holding ``.../train/<class>/<image>`` and ``.../test/<class>/<image>`` (the bundled data);
* a folder holding ``train.zip`` and ``test.zip`` of that layout (``../shared/data/cifar10-jpeg/``);
* a folder holding ``train/`` and ``test/`` folders of class folders;
* an ImageFolder (class folders of images, no split): every fifth file of each class, in name
  order, is held out for testing.

Unlabelled sets of files (the demo, the loader benchmark, the scripts) are read with
:func:`image_payloads`.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..jpeg import JpegFolderDataset
from ..models import CIFAR10_MEAN as _CIFAR10_MEAN
from ..models import CIFAR10_STD as _CIFAR10_STD

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLITS = ("train", "test")
#: The bundled default: 2,000 training and 500 test CIFAR-10 JPEGs (package data, so it ships in the wheel).
DEFAULT_DATA = Path(__file__).resolve().parent / "bundled" / "cifar10-mini.zip"
#: CIFAR-10's per-channel statistics in ``[0, 1]`` units, ``(1, 3, 1, 1)`` (the models' cfg values).
CIFAR10_MEAN = torch.tensor(_CIFAR10_MEAN).view(1, 3, 1, 1)
CIFAR10_STD = torch.tensor(_CIFAR10_STD).view(1, 3, 1, 1)


def decode_rgb(payload: bytes, name: str, size: int | None = None) -> np.ndarray:
    """Image bytes -> ``(H, W, 3)`` uint8 RGB, bilinear-resized to ``(size, size)`` if given and different.

    Raises:
        ValueError: the bytes are not an image Pillow can decode (the message names ``name``).
    """
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image = image.convert("RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot decode image {name!r}: {error}") from error


@dataclass
class ImageSplit:
    """One split in memory: ``images`` ``(N, 3, S, S)`` uint8, ``labels`` ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def _zip_split_prefix(archive_path: Path, split: str) -> str | None:
    """The member folder ``.../<split>`` of a zip that holds class folders (shortest first), or ``None``."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as error:
        raise ValueError(f"{archive_path} is neither a folder nor a zip archive: {error}") from error
    except OSError as error:
        raise ValueError(f"cannot read {archive_path}: {error}") from error
    prefixes = set()
    for name in names:
        parts = name.split("/")
        if len(parts) >= 3 and parts[-3] == split and name.lower().endswith(IMAGE_SUFFIXES):
            prefixes.add("/".join(parts[:-2]))
    return min(prefixes, key=lambda p: (p.count("/"), p)) if prefixes else None


def labelled_files(
    data: str | Path, split: str, per_class: int = 0, *, raw: bool = True, **read_options
) -> tuple[JpegFolderDataset, list[int]]:
    """The image files of ``split`` of ``data`` as a :class:`~freqnets.jpeg.JpegFolderDataset` and the
    indices of the chosen samples: the first ``per_class`` of each class in name order (0: all), without
    the held-out fifth (``train``) or only it (``test``) when ``data`` is an ImageFolder without splits.

    With ``raw`` (the default) the dataset yields ``(bytes, label)`` of every image file; without, it
    reads the JPEG files' DCT coefficients with ``read_options`` (see :func:`~freqnets.jpeg.read_dct`).

    Raises:
        FileNotFoundError: ``data`` does not exist.
        ValueError: bad ``split``, or no class folders of images.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"no such data: {path} (give 'cifar10', a zip or a folder of images)")
    if path.is_dir() and (path / f"{split}.zip").is_file():
        path = path / f"{split}.zip"
    holdout = False
    if path.is_file():
        folder = _zip_split_prefix(path, split)
        if folder is None:
            raise ValueError(f"no images found in {path}:{split}/")
    elif path.is_dir() and (path / split).is_dir():
        folder = split
    elif path.is_dir():
        folder, holdout = None, True
    else:
        raise ValueError(f"{path} is neither a folder nor a zip archive")
    if raw:
        read_options["extensions"] = IMAGE_SUFFIXES
    dataset = JpegFolderDataset(path, split=folder, raw=raw, **read_options)
    taken: dict[int, int] = {}
    seen: dict[int, int] = {}
    indices = []
    for index, label in enumerate(dataset.targets):
        position = seen[label] = seen.get(label, -1) + 1
        if holdout and (position % 5 == 4) != (split == "test"):
            continue
        if not per_class or taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            indices.append(index)
    if not indices:
        raise ValueError(f"no images found in {path}" + (f" ({split})" if folder else ""))
    return dataset, indices


def files_fingerprint(dataset: JpegFolderDataset, indices: list[int]) -> str:
    """A hash of what the chosen files hold: each member's name, size and CRC-32 in a zip, each file's
    path, size and modification time in a folder (a file rewritten in place changes it)."""
    digest = hashlib.sha256(f"{Path(dataset.root).resolve()}|{dataset.split}".encode())
    if dataset.is_zip:
        with zipfile.ZipFile(dataset.root) as archive:
            for index in indices:
                info = archive.getinfo(dataset.samples[index][0])
                digest.update(f"{info.filename}|{info.file_size}|{info.CRC}\n".encode())
    else:
        for index in indices:
            name = dataset.samples[index][0]
            stat = os.stat(name)
            digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _decode_split(dataset: JpegFolderDataset, indices: list[int], size: int) -> ImageSplit:
    arrays = [decode_rgb(dataset.read_bytes(i), dataset.samples[i][0], size) for i in indices]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([dataset.targets[i] for i in indices], dtype=torch.int64)
    return ImageSplit(images, labels, list(dataset.classes))


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
    """Load ``split`` (``"train"`` or ``"test"``) of ``data`` decoded to RGB; ``per_class`` 0 keeps every image.

    Raises:
        FileNotFoundError: ``data`` is neither ``cifar10`` nor an existing path.
        ValueError: bad ``split``, no images found, or an image that cannot be decoded.
    """
    if str(data) == "cifar10":
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return _from_cifar10(split, per_class, size)
    dataset, indices = labelled_files(data, split, per_class)
    return _decode_split(dataset, indices, size)


def load_cached(data: str | Path, split: str, per_class: int, size: int, cache_dir: Path | None) -> ImageSplit:
    """:func:`load_split`, decoded once and kept in ``cache_dir``, keyed by the chosen files' contents
    (:func:`files_fingerprint`): rewriting, adding or removing an image makes a new entry."""
    if cache_dir is None:
        return load_split(data, split, per_class, size)
    from .storage import cached

    if str(data) == "cifar10":
        stamp, build_split = f"cifar10|{split}|{per_class}|{size}", lambda: load_split(data, split, per_class, size)
    else:
        dataset, indices = labelled_files(data, split, per_class)
        stamp = f"{files_fingerprint(dataset, indices)}|{split}|{per_class}|{size}"

        def build_split() -> ImageSplit:
            return _decode_split(dataset, indices, size)

    def build() -> dict:
        loaded = build_split()
        return {"images": loaded.images, "labels": loaded.labels, "classes": loaded.classes}

    saved = cached(cache_dir, split, stamp, build, check=_check_image_cache)
    return ImageSplit(saved["images"], saved["labels"], list(saved["classes"]))


def _check_image_cache(saved: dict) -> None:
    images, labels = saved["images"], saved["labels"]
    if images.dtype != torch.uint8 or images.dim() != 4 or labels.shape != (images.shape[0],):
        raise ValueError("the cached images or labels have the wrong dtype or shape")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(saved["classes"]):
        raise ValueError("the cached labels are out of range")


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 ``images`` ``(N, 3, H, W)`` in ``[0, 1]`` units, each ``(1, 3, 1, 1)``."""
    x = images.double() / 255.0
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return mean.float(), std.float()


def normalise(images: torch.Tensor, mean: torch.Tensor = CIFAR10_MEAN, std: torch.Tensor = CIFAR10_STD) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> float32 standardised by ``mean`` and ``std`` (default: CIFAR-10's)."""
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


def image_payloads(
    source: str | Path, split: str | None = None, limit: int | None = None, suffixes: tuple[str, ...] = IMAGE_SUFFIXES
) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of the first ``limit`` image files (sorted by name, ``None``: all) of a zip or a
    folder searched recursively, optionally only under the top-level folder ``split``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: ``source`` is a file but not a zip archive.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"no such data: {source}")

    def wanted(name: str) -> bool:
        return name.lower().endswith(suffixes) and (split is None or name.split("/")[0] == split)

    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and wanted(p.relative_to(source).as_posix()))
        return [(str(p), p.read_bytes()) for p in files[:limit]]
    try:
        with zipfile.ZipFile(source) as archive:
            names = sorted(n for n in archive.namelist() if wanted(n))[:limit]
            return [(n, archive.read(n)) for n in names]
    except zipfile.BadZipFile as error:
        raise ValueError(f"{source} is neither a folder nor a zip archive: {error}") from error


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
    arrays = [decode_rgb(payload, name, size) for name, payload in image_payloads(source, split, limit)]
    if not arrays:
        raise ValueError(f"no images{'' if split is None else f' under {split}/'} in {source}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() / 255.0
