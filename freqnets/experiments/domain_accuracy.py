"""``freqnets bench accuracy``: accuracy of one small CNN converted to each domain at each rate.

Trains a small all-3x3, stride-1 CNN (so every domain can convert every
convolution) on CIFAR-10 JPEG files, then, for each domain and rate, converts a
copy with :func:`freqnets.convert_model` and reports test accuracy before and
after a short fine-tune. Seeds, data order and subset are fixed.
"""

from __future__ import annotations

import copy
import io
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from ..layers import convert_model

CIFAR10_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
CIFAR10_STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def load_cifar_zip(path: Path, split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class (file-name order) of ``split`` in a CIFAR-10 JPEG zip.

    Accepts both layouts: one archive with ``train/`` and ``test/`` (the bundled
    ``data/cifar10-mini.zip``) or a folder with ``train.zip`` and ``test.zip``.
    """
    archive_path = path / f"{split}.zip" if path.is_dir() else path
    with zipfile.ZipFile(archive_path) as archive:
        by_class: dict[str, list[str]] = defaultdict(list)
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == split and parts[2].lower().endswith(".jpg"):
                by_class[parts[1]].append(name)
        classes = sorted(by_class)
        images, labels = [], []
        for label, cls in enumerate(classes):
            for name in sorted(by_class[cls])[:per_class]:
                with Image.open(io.BytesIO(archive.read(name))) as image:
                    images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
                labels.append(label)
    if not images:
        raise ValueError(f"no {split} images in {archive_path}")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - CIFAR10_MEAN) / CIFAR10_STD, torch.tensor(labels)


def small_cnn(num_classes: int = 10, in_chans: int = 3, width: int = 32) -> nn.Sequential:
    """Five 3x3 stride-1 convolutions (``width, width, 2w, 2w, 4w`` channels) with batch norm, max-pool
    downsampling and a linear head: every domain can convert every convolution."""

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    w = width
    return nn.Sequential(
        *block(in_chans, w), *block(w, w), nn.MaxPool2d(2),
        *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
        *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes),
    )  # fmt: skip


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 4-pixel-padded crops and horizontal flips, batched."""
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = torch.randint(0, 9, (2,), generator=generator).tolist()
    out = padded[..., dy : dy + 32, dx : dx + 32]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, seed: int) -> float:
    """SGD with momentum and a cosine schedule; returns seconds per epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = epochs * (len(x) // 128)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x) - 127, 128):
            batch = order[i : i + 128]
            loss = F.cross_entropy(model(_augment(x[batch], generator)), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return (time.perf_counter() - start) / max(epochs, 1)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum((model(x[i : i + 500]).argmax(1) == y[i : i + 500]).sum().item() for i in range(0, len(x), 500))
    return correct / len(x)


@dataclass
class AccuracyRow:
    domain: str
    rate: float
    before: float
    after: float
    seconds_per_epoch: float


def run(data: Path, train_per_class: int, test_per_class: int, epochs: int, finetune_epochs: int,
        domains: list[str], rates: list[float], seed: int = 0) -> tuple[float, float, list[AccuracyRow]]:  # fmt: skip
    """Train the baseline, then convert, evaluate and fine-tune it in every domain and rate."""
    torch.manual_seed(seed)
    x_train, y_train = load_cifar_zip(data, "train", train_per_class)
    x_test, y_test = load_cifar_zip(data, "test", test_per_class)
    base = small_cnn()
    base_seconds = train(base, x_train, y_train, epochs, 0.05, seed)
    base_accuracy = accuracy(base, x_test, y_test)
    rows = []
    for domain in domains:
        for rate in rates:
            model = convert_model(copy.deepcopy(base), domain=domain, compress_rate=rate)
            before = accuracy(model, x_test, y_test)
            seconds = train(model, x_train, y_train, finetune_epochs, 0.01, seed + 1)
            rows.append(AccuracyRow(domain, rate, before, accuracy(model, x_test, y_test), seconds))
    return base_accuracy, base_seconds, rows


def report(base_accuracy: float, base_seconds: float, rows: list[AccuracyRow], description: str) -> str:
    lines = [
        description,
        f"baseline (nn.Conv2d): top-1 {base_accuracy:.2%}, {base_seconds:.1f} s per training epoch",
        "",
        "| domain | compress_rate | top-1 converted | top-1 after fine-tune | fine-tune s/epoch |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.domain} | {r.rate:g} | {r.before:.2%} | {r.after:.2%} | {r.seconds_per_epoch:.1f} |" for r in rows]
    return "\n".join(lines)
