"""ResNet-18 converted to the other three domains: SVD-separable, Winograd and DCT-compressed.

| name | domain | what ``compress_rate`` discards |
|---|---|---|
| ``svd_resnet18`` | ``svd`` | that fraction of each layer's filter rank (SVDConv2d) |
| ``wino_resnet18`` | ``winograd`` | that fraction of Winograd-domain filter coefficients (stride-1 3x3 layers only) |
| ``dct_conv_resnet18`` | ``dct`` | that fraction of the 2D DCT of every input plane and filter (DCTConv2d) |

Each has a ``_cifar`` variant (3x3 stride-1 stem, no max-pool, 32x32 inputs).
Arguments as the band-limited ResNets: ``compress_rate`` (default 0.5),
``min_kernel_size`` (default 3), ``backend``, and timm's ``ResNet`` arguments.
"""

from __future__ import annotations

from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet

from ._converted import create_converted_resnet, resnet_cfg, resnet_cifar_cfg

__all__ = [
    "dct_conv_resnet18",
    "dct_conv_resnet18_cifar",
    "svd_resnet18",
    "svd_resnet18_cifar",
    "wino_resnet18",
    "wino_resnet18_cifar",
]

_PREFIX_DOMAIN = {"svd": "svd", "wino": "winograd", "dct_conv": "dct"}

default_cfgs = generate_default_cfgs(
    {
        f"{prefix}_resnet18{suffix}": (resnet_cifar_cfg() if suffix else resnet_cfg())
        for prefix in _PREFIX_DOMAIN
        for suffix in ("", "_cifar")
    }
)


def _create(variant: str, pretrained: bool, **kwargs) -> ResNet:
    prefix = variant.split("_resnet18")[0]
    cifar = variant.endswith("_cifar")
    return create_converted_resnet(
        variant, _PREFIX_DOMAIN[prefix], pretrained, cifar, block=BasicBlock, layers=(2, 2, 2, 2), **kwargs
    )


@register_model
def svd_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with SVD-separable 3x3 and 7x7 convolutions, ImageNet stem."""
    return _create("svd_resnet18", pretrained, **kwargs)


@register_model
def svd_resnet18_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with SVD-separable convolutions, CIFAR stem, 32x32 inputs."""
    return _create("svd_resnet18_cifar", pretrained, **kwargs)


@register_model
def wino_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with Winograd F(4,3) stride-1 3x3 convolutions (pruned), ImageNet stem."""
    return _create("wino_resnet18", pretrained, **kwargs)


@register_model
def wino_resnet18_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with Winograd F(4,3) stride-1 3x3 convolutions (pruned), CIFAR stem."""
    return _create("wino_resnet18_cifar", pretrained, **kwargs)


@register_model
def dct_conv_resnet18(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with DCT-compressed convolutions, ImageNet stem."""
    return _create("dct_conv_resnet18", pretrained, **kwargs)


@register_model
def dct_conv_resnet18_cifar(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-18 with DCT-compressed convolutions, CIFAR stem."""
    return _create("dct_conv_resnet18_cifar", pretrained, **kwargs)
