"""Band-limited ResNets: timm's ResNet with every 3x3 and larger convolution band-limited.

``bl_resnet18`` and ``bl_resnet50`` use the ImageNet stem (7x7 stride-2 conv and
max-pool, 224x224 inputs); the ``_cifar`` variants use a 3x3 stride-1 stem and no
max-pool, for 32x32 inputs, as in the CIFAR-10 experiments of Dziedzic et al.
(ICML 2019). All take ``compress_rate`` (default 0.5), ``min_kernel_size``
(default 3: 1x1 convolutions stay as they are) and ``backend``, plus every
argument of timm's ``ResNet``.

    >>> import timm, freqnets
    >>> model = timm.create_model("bl_resnet18_cifar", compress_rate=0.5)

ResNet: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from ._band_limited import CIFAR10_MEAN, CIFAR10_STD, band_limit, refuse_pretrained, use_cifar_stem

__all__ = ["bl_resnet18", "bl_resnet18_cifar", "bl_resnet50", "bl_resnet50_cifar"]


def _create_bl_resnet(
    variant: str,
    pretrained: bool,
    cifar: bool,
    compress_rate: float = 0.5,
    min_kernel_size: int = 3,
    backend: str = "torch",
    **kwargs,
) -> ResNet:
    refuse_pretrained(variant, pretrained)
    model = build_model_with_cfg(ResNet, variant, pretrained=False, **kwargs)
    if cifar:
        use_cifar_stem(model, "conv1", "maxpool")
    return band_limit(model, compress_rate, min_kernel_size, backend)


def _cfg(**kwargs) -> dict:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        **kwargs,
    }


def _cifar_cfg(**kwargs) -> dict:
    return (
        _cfg(num_classes=10, input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0, mean=CIFAR10_MEAN, std=CIFAR10_STD)
        | kwargs
    )


default_cfgs = generate_default_cfgs(
    {
        "bl_resnet18": _cfg(),
        "bl_resnet50": _cfg(),
        "bl_resnet18_cifar": _cifar_cfg(),
        "bl_resnet50_cifar": _cifar_cfg(),
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
