"""ResNet-18 converted to the other three domains: SVD-separable, Winograd and DCT-compressed.

| name | domain | what ``compress_rate`` discards |
|---|---|---|
| ``svd_resnet18`` | ``svd`` | that fraction of each layer's filter rank (SVDConv2d) |
| ``wino_resnet18`` | ``winograd`` | that fraction of Winograd-domain filter coefficients (stride-1 3x3 layers only) |
| ``dct_conv_resnet18`` | ``dct`` | that fraction of the 2D DCT of every input plane and filter (DCTConv2d) |

Each has a ``_cifar`` variant (3x3 stride-1 stem, no max-pool, 32x32 inputs).
Arguments as the band-limited ResNets: ``compress_rate`` (default 0.5),
``min_kernel_size`` (default 3), ``backend``, and timm's ``ResNet`` arguments. ``pretrained=True``
(ImageNet variants) loads timm's ``resnet18.a1_in1k`` weights strictly, then converts them, as the
band-limited ResNets do.

Papers: Jaderberg, Vedaldi, Zisserman, "Speeding up Convolutional Neural Networks with Low Rank
Expansions", BMVC 2014 (SVD); Lavin, Gray, "Fast Algorithms for Convolutional Neural Networks",
CVPR 2016 and Liu, Pool, Han, Dally, "Efficient Sparse-Winograd Convolutional Neural Networks",
ICLR 2018 (pruned Winograd); the DCT layer band-limits as Dziedzic et al. (ICML 2019) do with the FFT.
"""

from __future__ import annotations

from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet

from ._converted import (
    BAND_LIMITED_NAME,
    BAND_LIMITED_PAPER,
    RESNET_PAPER,
    create_converted,
    resnet_cifar_cfg,
    timm_weights_cfg,
)

__all__ = [
    "dct_conv_resnet18",
    "dct_conv_resnet18_cifar",
    "svd_resnet18",
    "svd_resnet18_cifar",
    "wino_resnet18",
    "wino_resnet18_cifar",
]

_PREFIX_DOMAIN = {"svd": "svd", "wino": "winograd", "dct_conv": "dct"}


def _create(variant: str, pretrained: bool, **kwargs) -> ResNet:
    prefix = variant.split("_resnet18")[0]
    cifar_stem = ("conv1", "maxpool") if variant.endswith("_cifar") else None
    return create_converted(
        ResNet, variant, _PREFIX_DOMAIN[prefix], pretrained, cifar_stem, block=BasicBlock, layers=(2, 2, 2, 2), **kwargs
    )


_PAPERS = {
    "svd": dict(
        paper_ids=("arXiv:1405.3866", RESNET_PAPER),
        paper_name="Speeding up Convolutional Neural Networks with Low Rank Expansions",
    ),
    "wino": dict(
        paper_ids=("arXiv:1509.09308", "arXiv:1802.06367", RESNET_PAPER),
        paper_name="Efficient Sparse-Winograd Convolutional Neural Networks",
    ),
    "dct_conv": dict(paper_ids=(BAND_LIMITED_PAPER, RESNET_PAPER), paper_name=BAND_LIMITED_NAME),
}

default_cfgs = generate_default_cfgs(
    {
        **{f"{p}_resnet18.a1_in1k": timm_weights_cfg("resnet18.a1_in1k", **_PAPERS[p]) for p in _PREFIX_DOMAIN},
        **{f"{p}_resnet18_cifar": resnet_cifar_cfg(**_PAPERS[p]) for p in _PREFIX_DOMAIN},
    }
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
