"""Band-limited DenseNets: timm's DenseNet with every 3x3 and larger convolution band-limited.

``bl_densenet121`` uses the ImageNet stem; ``bl_densenet121_cifar`` a 3x3
stride-1 stem and no max-pool, for 32x32 inputs. Arguments as for the
band-limited ResNets (``compress_rate``, ``min_kernel_size``, ``backend``) plus
timm's ``DenseNet`` arguments. The 1x1 bottleneck and transition convolutions
stay ordinary convolutions by default.

DenseNet: Huang, Liu, van der Maaten, Weinberger, "Densely Connected
Convolutional Networks", CVPR 2017.
"""

from __future__ import annotations

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.densenet import DenseNet

from ..layers import convert_model
from ._converted import cifar_cfg, imagenet_cfg, refuse_pretrained, use_cifar_stem

__all__ = ["bl_densenet121", "bl_densenet121_cifar"]


def _create_bl_densenet(
    variant: str,
    pretrained: bool,
    cifar: bool,
    compress_rate: float = 0.5,
    min_kernel_size: int = 3,
    backend: str = "torch",
    **kwargs,
) -> DenseNet:
    refuse_pretrained(variant, pretrained)
    model = build_model_with_cfg(
        DenseNet,
        variant,
        pretrained=False,
        feature_cfg=dict(flatten_sequential=True),
        growth_rate=32,
        block_config=(6, 12, 24, 16),
        **kwargs,
    )
    if cifar:
        use_cifar_stem(model, "features.conv0", "features.pool0")
    return convert_model(model, "fft", compress_rate=compress_rate, min_kernel_size=min_kernel_size, backend=backend)


def _cfg(**kwargs) -> dict:
    return imagenet_cfg(interpolation="bicubic", first_conv="features.conv0", classifier="classifier", **kwargs)


default_cfgs = generate_default_cfgs(
    {
        "bl_densenet121": _cfg(),
        "bl_densenet121_cifar": cifar_cfg(first_conv="features.conv0", classifier="classifier"),
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
