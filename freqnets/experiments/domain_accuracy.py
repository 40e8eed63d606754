"""``freqnets bench accuracy``: accuracy of one small CNN converted to each domain at each rate.

Trains a small all-3x3, stride-1 CNN (so every domain can convert every
convolution) on CIFAR-10 JPEG files, then, for each domain and rate, converts a
copy with :func:`freqnets.convert_model` and reports test accuracy before and
after a short fine-tune. Seeds, data order and subset are fixed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from ..layers import convert_model
from .data import load_split, normalise
from .training import accuracy, small_cnn, train_on_tensors


def load_cifar(path: Path, split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` images of each class of ``split``, standardised with CIFAR-10's statistics:
    ``(N, 3, 32, 32)`` float32 and ``(N,)`` labels."""
    images = load_split(path, split, per_class)
    return normalise(images.images), images.labels


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
    x_train, y_train = load_cifar(data, "train", train_per_class)
    x_test, y_test = load_cifar(data, "test", test_per_class)
    base = small_cnn()
    base_seconds = train_on_tensors(base, x_train, y_train, epochs, 0.05, seed)
    base_accuracy = accuracy(base, x_test, y_test)
    rows = []
    for domain in domains:
        for rate in rates:
            model = convert_model(copy.deepcopy(base), domain=domain, compress_rate=rate)
            before = accuracy(model, x_test, y_test)
            seconds = train_on_tensors(model, x_train, y_train, finetune_epochs, 0.01, seed + 1)
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
