"""timm's classifier interface, shared by the model classes written here (not converted from timm's ResNet)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import create_classifier


class ClassifierHeadMixin:
    """Global average pooling, dropout and a linear classifier, with timm's head methods.

    The class calls :meth:`init_head` in ``__init__`` after setting ``num_features``; ``forward_features``
    is its own, and ``forward`` is ``forward_head(forward_features(x))``.
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
