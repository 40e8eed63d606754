"""Multigrid ResNet: ResNet-18's stages on a pyramid of grids that read each other in every convolution.

Ke, Maire, Yu, "Multigrid Neural Architectures", CVPR 2017.

The stem (ResNet's 7x7 stride-2 convolution and max-pool, or a 3x3 stride-1 convolution for 32x32
inputs) gives one map; average pooling makes a pyramid of ``num_grids`` grids (56, 28, 14 for a
224x224 image). Every block is a :class:`~freqnets.layers.MultigridBasicBlock`: each grid's 3x3
convolution reads its own grid, the finer grid max-pooled and the coarser grid upsampled. Grid ``j``
of a stage has ``round(width * grid_widths[j])`` channels, ``width`` ResNet's (64, 128, 256, 512).
``forward_features`` upsamples the coarser grids to the finest and concatenates them: a
``(B, num_features, 7, 7)`` map (``4x4`` for 32x32 inputs), ``num_features = sum of the last widths``.

* ``mg_resnet18`` (224x224), ``mg_resnet18_cifar`` (32x32).

Arguments: ``num_grids`` (default 3), ``grid_widths`` (default ``(0.75, 0.5, 0.25)``, finest first),
``num_classes``, ``in_chans``, ``drop_rate``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import generate_default_cfgs, register_model

from ..layers import MultigridBasicBlock
from ._converted import resnet_cfg, resnet_cifar_cfg
from ._head import ClassifierHeadMixin, ResNetStemMixin, check_layers, create_unpretrained, init_weights

__all__ = ["MultigridResNet", "merge_grids", "mg_resnet18", "mg_resnet18_cifar"]


def merge_grids(grids: Sequence[torch.Tensor]) -> torch.Tensor:
    """Upsample (nearest) every grid to the finest one's size and concatenate along channels."""
    size = grids[0].shape[-2:]
    return torch.cat([grids[0]] + [F.interpolate(g, size=size, mode="nearest") for g in grids[1:]], dim=1)


class MultigridResNet(ClassifierHeadMixin, ResNetStemMixin, nn.Module):
    """ResNet with multigrid basic blocks (see the module docstring).

    Args:
        layers: blocks per stage (four numbers).
        num_grids: grids in the pyramid (1 is a plain ResNet with ``grid_widths[0]`` scaling).
        grid_widths: channel multiplier of each grid, finest first (``num_grids`` entries).
        cifar: 3x3 stride-1 stem without max-pool (32x32 inputs).
        in_chans, num_classes, drop_rate: as timm's ResNet.
    """

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        num_grids: int = 3,
        grid_widths: Sequence[float] = (0.75, 0.5, 0.25),
        cifar: bool = False,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(num_grids, int) or num_grids < 1:
            raise ValueError(f"num_grids must be a positive int, got {num_grids!r}")
        grid_widths = tuple(grid_widths)[:num_grids]
        if len(grid_widths) != num_grids or any(not 0 < w <= 4 for w in grid_widths):
            raise ValueError(f"grid_widths needs {num_grids} multipliers in (0, 4], got {grid_widths!r}")
        layers = check_layers(layers, 4)
        self.num_grids, self.in_chans = num_grids, in_chans
        self.init_stem(in_chans, cifar)
        channels = (64,) * num_grids
        for index, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            widths = tuple(max(1, round(width * m)) for m in grid_widths)
            stage = []
            for b in range(blocks):
                stage.append(MultigridBasicBlock(channels, widths, stride=2 if index > 0 and b == 0 else 1))
                channels = widths
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
        self.num_features = self.head_hidden_size = sum(channels)
        self.init_head(num_classes, drop_rate)
        init_weights(self, zero_init_last)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem's map and its 2x2-average-pooled copies, finest first."""
        grids = [self.forward_stem(x)]
        for _ in range(1, self.num_grids):
            grids.append(F.avg_pool2d(grids[-1], 2, ceil_mode=True))
        return grids

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W)`` -> ``(B, num_features, H/32, W/32)`` (``H/8`` with the CIFAR stem)."""
        grids = self.pyramid(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            grids = stage(grids)
        return merge_grids(grids)


def _create(variant: str, pretrained: bool, **kwargs) -> MultigridResNet:
    return create_unpretrained(MultigridResNet, variant, pretrained, **kwargs)


default_cfgs = generate_default_cfgs(
    {
        "mg_resnet18": resnet_cfg(),
        "mg_resnet18_cifar": resnet_cifar_cfg(),
    }
)


@register_model
def mg_resnet18(pretrained: bool = False, **kwargs) -> MultigridResNet:
    """Multigrid ResNet-18 (3 grids), ImageNet stem, 224x224 inputs."""
    return _create("mg_resnet18", pretrained, layers=(2, 2, 2, 2), **kwargs)


@register_model
def mg_resnet18_cifar(pretrained: bool = False, **kwargs) -> MultigridResNet:
    """Multigrid ResNet-18 (3 grids) for 32x32 inputs (3x3 stem, no max-pool)."""
    return _create("mg_resnet18_cifar", pretrained, layers=(2, 2, 2, 2), cifar=True, **kwargs)
