"""Datasets of DCT samples: JPEG files read with :func:`~freqnets.jpeg.read_dct`, or any images encoded.

* :class:`JpegFolderDataset`: an ImageFolder tree of JPEG files (``<class>/<...>/<file>.jpg``), as a
  folder or a zip archive of one, returning ``(JpegCoefficients, label)``. Classes are the sorted
  folder names, so labels agree with ``torchvision.datasets.ImageFolder`` on the same tree. A zip
  archive is opened lazily in each process that reads from it (every ``DataLoader`` worker opens its
  own ``ZipFile``; a handle is never shared across ``fork`` or pickled).
* :class:`EncodedImageDataset`: wraps any dataset of ``(image, label)`` (e.g. torchvision's CIFAR10)
  and encodes each image with :func:`~freqnets.jpeg.encode_dct`.

Both take ``transform`` (a DCT-domain augmentation from :mod:`freqnets.jpeg.augment`) and
``target_transform``, and batch with :class:`~freqnets.jpeg.DCTCollate`.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.utils.data

from .coefficients import JpegCoefficients, JpegError
from .encode import encode_dct
from .reader import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, read_dct

JPEG_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif")


def _walk_order(path: str) -> tuple[str, str]:
    """Sort key of ``torchvision``'s ImageFolder: folder (``sorted(os.walk(...))``), then file name."""
    head, _, tail = path.replace(os.sep, "/").rpartition("/")
    return head, tail


class JpegFolderDataset(torch.utils.data.Dataset):
    """JPEG files in an ImageFolder layout, folder or zip, as ``(JpegCoefficients, label)`` samples.

    Args:
        root: a folder, or a ``.zip`` archive, whose (``split``'s) subfolders are the classes.
        split: a top-level folder of ``root`` to use (e.g. ``"train"``), or ``None`` for ``root`` itself.
        transform: applied to the :class:`JpegCoefficients` (e.g. a :mod:`freqnets.jpeg.augment` pipeline).
        target_transform: applied to the integer label.
        strict, max_pixels, max_bytes, backend, order, crop, chroma, exif_orientation: passed to
            :func:`~freqnets.jpeg.read_dct` (``crop=(Hy, Wy)`` reads only the centre window that
            ``DCTCollate(grid=(Hy, Wy))`` keeps; ``chroma="420"`` converts chroma while reading, in the worker,
            so that the collate only stacks: both faster on large files; ``exif_orientation=True`` turns each
            image as its EXIF tag says, in the DCT domain).
        raw: return the files' bytes instead of reading them (the read options are then unused), for
            :class:`~freqnets.jpeg.DCTReadCollate`, which reads a whole batch at once (faster on small files);
            ``exif_orientation`` is refused with it (the bytes cannot carry it): pass it to the collate.
        extensions: file-name endings (case-insensitive) that count as JPEG files.

    Attributes:
        classes: sorted class names; ``class_to_idx``: name -> label; ``samples``: ``(file, label)``
        pairs in ``torchvision.datasets.ImageFolder``'s order; ``targets``: the labels.

    Raises:
        FileNotFoundError: ``root`` or ``split`` does not exist.
        ValueError: no class folder, or a class folder without JPEG files; ``raw=True`` with ``exif_orientation=True``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        transform: Callable[[JpegCoefficients], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        *,
        strict: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        backend: str = "auto",
        order: str = "natural",
        crop: tuple[int, int] | None = None,
        chroma: str | None = None,
        exif_orientation: bool = False,
        raw: bool = False,
        extensions: tuple[str, ...] = JPEG_EXTENSIONS,
    ) -> None:
        if raw and exif_orientation:  # the bytes go out unread: the images would silently stay unturned
            raise ValueError(
                "exif_orientation=True has no effect with raw=True (the files' bytes are returned unread): "
                "pass exif_orientation=True to DCTReadCollate instead"
            )
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"no such folder or zip archive: {self.root}")
        self.split = split
        self.transform, self.target_transform = transform, target_transform
        self.read_options = {
            "strict": strict, "max_pixels": max_pixels, "max_bytes": max_bytes, "backend": backend, "order": order
        }  # fmt: skip
        if crop is not None:
            self.read_options["crop"] = crop
        if chroma is not None:
            self.read_options["chroma"] = chroma
        if exif_orientation:
            self.read_options["exif_orientation"] = exif_orientation
        self.raw = raw
        self.extensions = tuple(e.lower() for e in extensions)
        self.is_zip = self.root.is_file()
        files = self._list_zip() if self.is_zip else self._list_folder()
        self.classes = sorted(files)
        if not self.classes:
            raise ValueError(f"no class folders with JPEG files in {self._where()}")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = [
            (f, self.class_to_idx[name]) for name in self.classes for f in sorted(files[name], key=_walk_order)
        ]  # fmt: skip
        self.targets = [label for _, label in self.samples]
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None

    def _where(self) -> str:
        return f"{self.root}" + (f" (split {self.split!r})" if self.split else "")

    def _is_jpeg(self, name: str) -> bool:
        return name.lower().endswith(self.extensions)

    def _list_folder(self) -> dict[str, list[str]]:
        base = self.root / self.split if self.split else self.root
        if not base.is_dir():
            raise FileNotFoundError(f"no folder {base}")
        files: dict[str, list[str]] = {}
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            if entry.is_dir():
                found = [
                    os.path.join(dirpath, f) for dirpath, _, names in os.walk(entry.path, followlinks=True)
                    for f in names if self._is_jpeg(f)
                ]  # fmt: skip
                if not found:
                    raise ValueError(f"class folder {entry.path} holds no JPEG files ({', '.join(self.extensions)})")
                files[entry.name] = found
        return files

    def _list_zip(self) -> dict[str, list[str]]:
        try:
            with zipfile.ZipFile(self.root) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as error:
            raise ValueError(f"{self.root} is neither a folder nor a zip archive: {error}") from error
        prefix = f"{self.split.strip('/')}/" if self.split else ""
        files: dict[str, list[str]] = {}
        for name in names:
            if not name.startswith(prefix) or name.endswith("/"):
                continue
            parts = name[len(prefix) :].split("/")
            if len(parts) >= 2 and self._is_jpeg(parts[-1]):
                files.setdefault(parts[0], []).append(name)
        if prefix and not any(name.startswith(prefix) for name in names):
            raise FileNotFoundError(f"no folder {prefix!r} in {self.root}")
        return files

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_zip"], state["_zip_pid"] = None, None  # each process opens its own handle
        return state

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip, self._zip_pid = zipfile.ZipFile(self.root), os.getpid()
        return self._zip

    def read_bytes(self, index: int) -> bytes:
        """The raw bytes of sample ``index``'s file."""
        name = self.samples[index][0]
        if self.is_zip:
            return self._archive().read(name)
        with open(name, "rb") as handle:
            return handle.read()

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        name, label = self.samples[index]
        if self.raw:
            sample: Any = self.read_bytes(index)
            if self.transform is not None:
                sample = self.transform(sample)
            return sample, (label if self.target_transform is None else self.target_transform(label))
        try:
            sample = read_dct(self.read_bytes(index), **self.read_options)
        except JpegError as error:
            raise type(error)(f"{name}: {error}") from error
        if self.transform is not None:
            sample = self.transform(sample)
        return sample, (label if self.target_transform is None else self.target_transform(label))

    def __repr__(self) -> str:
        return f"JpegFolderDataset({self._where()}, {len(self)} files, {len(self.classes)} classes)"


class EncodedImageDataset(torch.utils.data.Dataset):
    """Any dataset of ``(image, label)`` -> ``(encode_dct(image), label)``.

    Args:
        dataset: items ``(image, label)`` with a PIL image or a ``(3|1, H, W)`` / ``(H, W)`` tensor
            (uint8, or float in [0, 1]), e.g. ``torchvision.datasets.CIFAR10(root)``.
        quality, subsampling, block_size: passed to :func:`~freqnets.jpeg.encode_dct`.
        transform: applied to the :class:`JpegCoefficients`; target_transform: to the label.
    """

    def __init__(
        self,
        dataset,
        quality: int = 75,
        subsampling: str = "4:2:0",
        block_size: int = 8,
        transform: Callable[[JpegCoefficients], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        encode_dct(torch.zeros(3, 1, 1), quality=quality, subsampling=subsampling, block_size=block_size)  # checks
        self.dataset = dataset
        self.quality, self.subsampling, self.block_size = quality, subsampling, block_size
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, label = self.dataset[index]
        sample: Any = encode_dct(image, self.quality, self.subsampling, self.block_size)
        if self.transform is not None:
            sample = self.transform(sample)
        return sample, (label if self.target_transform is None else self.target_transform(label))
