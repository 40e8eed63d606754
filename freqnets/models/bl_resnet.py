"""Band-limited ResNets: timm's ResNet with every 3x3 and larger convolution band-limited.

``bl_resnet18`` and ``bl_resnet50`` use the ImageNet stem (7x7 stride-2 conv and
max-pool, 224x224 inputs); the ``_cifar`` variants use a 3x3 stride-1 stem and no
max-pool, for 32x32 inputs, as in the CIFAR-10 experiments of Dziedzic et al.
(ICML 2019). All take ``compress_rate`` (default 0.5), ``min_kernel_size``
(default 3: 1x1 convolutions stay as they are) and ``backend``, plus every
argument of timm's ``ResNet`` (``drop_path_rate``, ``features_only``, ...).

``pretrained=True`` (ImageNet variants) loads timm's ``resnet18.a1_in1k`` / ``resnet50.a1_in1k``
weights into timm's ResNet, strictly, then band-limits it: at ``compress_rate=0`` the model computes
what timm's does. ``pretrained_cfg_overlay=dict(file=path)`` loads a local state_dict instead.

    >>> import timm, freqnets
    >>> model = timm.create_model("bl_resnet18_cifar", compress_rate=0.5)

ResNet: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from ._converted import (
    BAND_LIMITED_NAME,
    BAND_LIMITED_PAPER,
    RESNET_PAPER,
    create_converted,
    resnet_cifar_cfg,
    timm_weights_cfg,
)

__all__ = ["bl_resnet18", "bl_resnet18_cifar", "bl_resnet50", "bl_resnet50_cifar"]


def _create_bl_resnet(variant: str, pretrained: bool, cifar: bool, **kwargs) -> ResNet:
    cifar_stem = ("conv1", "maxpool") if cifar else None
    return create_converted(ResNet, variant, "fft", pretrained, cifar_stem, **kwargs)


_PAPER = dict(paper_ids=(BAND_LIMITED_PAPER, RESNET_PAPER), paper_name=BAND_LIMITED_NAME)

default_cfgs = generate_default_cfgs(
    {
        "bl_resnet18.a1_in1k": timm_weights_cfg("resnet18.a1_in1k", **_PAPER),
        "bl_resnet50.a1_in1k": timm_weights_cfg("resnet50.a1_in1k", **_PAPER),
        "bl_resnet18_cifar": resnet_cifar_cfg(**_PAPER),
        "bl_resnet50_cifar": resnet_cifar_cfg(**_PAPER),
    }
)


@register_model
def bl_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """Band-limited ResNet-18, ImageNet stem."""
    return _create_bl_resnet("bl_resnet18", pretrained, False, block=BasicBlock, layers=(2, 2, 2, 2), **kwargs)


@register_model
def bl_resnet50(pretrained: bool = False, **kwargs) -> ResNet:
    """Band-limited ResNet-50, ImageNet stem."""
    return _create_bl_resnet("bl_resnet50", pretrained, False, block=Bottleneck, layers=(3, 4, 6, 3), **kwargs)


@register_model
def bl_resnet18_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """Band-limited ResNet-18, CIFAR stem (3x3 stride 1, no max-pool), 32x32 inputs."""
    return _create_bl_resnet("bl_resnet18_cifar", pretrained, True, block=BasicBlock, layers=(2, 2, 2, 2), **kwargs)


@register_model
def bl_resnet50_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """Band-limited ResNet-50, CIFAR stem (3x3 stride 1, no max-pool), 32x32 inputs."""
    return _create_bl_resnet("bl_resnet50_cifar", pretrained, True, block=Bottleneck, layers=(3, 4, 6, 3), **kwargs)
