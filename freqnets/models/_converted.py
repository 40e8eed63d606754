"""What the converted model families share: CIFAR stems, conversion, pretrained weights, features, cfgs.

A converted model is timm's architecture built by timm (so ``pretrained=True`` loads timm's weights for
that architecture, strictly, before anything changes), given the CIFAR stem for ``_cifar`` variants,
converted to its domain by :func:`~freqnets.layers.convert_model`, and only then wrapped for
``features_only``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, get_pretrained_cfg
from timm.models._builder import pretrained_cfg_for_features
from timm.models._features import FeatureGetterNet

from ..layers import convert_model

#: CIFAR-10 training-set channel statistics (Krizhevsky, 2009), the values used across the literature.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: arXiv ids of the papers behind the families (timm's ``paper_ids`` cfg field).
RESNET_PAPER = "arXiv:1512.03385"  # He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
DENSENET_PAPER = "arXiv:1608.06993"  # Huang et al., "Densely Connected Convolutional Networks", CVPR 2017
BAND_LIMITED_PAPER = "arXiv:1911.09287"  # Dziedzic et al., "Band-limited Training and Inference for CNNs", ICML 2019
BAND_LIMITED_NAME = "Band-limited Training and Inference for Convolutional Neural Networks"
OCTAVE_PAPER = "arXiv:1904.05049"  # Chen et al., "Drop an Octave", ICCV 2019
MULTIGRID_PAPER = "arXiv:1611.07661"  # Ke, Maire, Yu, "Multigrid Neural Architectures", CVPR 2017
# Gueguen et al., "Faster Neural Networks Straight from JPEG", NeurIPS 2018 (not on arXiv: its proceedings page)
JPEG_DCT_PAPER = "https://proceedings.neurips.cc/paper/2018/hash/7af6266cc52234b5aa339b16695f7fc4-Abstract.html"
JPEG_DCT_NAME = "Faster Neural Networks Straight from JPEG"


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


def create_converted(
    model_cls: type[nn.Module],
    variant: str,
    domain: str,
    pretrained: bool,
    cifar_stem: tuple[str, str] | None = None,
    compress_rate: float = 0.5,
    min_kernel_size: int = 3,
    backend: str = "torch",
    adapt: Callable[[nn.Module], None] | None = None,
    **kwargs,
) -> nn.Module:
    """timm's ``model_cls`` (its arguments in ``kwargs``) built with ``variant``'s cfg, converted to ``domain``.

    Args:
        model_cls: timm's ``ResNet`` or ``DenseNet``.
        variant: the registered name (its cfg names the timm weights that ``pretrained=True`` loads).
        domain: ``convert_model``'s domain.
        pretrained: load the cfg's weights (timm's for the same architecture) before converting.
        cifar_stem: ``(conv, pool)`` module names to replace by the 3x3 stride-1 CIFAR stem; no weights
            exist for it, so with ``pretrained=True`` this raises ValueError.
        compress_rate, min_kernel_size, backend: ``convert_model``'s.
        adapt: called with the converted model before any ``features_only`` wrapping.
        kwargs: ``features_only`` / ``out_indices`` (timm's ``FeatureGetterNet``, after conversion),
            ``pretrained_cfg_overlay`` (e.g. ``dict(file=path)`` for local weights) and the rest for
            ``model_cls``.

    The model's ``pretrained_cfg`` gains ``domain`` and ``compress_rate`` (the rate it was built with).
    """
    if cifar_stem is not None:
        refuse_pretrained(variant, pretrained)
    features_only = kwargs.pop("features_only", False)
    feature_kwargs = {k: kwargs.pop(k) for k in ("out_indices", "feature_cls") if k in kwargs}
    if feature_kwargs.get("feature_cls", "getter") != "getter":
        raise ValueError(f"{variant} gives features through forward_intermediates only (feature_cls='getter')")
    model = build_model_with_cfg(model_cls, variant, pretrained=pretrained, **kwargs)
    if cifar_stem is not None:
        use_cifar_stem(model, *cifar_stem)
    model = convert_model(model, domain, compress_rate=compress_rate, min_kernel_size=min_kernel_size, backend=backend)
    model.pretrained_cfg = model.default_cfg = {
        **model.pretrained_cfg,
        "domain": domain,
        "compress_rate": compress_rate,
    }
    if adapt is not None:
        adapt(model)
    if features_only:
        cfg = model.pretrained_cfg
        model = FeatureGetterNet(model, out_indices=feature_kwargs.get("out_indices", (0, 1, 2, 3, 4)))
        model.pretrained_cfg = model.default_cfg = pretrained_cfg_for_features(cfg)
    return model


def timm_weights_cfg(source: str, **kwargs) -> dict:
    """The cfg of a converted model that loads timm's ``source`` weights (e.g. ``"resnet18.a1_in1k"``).

    Location (``hf_hub_id``, ``url``) and data fields (input size, crop, interpolation, mean, std) are
    those of timm's ``source``, so that timm's data config matches the weights; ``kwargs`` add fields.
    """
    cfg = get_pretrained_cfg(source).to_dict()
    for key in ("architecture", "tag", "paper_ids", "origin_url", "paper_name", "notes"):
        cfg.pop(key, None)
    return {**cfg, "notes": (f"weights: timm's {source}, converted at load",), **kwargs}


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
    """ImageNet-size cfg of a ResNet-shaped model (no weights)."""
    return imagenet_cfg(first_conv="conv1", classifier="fc", **kwargs)


def resnet_cifar_cfg(**kwargs) -> dict:
    """CIFAR-10-size cfg of a ResNet-shaped model (3x3 stem, no max-pool)."""
    return cifar_cfg(first_conv="conv1", classifier="fc", **kwargs)
