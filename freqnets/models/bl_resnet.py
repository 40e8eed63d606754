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

from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from ._converted import create_converted_resnet, resnet_cfg, resnet_cifar_cfg

__all__ = ["bl_resnet18", "bl_resnet18_cifar", "bl_resnet50", "bl_resnet50_cifar"]


default_cfgs = generate_default_cfgs(
    {
        "bl_resnet18": resnet_cfg(),
        "bl_resnet50": resnet_cfg(),
        "bl_resnet18_cifar": resnet_cifar_cfg(),
        "bl_resnet50_cifar": resnet_cifar_cfg(),
    }
)


def _create_bl_resnet(variant: str, pretrained: bool, cifar: bool, **kwargs) -> ResNet:
    return create_converted_resnet(variant, "fft", pretrained, cifar, **kwargs)


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
