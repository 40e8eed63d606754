"""ResNets that read JPEG DCT coefficients directly, with early or late fusion of luma and chroma.

Gueguen, Sergeev, Kadlec, Liu, Yosinski, "Faster Neural Networks Straight from JPEG", NeurIPS 2018.

An 8x8-block DCT already has stride 8, the resolution that a ResNet reaches after its stem and
first stage at 1/4 and the first block of its second stage. As in the paper, the stem and the first
stage are dropped and the coefficients enter the second stage (``layer2``) with its stride removed:

* ``dct_resnet18`` / ``dct_resnet50`` ("UpSampling" in the paper, early fusion): chroma upsampled to
  the luma grid and stacked (``DCTCollate(layout="stacked")``), one tensor ``(B, Ky + 2*Kc, Hy, Wy)``
  into ``layer2`` (stride 1) -> ``layer3`` (stride 2) -> ``layer4`` (stride 2); 28x28 -> 7x7.
* ``dct_resnet18_late`` / ``dct_resnet50_late`` ("Late-Concat", late fusion): ``y`` through
  ``layer2`` (stride 1) and one stride-2 block of stage-3 width (``y_down``) to the chroma grid, then
  concatenated with ``cbcr`` (``DCTCollate(layout="planes")``) into ``layer3`` (stride 1) ->
  ``layer4`` (stride 2). Luma gets more computation than chroma, the paper's best trade-off.
  Input: ``model(y, cbcr)``, ``model((y, cbcr))`` or ``model(batch)`` with ``.y`` / ``.cbcr``.

``_cifar`` variants take 32x32 images' 4x4 luma grids: ``layer3`` keeps stride 1, ``layer4`` halves
to 2x2. Arguments: ``y_channels`` / ``c_channels`` (the lowest k zigzag frequencies per plane, default
64; ``c_channels=0`` reads luma only) or ``in_chans = Ky + 2*Kc``; ``normalize_input`` (default True, see
:mod:`freqnets.models._dct_input`); ``num_classes``; ``drop_rate``; ``drop_path_rate`` (stochastic depth).
timm's ``features_only`` / ``forward_intermediates`` give the outputs of ``layer2``, ``layer3`` and
``layer4`` (late fusion: ``layer2`` is the luma path alone); their ``reduction`` is relative to the
input's luma block grid, which is itself 1/8 of the image.

    >>> import timm, torch, freqnets
    >>> model = timm.create_model("dct_resnet18_late", y_channels=16, c_channels=8)
    >>> model(torch.randn(2, 16, 28, 28), torch.randn(2, 16, 14, 14)).shape
    torch.Size([2, 1000])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from timm.layers import DropPath
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck

from ..layers import as_ycbcr_pair
from ._converted import JPEG_DCT_NAME, JPEG_DCT_PAPER, RESNET_PAPER
from ._dct_input import check_in_chans, create_dct_model, dct_cfg, dct_normalizer, dct_plane_normalizers
from ._head import ClassifierHeadMixin, FeatureStagesMixin, check_layers, drop_path_rates, init_weights

__all__ = [
    "DCTResNet",
    "dct_resnet18",
    "dct_resnet18_cifar",
    "dct_resnet18_late",
    "dct_resnet18_late_cifar",
    "dct_resnet50",
    "dct_resnet50_late",
    "make_resnet_stage",
]

STAGE_WIDTHS = (64, 128, 256, 512)  # planes of layer1..layer4 in ResNet


def make_resnet_stage(
    block: type[nn.Module],
    inplanes: int,
    planes: int,
    blocks: int,
    stride: int,
    drop_path: Sequence[float] | None = None,
) -> nn.Sequential:
    """``blocks`` timm ResNet blocks, the first with ``stride`` and a 1x1 projection shortcut when needed.

    ``drop_path``: one stochastic-depth rate per block (None: none).
    """
    paths = [DropPath(rate) if rate else None for rate in (drop_path or [0.0] * blocks)]
    outplanes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes)
        )
    layers = [block(inplanes, planes, stride=stride, downsample=downsample, drop_path=paths[0])]
    layers += [block(outplanes, planes, drop_path=paths[b]) for b in range(1, blocks)]
    return nn.Sequential(*layers)


class DCTResNet(FeatureStagesMixin, ClassifierHeadMixin, nn.Module):
    """ResNet stages 2-4 on DCT coefficients (see the module docstring).

    Args:
        block: ``BasicBlock`` or ``Bottleneck`` (timm's).
        layers: blocks per stage, four numbers as ResNet's (the first stage's is unused).
        fusion: ``"early"`` (one stacked tensor) or ``"late"`` (``y`` and ``cbcr`` separately).
        y_channels: luma frequencies ``Ky`` (lowest in zigzag order).
        c_channels: chroma frequencies ``Kc`` per chroma plane.
        in_chans: ``Ky + 2*Kc`` (checked; set by the model functions).
        last_stride: stride of ``layer4`` (2; 1 would keep the grid).
        third_stride: stride of ``layer3`` in early fusion (2 for 28x28 grids, 1 for CIFAR's 4x4).
        stats: ``"imagenet"`` or ``"cifar10"`` DCT statistics for the input normalisation.
        normalize_input: normalise with ``stats`` (turn off when the collate normalises).
        num_classes: classifier outputs.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth, rising linearly over the blocks to this rate.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: tuple[int, ...],
        fusion: str = "early",
        y_channels: int = 64,
        c_channels: int = 64,
        in_chans: int | None = None,
        last_stride: int = 2,
        third_stride: int = 2,
        stats: str = "imagenet",
        normalize_input: bool = True,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        if fusion not in ("early", "late"):
            raise ValueError(f"fusion must be 'early' or 'late', got {fusion!r}")
        layers = check_layers(layers, 4)
        self.fusion, self.y_channels, self.c_channels = fusion, y_channels, c_channels
        self.stats, self.normalize_input = stats, normalize_input
        self.in_chans = check_in_chans(in_chans, y_channels, c_channels)
        if fusion == "early":
            self.normalize = dct_normalizer(stats, y_channels, c_channels, normalize_input)
        else:
            self.normalize_y, self.normalize_cbcr = dct_plane_normalizers(
                stats, y_channels, c_channels, normalize_input
            )
        widths = [w * block.expansion for w in STAGE_WIDTHS]
        if fusion == "early":
            rates2, rates3, rates4 = drop_path_rates(drop_path_rate, layers[1:])
            self.layer2 = make_resnet_stage(block, self.in_chans, STAGE_WIDTHS[1], layers[1], 1, rates2)
            self.layer3 = make_resnet_stage(block, widths[1], STAGE_WIDTHS[2], layers[2], third_stride, rates3)
            self._stage_modules = (("layer2",), ("layer3",), ("layer4",))
            strides = (1, third_stride, last_stride)
        else:
            rates2, rates_down, rates3, rates4 = drop_path_rates(drop_path_rate, (layers[1], 1, *layers[2:]))
            self.layer2 = make_resnet_stage(block, y_channels, STAGE_WIDTHS[1], layers[1], 1, rates2)
            self.y_down = make_resnet_stage(block, widths[1], STAGE_WIDTHS[2], 1, 2, rates_down)
            self.layer3 = make_resnet_stage(block, widths[2] + 2 * c_channels, STAGE_WIDTHS[2], layers[2], 1, rates3)
            self._stage_modules = (("layer2",), ("y_down", "layer3"), ("layer4",))
            strides = (1, 2, last_stride)
        self.layer4 = make_resnet_stage(block, widths[2], STAGE_WIDTHS[3], layers[3], last_stride, rates4)
        reductions = (strides[0], strides[0] * strides[1], strides[0] * strides[1] * strides[2])
        self.feature_info = [
            dict(num_chs=widths[i + 1], reduction=reductions[i], module=f"layer{i + 2}") for i in range(3)
        ]
        self.num_features = self.head_hidden_size = widths[3]
        self.init_head(num_classes, drop_rate)
        init_weights(self, zero_init_last)

    # forward_features(x, cbcr=None): features ``(B, num_features, H', W')`` of the DCT input (a tensor, or
    # ``y, cbcr`` for late fusion).

    def enter(self, x, cbcr: torch.Tensor | None):
        if self.fusion == "early":
            if cbcr is not None or not isinstance(x, torch.Tensor):
                raise TypeError(
                    "an early-fusion DCT ResNet takes one stacked tensor (B, Ky + 2*Kc, Hy, Wy) "
                    "(DCTCollate layout='stacked'); use the *_late models for (y, cbcr)"
                )
            return self.normalize(x)
        y, cbcr = as_ycbcr_pair(x, cbcr)
        if y.shape[1] != self.y_channels or cbcr.shape[1] != 2 * self.c_channels:
            raise ValueError(
                f"expected y with {self.y_channels} and cbcr with {2 * self.c_channels} channels, "
                f"got {y.shape[1]} and {cbcr.shape[1]}"
            )
        return self.normalize_y(y), self.normalize_cbcr(cbcr)

    def run_stage(self, index: int, state):
        if self.fusion == "early":
            return (self.layer2, self.layer3, self.layer4)[index](state)
        if index == 0:  # the luma path alone; chroma waits at its own grid
            y, cbcr = state
            return self.layer2(y), cbcr
        if index == 1:
            y, cbcr = state
            return self.layer3(torch.cat([self.y_down(y), cbcr], dim=1))
        return self.layer4(state)

    def feature_map(self, index: int, state) -> torch.Tensor:
        return state[0] if isinstance(state, tuple) else state


def _create(variant: str, pretrained: bool, block, layers, fusion: str, cifar: bool, **kwargs) -> DCTResNet:
    defaults = dict(last_stride=2 if fusion == "early" or not cifar else 1, third_stride=1 if cifar else 2)
    stats = "cifar10" if cifar else "imagenet"
    return create_dct_model(
        DCTResNet, variant, pretrained, kwargs, defaults, block=block, layers=layers, fusion=fusion, stats=stats
    )


def _cfg(fusion: str, cifar: bool) -> dict:
    first_conv = "layer2.0.conv1" if fusion == "early" else ("layer2.0.conv1", "layer3.0.conv1")
    paper = dict(paper_ids=(JPEG_DCT_PAPER, RESNET_PAPER), paper_name=JPEG_DCT_NAME)
    return dct_cfg(cifar, first_conv=first_conv, classifier="fc", **paper)


default_cfgs = generate_default_cfgs(
    {
        "dct_resnet18": _cfg("early", False),
        "dct_resnet50": _cfg("early", False),
        "dct_resnet18_late": _cfg("late", False),
        "dct_resnet50_late": _cfg("late", False),
        "dct_resnet18_cifar": _cfg("early", True),
        "dct_resnet18_late_cifar": _cfg("late", True),
    }
)


@register_model
def dct_resnet18(pretrained: bool = False, **kwargs) -> DCTResNet:
    """ResNet-18 stages 2-4 on stacked DCT coefficients (early fusion), 28x28 luma grids (224x224 images)."""
    return _create("dct_resnet18", pretrained, BasicBlock, (2, 2, 2, 2), "early", False, **kwargs)


@register_model
def dct_resnet50(pretrained: bool = False, **kwargs) -> DCTResNet:
    """ResNet-50 stages 2-4 on stacked DCT coefficients (early fusion, the paper's "UpSampling")."""
    return _create("dct_resnet50", pretrained, Bottleneck, (3, 4, 6, 3), "early", False, **kwargs)


@register_model
def dct_resnet18_late(pretrained: bool = False, **kwargs) -> DCTResNet:
    """ResNet-18 on DCT planes, chroma joining at stage 3 (late fusion); input ``(y, cbcr)``."""
    return _create("dct_resnet18_late", pretrained, BasicBlock, (2, 2, 2, 2), "late", False, **kwargs)


@register_model
def dct_resnet50_late(pretrained: bool = False, **kwargs) -> DCTResNet:
    """ResNet-50 on DCT planes, chroma joining at stage 3 (the paper's "Late-Concat"); input ``(y, cbcr)``."""
    return _create("dct_resnet50_late", pretrained, Bottleneck, (3, 4, 6, 3), "late", False, **kwargs)


@register_model
def dct_resnet18_cifar(pretrained: bool = False, **kwargs) -> DCTResNet:
    """Early-fusion DCT ResNet-18 for 32x32 images (4x4 luma grid -> 2x2 features)."""
    return _create("dct_resnet18_cifar", pretrained, BasicBlock, (2, 2, 2, 2), "early", True, **kwargs)


@register_model
def dct_resnet18_late_cifar(pretrained: bool = False, **kwargs) -> DCTResNet:
    """Late-fusion DCT ResNet-18 for 32x32 images (4x4 luma, 2x2 chroma grids -> 2x2 features)."""
    return _create("dct_resnet18_late_cifar", pretrained, BasicBlock, (2, 2, 2, 2), "late", True, **kwargs)
