"""Octave ResNets: every convolution of the residual stages an :class:`~freqnets.layers.OctConv2d`.

Chen et al., "Drop an Octave: Reducing Spatial Redundancy in Convolutional Neural Networks with
Octave Convolution", ICCV 2019.

A fraction ``alpha`` (default 0.25, the paper's Oct-ResNet-50 setting) of every feature map's
channels lives at half resolution. The stem is a plain convolution; the first block of ``layer1``
splits the map (``alpha_in = 0 -> alpha``), ``layer1`` to ``layer3`` are octave throughout, the first
block of ``layer4`` merges the low path back (``alpha -> 0``) and the rest of ``layer4`` is plain, so
``forward_features`` returns an ordinary ``(B, C, 7, 7)`` map. Stride 2 pools both paths.

* ``oct_resnet50`` (ImageNet stem, 224x224), ``oct_resnet18`` (basic blocks);
* ``oct_resnet18_cifar``, ``oct_resnet50_cifar``: 3x3 stride-1 stem, no max-pool, 32x32 inputs.

Arguments: ``alpha``, ``num_classes``, ``in_chans``, ``drop_rate``, ``drop_path_rate`` (stochastic depth,
both paths of a block dropped together). timm's ``features_only`` / ``forward_intermediates`` give the
stem (before the max-pool) and the four stages, as for timm's ResNet; an octave stage's map is its
high path with the low path upsampled and concatenated (all of the stage's channels).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models import generate_default_cfgs, register_model

from ..layers import OctaveMap, OctaveTensors, OctConv2d
from ..layers.multigrid_conv import drop_branches
from ..layers.octave_conv import octave_add
from ._converted import OCTAVE_PAPER, RESNET_PAPER, resnet_cfg, resnet_cifar_cfg
from ._head import (
    ClassifierHeadMixin,
    FeatureStagesMixin,
    ResNetStemMixin,
    check_layers,
    create_unpretrained,
    drop_path_rates,
    init_weights,
)
from .mg_resnet import merge_grids

__all__ = ["OctResNet", "oct_resnet18", "oct_resnet18_cifar", "oct_resnet50", "oct_resnet50_cifar"]


def _octave_norm(channels: int, alpha: float) -> OctaveMap:
    low = round(alpha * channels)
    return OctaveMap(nn.BatchNorm2d(channels - low), nn.BatchNorm2d(low) if low else None)


def _as_pair(x) -> OctaveTensors:
    return x if isinstance(x, OctaveTensors) else OctaveTensors(x, None)


class OctaveBlock(nn.Module):
    """A residual block of octave convolutions: basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1, x4 channels).

    Args:
        inplanes: input channels (high + low).
        planes: width of the block (outputs ``planes * expansion``).
        stride: 1 or 2 (on the 3x3 convolution and the shortcut, pooling both paths).
        alpha_in: low fraction of the input; ``alpha_out`` of the output. Inner maps use the larger.
        bottleneck: bottleneck (``expansion = 4``) or basic (``expansion = 1``) block.
        drop_path: stochastic-depth rate of the residual branch (both paths dropped together).
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        alpha_in: float,
        alpha_out: float,
        bottleneck: bool,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.expansion = 4 if bottleneck else 1
        outplanes = planes * self.expansion
        inner = max(alpha_in, alpha_out)
        if bottleneck:
            specs = [(inplanes, planes, 1, 1), (planes, planes, 3, stride), (planes, outplanes, 1, 1)]
        else:
            specs = [(inplanes, planes, 3, stride), (planes, outplanes, 3, 1)]
        alphas = [alpha_in] + [inner] * (len(specs) - 1) + [alpha_out]
        self.convs = nn.ModuleList(
            OctConv2d(cin, cout, k, stride=s, alpha_in=alphas[i], alpha_out=alphas[i + 1])
            for i, (cin, cout, k, s) in enumerate(specs)
        )
        self.norms = nn.ModuleList(_octave_norm(cout, alphas[i + 1]) for i, (_, cout, _, _) in enumerate(specs))
        self.act = OctaveMap(nn.ReLU(inplace=True), nn.ReLU(inplace=True) if alphas[-1] else None)
        self.inner_act = OctaveMap(nn.ReLU(inplace=True), nn.ReLU(inplace=True) if inner else None)
        self.downsample = None
        if stride != 1 or inplanes != outplanes or alpha_in != alpha_out:
            self.downsample = nn.Sequential(
                OctConv2d(inplanes, outplanes, 1, stride=stride, alpha_in=alpha_in, alpha_out=alpha_out),
                _octave_norm(outplanes, alpha_out),
            )

    def zero_init_last(self) -> None:
        last = self.norms[-1]
        for bn in (last.high, last.low):
            if bn is not None:
                nn.init.zeros_(bn.weight)

    def forward(self, x: OctaveTensors | torch.Tensor) -> OctaveTensors:
        x = _as_pair(x)
        out = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            out = norm(_as_pair(conv(out)))
            if i + 1 < len(self.convs):
                out = self.inner_act(out)
        out = OctaveTensors(*drop_branches(out, self.drop_path, self.training))
        shortcut = x if self.downsample is None else _as_pair(self.downsample(x))
        return self.act(octave_add(out, shortcut))


class OctResNet(FeatureStagesMixin, ClassifierHeadMixin, ResNetStemMixin, nn.Module):
    """ResNet with octave convolutions in its stages (see the module docstring).

    Args:
        layers: blocks per stage (four numbers).
        bottleneck: bottleneck blocks (ResNet-50) or basic blocks (ResNet-18).
        alpha: low-frequency fraction of the channels in the octave stages.
        cifar: 3x3 stride-1 stem without max-pool (32x32 inputs) instead of 7x7 stride 2 + max-pool.
        in_chans: input channels; num_classes: classifier outputs; drop_rate: dropout before it.
        drop_path_rate: stochastic depth, rising linearly over the blocks to this rate.
    """

    _stage_modules = (("conv1", "bn1", "act1"), ("maxpool", "layer1"), ("layer2",), ("layer3",), ("layer4",))

    def __init__(
        self,
        layers: tuple[int, ...],
        bottleneck: bool = True,
        alpha: float = 0.25,
        cifar: bool = False,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1) (the low-frequency channel fraction), got {alpha!r}")
        layers = check_layers(layers, 4)
        self.alpha, self.in_chans = alpha, in_chans
        reduction = self.init_stem(in_chans, cifar)
        self.feature_info = [dict(num_chs=64, reduction=reduction, module="act1")]
        reduction *= 1 if cifar else 2  # the max-pool
        expansion = 4 if bottleneck else 1
        inplanes = 64
        stages = zip((64, 128, 256, 512), layers, drop_path_rates(drop_path_rate, layers), strict=True)
        for index, (planes, blocks, rates) in enumerate(stages):
            stage = []
            for b in range(blocks):
                alpha_in = 0.0 if index == 0 and b == 0 else (0.0 if index == 3 and b > 0 else alpha)
                alpha_out = 0.0 if index == 3 else alpha
                stride = 2 if index > 0 and b == 0 else 1
                stage.append(OctaveBlock(inplanes, planes, stride, alpha_in, alpha_out, bottleneck, rates[b]))
                inplanes = planes * expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            reduction *= 2 if index > 0 else 1
            self.feature_info.append(dict(num_chs=inplanes, reduction=reduction, module=f"layer{index + 1}"))
        self.num_features = self.head_hidden_size = inplanes
        self.init_head(num_classes, drop_rate)
        init_weights(self, zero_init_last)

    # forward_features: ``(B, in_chans, H, W)`` -> ``(B, num_features, H/32, W/32)`` (``H/8`` with the CIFAR stem).

    def run_stage(self, index: int, state):
        if index == 0:
            return self.stem_stage(state)
        if index == 1:
            state = self.maxpool(state)
        return getattr(self, f"layer{index}")(state)

    def feature_map(self, index: int, state) -> torch.Tensor:
        if isinstance(state, torch.Tensor) or state.low is None:
            return state if isinstance(state, torch.Tensor) else state.high
        return merge_grids([state.high, state.low])


def _create(variant: str, pretrained: bool, **kwargs) -> OctResNet:
    return create_unpretrained(OctResNet, variant, pretrained, (0, 1, 2, 3, 4), **kwargs)


_PAPER = dict(
    paper_ids=(OCTAVE_PAPER, RESNET_PAPER),
    paper_name="Drop an Octave: Reducing Spatial Redundancy in Convolutional Neural Networks with Octave Convolution",
)

default_cfgs = generate_default_cfgs(
    {
        "oct_resnet18": resnet_cfg(**_PAPER),
        "oct_resnet50": resnet_cfg(**_PAPER),
        "oct_resnet18_cifar": resnet_cifar_cfg(**_PAPER),
        "oct_resnet50_cifar": resnet_cifar_cfg(**_PAPER),
    }
)


@register_model
def oct_resnet18(pretrained: bool = False, **kwargs) -> OctResNet:
    """Octave ResNet-18 (basic blocks, alpha 0.25), ImageNet stem."""
    return _create("oct_resnet18", pretrained, layers=(2, 2, 2, 2), bottleneck=False, **kwargs)


@register_model
def oct_resnet50(pretrained: bool = False, **kwargs) -> OctResNet:
    """Octave ResNet-50 (alpha 0.25), ImageNet stem, 224x224 inputs."""
    return _create("oct_resnet50", pretrained, layers=(3, 4, 6, 3), bottleneck=True, **kwargs)


@register_model
def oct_resnet18_cifar(pretrained: bool = False, **kwargs) -> OctResNet:
    """Octave ResNet-18 for 32x32 inputs (3x3 stem, no max-pool)."""
    return _create("oct_resnet18_cifar", pretrained, layers=(2, 2, 2, 2), bottleneck=False, cifar=True, **kwargs)


@register_model
def oct_resnet50_cifar(pretrained: bool = False, **kwargs) -> OctResNet:
    """Octave ResNet-50 for 32x32 inputs (3x3 stem, no max-pool)."""
    return _create("oct_resnet50_cifar", pretrained, layers=(3, 4, 6, 3), bottleneck=True, cifar=True, **kwargs)
