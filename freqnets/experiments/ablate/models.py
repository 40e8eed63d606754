"""Networks for the ablation: two small built-in CIFAR networks, or any timm model by name."""

from __future__ import annotations

from collections.abc import Callable

import timm
import torch.nn as nn
from timm.models.resnet import BasicBlock, ResNet

from ...models import use_cifar_stem
from ..training import small_cnn

__all__ = ["BUILTIN", "cifar_resnet", "small_cnn"]


def cifar_resnet(
    num_classes: int = 10, in_chans: int = 3, width: int = 16, layers: tuple[int, ...] = (1, 1, 1, 1)
) -> ResNet:
    """timm's ResNet with basic blocks, stage widths ``width * (1, 2, 4, 8)`` and a CIFAR stem
    (3x3 stride-1 convolution, no max-pool) for 32x32 inputs. ``width=64, layers=(2, 2, 2, 2)`` is
    the CIFAR ResNet-18 of the paper; the default is a ResNet-10 at a quarter of its width."""
    channels = tuple(width * m for m in (1, 2, 4, 8))[: len(layers)]
    model = ResNet(
        BasicBlock, tuple(layers), num_classes=num_classes, in_chans=in_chans, stem_width=width, channels=channels
    )
    use_cifar_stem(model, "conv1", "maxpool")
    return model


BUILTIN: dict[str, Callable[..., nn.Module]] = {"small_cnn": small_cnn, "cifar_resnet": cifar_resnet}


def build_model(name: str, num_classes: int, in_chans: int = 3, model_args: dict | None = None) -> nn.Module:
    """A built-in model (:data:`BUILTIN`) or ``timm.create_model(name, ...)``.

    ``model_args`` go to the factory; ``cifar_stem=True`` (timm ResNets only) also swaps the
    7x7/stride-2 stem and max-pool for a 3x3 stride-1 stem.

    Raises:
        ValueError: ``name`` is neither built in nor a timm model, or bad ``model_args``.
    """
    args = dict(model_args or {})
    if name in BUILTIN:
        args.pop("cifar_stem", None)
        try:
            return BUILTIN[name](num_classes=num_classes, in_chans=in_chans, **args)
        except TypeError as error:
            raise ValueError(f"model_args {args} do not fit model {name!r}: {error}") from error
    if not timm.is_model(name):
        raise ValueError(f"model must be one of {', '.join(BUILTIN)} or a timm model name, got {name!r}")
    cifar_stem = bool(args.pop("cifar_stem", False))
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **args)
    except TypeError as error:
        raise ValueError(f"model_args {args} do not fit timm model {name!r}: {error}") from error
    if cifar_stem:
        if not (hasattr(model, "conv1") and hasattr(model, "maxpool")):
            raise ValueError(f"cifar_stem=True needs a ResNet-like model with conv1 and maxpool, not {name!r}")
        use_cifar_stem(model, "conv1", "maxpool")
    return model
