"""Input representations of the ablation: what a model is fed, batch by batch.

An input pipeline turns indices of the training or test split into a model
input and labels on the run's device. ``rgb`` feeds standardised pixels with
random-crop and flip augmentation; ``dct`` feeds the JPEG DCT coefficients
(see :mod:`.dct_input`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..data import ImageSplit, augment, channel_stats, normalise


class SplitSizes:
    """Class and sample counts of an input representation with ``train`` and ``test`` splits."""

    train: Any
    test: Any

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_test(self) -> int:
        return len(self.test)


@dataclass
class RGBInput(SplitSizes):
    """Standardised RGB pixels; training batches are augmented (random crops, flips).

    Attributes:
        train, test: the decoded splits (uint8, on the CPU).
        device: where batches go.
    """

    train: ImageSplit
    test: ImageSplit
    device: torch.device

    name = "rgb"

    def __post_init__(self) -> None:
        self.mean, self.std = channel_stats(self.train.images)

    @property
    def in_chans(self) -> int:
        return self.train.images.shape[1]

    def train_batch(self, indices: list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` float32 augmented inputs and ``(B,)`` labels for training ``indices``."""
        index = torch.tensor(indices, dtype=torch.long)
        x = augment(normalise(self.train.images[index], self.mean, self.std), generator)
        return x.to(self.device), self.train.labels[index].to(self.device)

    def plain_train_batch(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``count`` training images, not augmented (calibration and measurements)."""
        x = normalise(self.train.images[:count], self.mean, self.std)
        return x.to(self.device), self.train.labels[:count].to(self.device)

    def test_batches(self, indices: list[int], batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(indices), batch_size):
            index = torch.tensor(indices[start : start + batch_size], dtype=torch.long)
            x = normalise(self.test.images[index], self.mean, self.std)
            yield x.to(self.device), self.test.labels[index].to(self.device)
