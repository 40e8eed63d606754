"""The ``dct`` input representation: the DCT coefficients stored in the JPEG files, fed to a DCT-input model.

Every file is read once with :class:`freqnets.jpeg.JpegFolderDataset` (no inverse DCT, no colour
conversion) and batched with :class:`freqnets.jpeg.DCTCollate` (``layout="planes"``, 4:2:0): luma
``(N, 64, Hy, Wy)`` and chroma ``(N, 128, Hy/2, Wy/2)`` dequantised coefficients in zigzag order,
kept in memory as ``int16`` (they are integers: quantised value x quantisation step). A batch is
"early fusion" input ``(B, 192, Hy, Wy)``: the chroma blocks repeated onto the luma grid, as
``DCTCollate(layout="stacked")`` makes it. Training batches are flipped left-right per image in
the DCT domain (:func:`freqnets.jpeg.augment.hflip`, exact: block columns reversed, odd horizontal
frequencies negated); the model normalises its input itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ...jpeg import DCTCollate
from .. import storage
from ..data import files_fingerprint, labelled_files
from .config import AblationConfig
from .distributed import DistEnv
from .inputs import SplitSizes

#: Channels of the early-fusion input: 64 luma and 2 x 64 chroma coefficients per 8x8 block.
DCT_CHANNELS = 192


@dataclass
class DCTSplit:
    """One split's coefficients: ``y`` ``(N, 64, Hy, Wy)`` and ``cbcr`` ``(N, 128, Hc, Wc)`` int16, labels."""

    y: torch.Tensor
    cbcr: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def stack_planes(y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
    """Early fusion: ``(B, Ky, Hy, Wy)`` and ``(B, 2Kc, Hc, Wc)`` -> ``(B, Ky + 2Kc, Hy, Wy)`` float32,
    each chroma block repeated over the luma blocks it covers."""
    fy, fx = -(-y.shape[-2] // cbcr.shape[-2]), -(-y.shape[-1] // cbcr.shape[-1])
    up = cbcr.repeat_interleave(fy, dim=-2).repeat_interleave(fx, dim=-1)[..., : y.shape[-2], : y.shape[-1]]
    return torch.cat([y, up], dim=1).float()


def refuse_cifar10(data: str) -> None:
    if data == "cifar10":
        raise ValueError(
            "input='dct' reads JPEG files; data='cifar10' holds raw pixels: give a folder or zip of JPEGs "
            "(e.g. ../shared/data/cifar10-jpeg/) with --data"
        )


def _read_split(dataset, indices: list[int]) -> DCTSplit:
    """The coefficients of ``dataset``'s samples ``indices``, batched as 4:2:0 planes and kept as int16."""
    collate = DCTCollate(layout="planes", chroma="420")
    ys, cbcrs, labels = [], [], []
    for start in range(0, len(indices), 1000):
        batch = collate([dataset[i] for i in indices[start : start + 1000]])
        ys.append(_as_int16(batch.y)), cbcrs.append(_as_int16(batch.cbcr)), labels.append(batch.labels)
    return DCTSplit(torch.cat(ys), torch.cat(cbcrs), torch.cat(labels), list(dataset.classes))


def load_dct_split(data: str, split: str, per_class: int) -> DCTSplit:
    """Read the first ``per_class`` JPEG files of each class (0: all) of ``split`` as coefficients."""
    refuse_cifar10(data)
    return _read_split(*labelled_files(data, split, per_class, raw=False, order="zigzag"))


def _as_int16(x: torch.Tensor) -> torch.Tensor:
    rounded = x.round()
    if not torch.equal(rounded, x) or rounded.abs().max() > 32767:
        raise ValueError("JPEG coefficients are not int16 integers; cannot keep them compactly")
    return rounded.to(torch.int16)


def _cached(data: str, split: str, per_class: int, cache_dir: Path) -> DCTSplit:
    """:func:`load_dct_split`, kept in ``cache_dir`` keyed by the chosen files' contents."""
    refuse_cifar10(data)
    dataset, indices = labelled_files(data, split, per_class, raw=False, order="zigzag")
    stamp = f"dct|{files_fingerprint(dataset, indices)}|{split}|{per_class}"

    def build() -> dict:
        loaded = _read_split(dataset, indices)
        return {"y": loaded.y, "cbcr": loaded.cbcr, "labels": loaded.labels, "classes": loaded.classes}

    saved = storage.cached(cache_dir, f"dct-{split}", stamp, build, check=_check_dct_cache)
    return DCTSplit(saved["y"], saved["cbcr"], saved["labels"], list(saved["classes"]))


def _check_dct_cache(saved: dict) -> None:
    y, cbcr, labels = saved["y"], saved["cbcr"], saved["labels"]
    if y.dtype != torch.int16 or cbcr.dtype != torch.int16 or y.dim() != 4 or cbcr.dim() != 4:
        raise ValueError("the cached coefficients have the wrong dtype or shape")
    if not len(y) == len(cbcr) == len(labels):
        raise ValueError("the cached coefficients and labels differ in length")


def _hflip_planes(plane: torch.Tensor) -> torch.Tensor:
    """Left-right mirror of zigzag-ordered 8x8-block coefficient planes ``(B, 64*k, H, W)``: block
    columns reversed, odd horizontal frequencies negated (as :func:`freqnets.jpeg.augment.hflip`)."""
    from ...transforms import zigzag_indices

    u = zigzag_indices(8).remainder(8)  # horizontal frequency of each zigzag position
    sign = (1 - 2 * (u % 2)).to(plane.dtype).repeat(plane.shape[1] // 64).view(1, -1, 1, 1)
    return plane.flip(-1) * sign


@dataclass
class DCTInput(SplitSizes):
    """JPEG DCT coefficients as early-fusion input ``(B, 192, Hy, Wy)``; training batches flipped at random."""

    train: DCTSplit
    test: DCTSplit
    device: torch.device

    name = "dct"

    @property
    def in_chans(self) -> int:
        return self.train.y.shape[1] + self.train.cbcr.shape[1]

    def train_batch(self, indices: list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.tensor(indices, dtype=torch.long)
        y, cbcr = self.train.y[index].float(), self.train.cbcr[index].float()
        flip = (torch.rand(len(index), generator=generator) < 0.5).view(-1, 1, 1, 1)
        y = torch.where(flip, _hflip_planes(y), y)
        cbcr = torch.where(flip, _hflip_planes(cbcr), cbcr)
        return stack_planes(y, cbcr).to(self.device), self.train.labels[index].to(self.device)

    def plain_train_batch(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = stack_planes(self.train.y[:count].float(), self.train.cbcr[:count].float())
        return x.to(self.device), self.train.labels[:count].to(self.device)

    def test_batches(self, indices: list[int], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(indices), batch_size):
            index = torch.tensor(indices[start : start + batch_size], dtype=torch.long)
            x = stack_planes(self.test.y[index].float(), self.test.cbcr[index].float())
            yield x.to(self.device), self.test.labels[index].to(self.device)


def make_dct_input(config: AblationConfig, env: DistEnv) -> DCTInput:
    """The ``dct`` pipeline of ``config``'s data (decoded once, cached under ``<out>/cache``)."""
    cache_dir = Path(config.out) / "cache"
    train = _cached(config.data, "train", config.train_per_class, cache_dir)
    test = _cached(config.data, "test", config.test_per_class, cache_dir)
    return DCTInput(train, test, env.device)
