"""The one training and evaluation loop of the experiments, and the small CNN they share.

:func:`train_epochs` runs the steps of a supervised classifier (cross-entropy, ``zero_grad`` /
``backward`` / ``step``, the scheduler stepped per step) over the batches a caller gives it epoch by
epoch; what differs between the experiments (data, augmentation, optimizer, checkpoints, DDP,
calibration) is in those batches and in the ``before_epoch`` / ``after_epoch`` callbacks.
:func:`evaluate` scores a model over batches. The ablation (:mod:`.ablate.runner`), the robustness
study, ``freqnets bench accuracy`` and ``scripts/train_sanity.py`` all train with them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

#: A model input: one tensor, or a tuple of tensors for models of several inputs (DCT planes).
Inputs = torch.Tensor | tuple[torch.Tensor, ...]


def small_cnn(num_classes: int = 10, in_chans: int = 3, width: int = 32) -> nn.Sequential:
    """Five 3x3 stride-1 convolutions (``width, width, 2w, 2w, 4w`` channels) with batch norm, max-pool
    downsampling and a linear head: every domain can convert every convolution.

    Maps ``(B, in_chans, H, W)`` to ``(B, num_classes)`` logits.
    """

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    w = width
    return nn.Sequential(
        *block(in_chans, w), *block(w, w), nn.MaxPool2d(2),
        *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),
        *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, num_classes),
    )  # fmt: skip


def forward(model: nn.Module, x: Inputs) -> torch.Tensor:
    """``model(x)``, or ``model(*x)`` for a tuple of inputs."""
    return model(*x) if isinstance(x, tuple) else model(x)


def synchronize(device: torch.device | None) -> None:
    """Wait for the device's queued work (so that wall-clock times cover it)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class EpochStats:
    """One epoch of :func:`train_epochs`: the loss of each step (in order), each step's batch size and
    seconds (batch preparation included), and the epoch's wall-clock seconds."""

    epoch: int
    step_losses: list[float] = field(default_factory=list)
    step_sizes: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mean_step_loss(self) -> float:
        return sum(self.step_losses) / max(len(self.step_losses), 1)

    @property
    def mean_sample_loss(self) -> float:
        """The loss averaged over samples (steps weighted by their batch size)."""
        total = sum(loss * size for loss, size in zip(self.step_losses, self.step_sizes, strict=True))
        return total / max(sum(self.step_sizes), 1)


def train_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Iterable[tuple[Inputs, torch.Tensor]]],
    epochs: Iterable[int],
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    device: torch.device | None = None,
    before_epoch: Callable[[int], None] | None = None,
    after_step: Callable[[int, int], None] | None = None,
    after_epoch: Callable[[EpochStats], None] | None = None,
    label_smoothing: float = 0.0,
) -> list[EpochStats]:
    """Train ``model`` with cross-entropy over ``epochs`` (e.g. ``range(start, total)`` to resume).

    Args:
        model: called on each batch's inputs (:func:`forward`); put in train mode every epoch,
            after ``before_epoch``.
        optimizer, scheduler: stepped once per step (the scheduler after the optimizer).
        batches: ``batches(epoch)`` yields ``(inputs, labels)``, ``(B, ...)`` and ``(B,)``; it is consumed
            lazily, so randomness it draws interleaves with the steps exactly as written.
        autocast: a context-manager factory around the forward pass (``torch.autocast`` for bf16).
        device: synchronised before and after each epoch's timing (CUDA).
        before_epoch: ``before_epoch(epoch)``, e.g. re-calibration or a sampler's ``set_epoch``.
        after_step: ``after_step(epoch, step)`` after each step (progress reports).
        after_epoch: ``after_epoch(stats)``, e.g. a checkpoint; raising in it stops training.
        label_smoothing: of the cross-entropy (``F.cross_entropy``'s argument).

    Returns:
        One :class:`EpochStats` per epoch trained.
    """
    history = []
    for epoch in epochs:
        if before_epoch is not None:
            before_epoch(epoch)
        model.train()
        stats = EpochStats(epoch)
        synchronize(device)
        epoch_start = step_start = time.perf_counter()
        for step, (x, y) in enumerate(batches(epoch)):
            with autocast():
                loss = F.cross_entropy(forward(model, x), y, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            stats.step_losses.append(loss.item())
            stats.step_sizes.append(len(y))
            now = time.perf_counter()
            stats.step_seconds.append(now - step_start)
            step_start = now
            if after_step is not None:
                after_step(epoch, step)
        synchronize(device)
        stats.seconds = time.perf_counter() - epoch_start
        history.append(stats)
        if after_epoch is not None:
            after_epoch(stats)
    return history


@dataclass
class Evaluation:
    """Sums over the evaluated samples: ``correct`` top-1 hits, ``loss_sum`` of cross-entropy (0 when not
    computed) and ``count`` samples."""

    correct: float
    loss_sum: float
    count: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else float("nan")


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Inputs, torch.Tensor]], loss: bool = True) -> Evaluation:
    """Top-1 hits (and, with ``loss``, summed cross-entropy) of ``model`` in eval mode over ``batches``.

    ``model`` may return logits or vote shares ``(B, classes)``; the argmax is the prediction.
    """
    model.eval()
    correct = loss_sum = 0.0
    count = 0
    for x, y in batches:
        scores = forward(model, x).float()
        if loss:
            loss_sum += F.cross_entropy(scores, y, reduction="sum").item()
        correct += (scores.argmax(-1) == y).sum().item()
        count += len(y)
    return Evaluation(correct, loss_sum, count)


def tensor_batches(x: Inputs, y: torch.Tensor, batch_size: int, order: torch.Tensor | None = None):
    """``(x[index], y[index])`` for consecutive ``batch_size`` slices of ``order`` (default: 0..N-1); the
    last batch may be smaller. ``x`` may be a tuple of tensors sharing the first dimension."""
    order = torch.arange(len(y)) if order is None else order
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        yield (tuple(t[index] for t in x) if isinstance(x, tuple) else x[index]), y[index]


def _augmented_batches(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> Iterator:
    """One epoch of full 128-image batches in a random order, each with one random 4-pixel-padded crop
    offset for the whole batch and a horizontal flip per image."""
    order = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x) - 127, 128):
        batch = order[i : i + 128]
        padded = F.pad(x[batch], (4, 4, 4, 4), mode="reflect")
        dy, dx = torch.randint(0, 9, (2,), generator=generator).tolist()
        out = padded[..., dy : dy + 32, dx : dx + 32]
        flip = torch.rand(len(batch), generator=generator) < 0.5
        yield torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out), y[batch]


def train_on_tensors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, seed: int) -> float:
    """SGD (Nesterov momentum) with a cosine schedule over :func:`_augmented_batches`; returns seconds per epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs * (len(x) // 128), 1))
    history = train_epochs(
        model, optimizer, lambda _: _augmented_batches(x, y, generator), range(epochs), scheduler=scheduler
    )
    return sum(s.seconds for s in history) / max(epochs, 1)


def accuracy(model: nn.Module, x: Inputs, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (logits or vote shares) on ``x``, in batches; NaN for no samples."""
    return evaluate(model, tensor_batches(x, y, batch_size), loss=False).accuracy
