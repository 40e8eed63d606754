"""Band-limited DenseNets: timm's DenseNet with every 3x3 and larger convolution band-limited.

``bl_densenet121`` uses the ImageNet stem; ``bl_densenet121_cifar`` a 3x3
stride-1 stem and no max-pool, for 32x32 inputs. Arguments as for the
band-limited ResNets (``compress_rate``, ``min_kernel_size``, ``backend``) plus
timm's ``DenseNet`` arguments. The 1x1 bottleneck and transition convolutions
stay ordinary convolutions by default. ``pretrained=True`` (``bl_densenet121``)
loads timm's ``densenet121.ra_in1k`` weights strictly, then band-limits them.

``drop_path_rate`` (which timm's DenseNet does not take) is stochastic depth on
the dense layers: in training, each sample's new features of a dense layer are
zeroed with a rate rising linearly to ``drop_path_rate`` over the layers (kept
ones scaled by ``1 / (1 - rate)``), so later layers see that layer skipped.

DenseNet: Huang, Liu, van der Maaten, Weinberger, "Densely Connected
Convolutional Networks", CVPR 2017.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.layers import DropPath
from timm.models import generate_default_cfgs, register_model
from timm.models.densenet import DenseLayer, DenseNet

from ._converted import (
    BAND_LIMITED_NAME,
    BAND_LIMITED_PAPER,
    DENSENET_PAPER,
    cifar_cfg,
    create_converted,
    timm_weights_cfg,
)
from ._head import drop_path_rates

__all__ = ["add_dense_drop_path", "bl_densenet121", "bl_densenet121_cifar"]


def _drop_new_features(layer: nn.Module, args, new_features: torch.Tensor) -> torch.Tensor:
    return layer.drop_path(new_features)


def add_dense_drop_path(model: nn.Module, drop_path_rate: float) -> None:
    """Stochastic depth on every ``DenseLayer`` of ``model``: its output (the new features) goes through a
    ``DropPath`` whose rate rises linearly to ``drop_path_rate``. The state_dict keys do not change (a
    forward hook applies it), so timm's DenseNet weights still load."""
    layers = [m for m in model.modules() if isinstance(m, DenseLayer)]
    for layer, rate in zip(layers, drop_path_rates(drop_path_rate, [len(layers)])[0], strict=True):
        if rate:
            layer.drop_path = DropPath(rate)
            layer.register_forward_hook(_drop_new_features)


def _create_bl_densenet(variant: str, pretrained: bool, cifar: bool, drop_path_rate: float = 0.0, **kwargs):
    return create_converted(
        DenseNet,
        variant,
        "fft",
        pretrained,
        ("features.conv0", "features.pool0") if cifar else None,
        adapt=partial(add_dense_drop_path, drop_path_rate=drop_path_rate),
        growth_rate=32,
        block_config=(6, 12, 24, 16),
        **kwargs,
    )


_PAPER = dict(paper_ids=(BAND_LIMITED_PAPER, DENSENET_PAPER), paper_name=BAND_LIMITED_NAME)

default_cfgs = generate_default_cfgs(
    {
        "bl_densenet121.ra_in1k": timm_weights_cfg("densenet121.ra_in1k", **_PAPER),
        "bl_densenet121_cifar": cifar_cfg(first_conv="features.conv0", classifier="classifier", **_PAPER),
    }
)


@register_model
def bl_densenet121(pretrained: bool = False, **kwargs) -> DenseNet:
    """Band-limited DenseNet-121, ImageNet stem."""
    return _create_bl_densenet("bl_densenet121", pretrained, False, **kwargs)


@register_model
def bl_densenet121_cifar(pretrained: bool = False, **kwargs) -> DenseNet:
    """Band-limited DenseNet-121, CIFAR stem (3x3 stride 1, no max-pool), 32x32 inputs."""
    return _create_bl_densenet("bl_densenet121_cifar", pretrained, True, **kwargs)
