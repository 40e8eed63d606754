"""timm's classifier interface, shared by the model classes written here (not converted from timm's ResNet)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import create_classifier
from timm.models import build_model_with_cfg

from ._converted import refuse_pretrained


class ClassifierHeadMixin:
    """Global average pooling, dropout and a linear classifier, with timm's head methods.

    The class calls :meth:`init_head` in ``__init__`` after setting ``num_features``; ``forward_features``
    is its own, and ``forward`` is ``forward_head(forward_features(...))`` with the same arguments.
    """

    num_features: int
    num_classes: int
    drop_rate: float

    def init_head(self, num_classes: int, drop_rate: float = 0.0, global_pool: str = "avg") -> None:
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x, *args, **kwargs) -> torch.Tensor:
        """Logits ``(B, num_classes)``: ``forward_head(forward_features(x, *args, **kwargs))``."""
        return self.forward_head(self.forward_features(x, *args, **kwargs))


class ResNetStemMixin:
    """ResNet's stem as attributes ``conv1``, ``maxpool``, ``bn1``, ``act1`` (timm's names: ``first_conv="conv1"``)."""

    def init_stem(self, in_chans: int, cifar: bool, width: int = 64) -> None:
        """7x7 stride-2 convolution and 3x3 stride-2 max-pool, or with ``cifar`` a 3x3 stride-1 one and no pool."""
        if cifar:
            self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1, self.act1 = nn.BatchNorm2d(width), nn.ReLU(inplace=True)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W)`` -> ``(B, width, H/4, W/4)`` (``H, W`` with the CIFAR stem)."""
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))


def create_unpretrained(model_cls: type[nn.Module], variant: str, pretrained: bool, **kwargs) -> nn.Module:
    """``model_cls`` built by timm with ``variant``'s cfg; ``pretrained=True`` raises ValueError (no weights yet)."""
    refuse_pretrained(variant, pretrained)
    return build_model_with_cfg(model_cls, variant, pretrained=False, **kwargs)


def check_layers(layers: Sequence[int], stages: int) -> tuple[int, ...]:
    """``layers`` as a tuple of ``stages`` positive block counts; ValueError naming ``layers`` otherwise."""
    if (
        not isinstance(layers, Sequence)
        or isinstance(layers, str)
        or len(layers) != stages
        or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in layers)
    ):
        raise ValueError(f"layers must be {stages} positive ints (blocks per stage), got {layers!r}")
    return tuple(layers)


def init_weights(model: nn.Module, zero_init_last: bool = True) -> None:
    """He initialisation of convolutions, unit batch norm, and zero last batch norm of each residual branch."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    if zero_init_last:
        for module in model.modules():
            if module is not model and hasattr(module, "zero_init_last"):
                module.zero_init_last()
