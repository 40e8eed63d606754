"""What the band-limited model families share: CIFAR stems, conversion, and the no-weights rule."""

from __future__ import annotations

import torch.nn as nn

from ..layers import convert_model

#: CIFAR-10 training-set channel statistics (Krizhevsky, 2009), the values used across the literature.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def refuse_pretrained(variant: str, pretrained: bool) -> None:
    """Raise a clear error for ``pretrained=True``: no weights are published for these models yet."""
    if pretrained:
        raise ValueError(
            f"no pretrained weights exist for {variant!r} yet; create it with pretrained=False "
            "(or load a checkpoint you trained with torch.load(..., weights_only=True))"
        )


def use_cifar_stem(model: nn.Module, conv_name: str, pool_name: str, reduction: int = 4) -> None:
    """Replace a 7x7/stride-2 stem and its max-pool by a 3x3/stride-1 conv and no pool (32x32 inputs).

    Updates ``feature_info`` reductions, which the stem no longer divides by ``reduction``.
    """
    old = model.get_submodule(conv_name)
    new = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=old.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    for name, module in ((conv_name, new), (pool_name, nn.Identity())):
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, module)
    for info in getattr(model, "feature_info", []):
        info["reduction"] = max(1, info["reduction"] // reduction)


def band_limit(model: nn.Module, compress_rate: float, min_kernel_size: int, backend: str) -> nn.Module:
    """Convert every convolution of at least ``min_kernel_size`` to a band-limited one."""
    return convert_model(model, "fft", compress_rate=compress_rate, min_kernel_size=min_kernel_size, backend=backend)
