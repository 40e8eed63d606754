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
``num_classes``, ``in_chans``, ``drop_rate``, ``drop_path_rate`` (stochastic depth, all grids of a block
dropped together). timm's ``features_only`` / ``forward_intermediates`` give the stem (before the
max-pool) and the four stages, each stage's grids merged as ``forward_features`` merges the last.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import generate_default_cfgs, register_model

from ..layers import MultigridBasicBlock
from ._converted import MULTIGRID_PAPER, RESNET_PAPER, resnet_cfg, resnet_cifar_cfg
from ._head import (
    ClassifierHeadMixin,
    FeatureStagesMixin,
    ResNetStemMixin,
    check_layers,
    create_unpretrained,
    drop_path_rates,
    init_weights,
)

__all__ = ["MultigridResNet", "merge_grids", "mg_resnet18", "mg_resnet18_cifar"]


def merge_grids(grids: Sequence[torch.Tensor]) -> torch.Tensor:
    """Upsample (nearest) every grid to the finest one's size and concatenate along channels."""
    size = grids[0].shape[-2:]
    return torch.cat([grids[0]] + [F.interpolate(g, size=size, mode="nearest") for g in grids[1:]], dim=1)


class MultigridResNet(FeatureStagesMixin, ClassifierHeadMixin, ResNetStemMixin, nn.Module):
    """ResNet with multigrid basic blocks (see the module docstring).

    Args:
        layers: blocks per stage (four numbers).
        num_grids: grids in the pyramid (1 is a plain ResNet with ``grid_widths[0]`` scaling).
        grid_widths: channel multiplier of each grid, finest first (``num_grids`` entries).
        cifar: 3x3 stride-1 stem without max-pool (32x32 inputs).
        in_chans, num_classes, drop_rate, drop_path_rate: as timm's ResNet.
    """

    _stage_modules = (("conv1", "bn1", "act1"), ("maxpool", "layer1"), ("layer2",), ("layer3",), ("layer4",))

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        num_grids: int = 3,
        grid_widths: Sequence[float] = (0.75, 0.5, 0.25),
        cifar: bool = False,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
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
        reduction = self.init_stem(in_chans, cifar)
        self.feature_info = [dict(num_chs=64, reduction=reduction, module="act1")]
        reduction *= 1 if cifar else 2  # the max-pool
        channels = (64,) * num_grids
        stages = zip((64, 128, 256, 512), layers, drop_path_rates(drop_path_rate, layers), strict=True)
        for index, (width, blocks, rates) in enumerate(stages):
            widths = tuple(max(1, round(width * m)) for m in grid_widths)
            stage = []
            for b in range(blocks):
                stride = 2 if index > 0 and b == 0 else 1
                stage.append(MultigridBasicBlock(channels, widths, stride=stride, drop_path=rates[b]))
                channels = widths
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            reduction *= 2 if index > 0 else 1
            self.feature_info.append(dict(num_chs=sum(widths), reduction=reduction, module=f"layer{index + 1}"))
        self.num_features = self.head_hidden_size = sum(channels)
        self.init_head(num_classes, drop_rate)
        init_weights(self, zero_init_last)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem's (max-pooled) map and its 2x2-average-pooled copies, finest first."""
        grids = [self.maxpool(x)]
        for _ in range(1, self.num_grids):
            grids.append(F.avg_pool2d(grids[-1], 2, ceil_mode=True))
        return grids

    # forward_features: ``(B, in_chans, H, W)`` -> ``(B, num_features, H/32, W/32)`` (``H/8`` with the CIFAR stem).

    def run_stage(self, index: int, state):
        if index == 0:
            return self.stem_stage(state)
        if index == 1:
            state = self.pyramid(state)
        return getattr(self, f"layer{index}")(state)

    def feature_map(self, index: int, state) -> torch.Tensor:
        return state if index == 0 else merge_grids(state)


def _create(variant: str, pretrained: bool, **kwargs) -> MultigridResNet:
    return create_unpretrained(MultigridResNet, variant, pretrained, (0, 1, 2, 3, 4), **kwargs)


_PAPER = dict(paper_ids=(MULTIGRID_PAPER, RESNET_PAPER), paper_name="Multigrid Neural Architectures")

default_cfgs = generate_default_cfgs(
    {
        "mg_resnet18": resnet_cfg(**_PAPER),
        "mg_resnet18_cifar": resnet_cifar_cfg(**_PAPER),
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
