"""What the converted model families share: CIFAR stems, conversion, cfgs, and the no-weights rule."""

from __future__ import annotations

import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg
from timm.models.resnet import ResNet

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


def create_converted_resnet(
    variant: str,
    domain: str,
    pretrained: bool,
    cifar: bool,
    compress_rate: float = 0.5,
    min_kernel_size: int = 3,
    backend: str = "torch",
    **kwargs,
) -> ResNet:
    """timm's ResNet (``block``, ``layers`` and its other arguments in ``kwargs``) converted to ``domain``."""
    refuse_pretrained(variant, pretrained)
    model = build_model_with_cfg(ResNet, variant, pretrained=False, **kwargs)
    if cifar:
        use_cifar_stem(model, "conv1", "maxpool")
    return convert_model(model, domain, compress_rate=compress_rate, min_kernel_size=min_kernel_size, backend=backend)


def imagenet_cfg(**kwargs) -> dict:
    """ImageNet-size timm cfg (224x224 inputs, 7x7 final pool); ``kwargs`` add or override fields."""
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "license": "apache-2.0",
        **kwargs,
    }


def cifar_cfg(**kwargs) -> dict:
    """CIFAR-10-size timm cfg (32x32 inputs, 10 classes, CIFAR mean/std, 4x4 final pool)."""
    cifar = dict(
        num_classes=10, input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0, mean=CIFAR10_MEAN, std=CIFAR10_STD
    )
    return imagenet_cfg(**(cifar | kwargs))


def resnet_cfg(**kwargs) -> dict:
    """ImageNet-size cfg of a converted ResNet."""
    return imagenet_cfg(first_conv="conv1", classifier="fc", **kwargs)


def resnet_cifar_cfg(**kwargs) -> dict:
    """CIFAR-10-size cfg of a converted ResNet (3x3 stem, no max-pool)."""
    return cifar_cfg(first_conv="conv1", classifier="fc", **kwargs)
