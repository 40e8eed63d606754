"""JPEG DCT planes into a two-grid multigrid ResNet: a luma path and a chroma path exchanging every block.

A 4:2:0 JPEG's chroma block grid is half its luma grid, the ratio between neighbouring grids of a
multigrid (Ke, Maire, Yu, CVPR 2017) or octave (Chen et al., ICCV 2019) network. Instead of
upsampling chroma (early fusion) or joining it late (Gueguen et al., NeurIPS 2018), the network keeps
``y`` ``(B, Ky, Hy, Wy)`` and ``cbcr`` ``(B, 2*Kc, ceil(Hy/2), ceil(Wy/2))`` at their own resolutions
from the input to the end, as the fine and coarse grid of
:class:`~freqnets.layers.YCbCrExchangeBlock` s: in each convolution the luma path reads chroma
upsampled and the chroma path reads luma 2x2-average-pooled. The luma path is wider
(``y_width = 0.75`` of ResNet-18's stage width against ``c_width = 0.25``).

Like the DCT ResNets (:mod:`freqnets.models.dct_resnet`) the blocks start at ResNet-18's second stage
(the DCT has stride 8): three stages of two blocks, widths 128, 256, 512 split between the paths,
strides 1, 2, 2 (28x28 luma -> 7x7) or 1, 1, 2 for 32x32 images (``_cifar``: 4x4 -> 2x2).
``forward_features`` upsamples the chroma path to the luma grid and concatenates them.

Input: ``model(y, cbcr)``, ``model((y, cbcr))`` or ``model(batch)`` with ``.y`` and ``.cbcr``
(``DCTCollate(layout="planes")``). Arguments: ``y_channels``, ``c_channels`` (or ``in_chans``),
``y_width``, ``c_width``, ``normalize_input``, ``num_classes``, ``drop_rate``, ``drop_path_rate``
(stochastic depth, both paths of a block dropped together). timm's ``features_only`` /
``forward_intermediates`` give the three stages, each merged as ``forward_features`` merges the last;
``reduction`` is relative to the luma block grid.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models import generate_default_cfgs, register_model

from ..layers import YCbCrExchangeBlock, as_ycbcr_pair
from ._converted import JPEG_DCT_NAME, JPEG_DCT_PAPER, MULTIGRID_PAPER, RESNET_PAPER
from ._dct_input import check_in_chans, create_dct_model, dct_cfg, dct_plane_normalizers
from ._head import ClassifierHeadMixin, FeatureStagesMixin, check_layers, drop_path_rates, init_weights
from .mg_resnet import merge_grids

__all__ = ["DCTMultigridResNet", "dct_mg_resnet18", "dct_mg_resnet18_cifar"]


class DCTMultigridResNet(FeatureStagesMixin, ClassifierHeadMixin, nn.Module):
    """Luma and chroma DCT paths as the two grids of a multigrid ResNet (see the module docstring).

    Args:
        layers: blocks per stage, three numbers (ResNet-18's stages 2-4).
        strides: stride of each stage's first block.
        y_channels: luma frequencies ``Ky``; c_channels: chroma frequencies ``Kc`` per plane.
        in_chans: ``Ky + 2*Kc`` (checked).
        y_width: luma path channels as a fraction of the stage width; c_width: the chroma path's.
        stats: ``"imagenet"`` or ``"cifar10"`` DCT statistics; normalize_input: apply them.
        num_classes, drop_rate: the classifier's.
        drop_path_rate: stochastic depth, rising linearly over the blocks to this rate.
    """

    _stage_modules = (("stages.0",), ("stages.1",), ("stages.2",))

    def __init__(
        self,
        layers: tuple[int, ...] = (2, 2, 2),
        strides: tuple[int, ...] = (1, 2, 2),
        y_channels: int = 64,
        c_channels: int = 64,
        in_chans: int | None = None,
        y_width: float = 0.75,
        c_width: float = 0.25,
        stats: str = "imagenet",
        normalize_input: bool = True,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        layers = check_layers(layers, 3)
        if len(strides) != 3 or any(s not in (1, 2) for s in strides):
            raise ValueError(f"strides must be 3 entries of 1 or 2 (stages 2-4), got {strides!r}")
        if not (c_width > 0 and y_width > 0):
            raise ValueError(f"y_width and c_width must be positive, got {y_width!r}, {c_width!r}")
        self.y_channels, self.c_channels = y_channels, c_channels
        self.stats, self.normalize_input = stats, normalize_input
        self.in_chans = check_in_chans(in_chans, y_channels, c_channels)
        self.normalize_y, self.normalize_cbcr = dct_plane_normalizers(stats, y_channels, c_channels, normalize_input)
        y_in, c_in = y_channels, 2 * c_channels
        self.stages = nn.ModuleList()
        self.feature_info, reduction = [], 1
        stages = zip((128, 256, 512), layers, strides, drop_path_rates(drop_path_rate, layers), strict=True)
        for index, (width, blocks, stride, rates) in enumerate(stages):
            y_out, c_out = max(1, round(width * y_width)), max(1, round(width * c_width))
            stage = nn.ModuleList()
            for b in range(blocks):
                stage.append(
                    YCbCrExchangeBlock(y_in, c_in, y_out, c_out, stride=stride if b == 0 else 1, drop_path=rates[b])
                )
                y_in, c_in = y_out, c_out
            self.stages.append(stage)
            reduction *= stride
            self.feature_info.append(dict(num_chs=y_out + c_out, reduction=reduction, module=f"stages.{index}"))
        self.num_features = self.head_hidden_size = y_in + c_in
        self.init_head(num_classes, drop_rate)
        init_weights(self, zero_init_last)

    # forward_features(x, cbcr=None): ``y, cbcr`` (see the module docstring) -> ``(B, num_features, Hy/4, Wy/4)``
    # (CIFAR: ``Hy/2``).

    def enter(self, x, cbcr: torch.Tensor | None):
        y, cbcr = as_ycbcr_pair(x, cbcr)
        if y.shape[1] != self.y_channels or cbcr.shape[1] != 2 * self.c_channels:
            raise ValueError(
                f"expected y with {self.y_channels} and cbcr with {2 * self.c_channels} channels, "
                f"got {y.shape[1]} and {cbcr.shape[1]}"
            )
        return self.normalize_y(y), self.normalize_cbcr(cbcr)

    def run_stage(self, index: int, state):
        y, cbcr = state
        for block in self.stages[index]:
            y, cbcr = block(y, cbcr)
        return y, cbcr

    def feature_map(self, index: int, state) -> torch.Tensor:
        return merge_grids(list(state))


def _create(variant: str, pretrained: bool, cifar: bool, **kwargs) -> DCTMultigridResNet:
    defaults = dict(strides=(1, 1, 2) if cifar else (1, 2, 2), stats="cifar10" if cifar else "imagenet")
    return create_dct_model(DCTMultigridResNet, variant, pretrained, kwargs, defaults, min_c_channels=1)


_FIRST_CONVS = ("stages.0.0.block.conv1.convs.0", "stages.0.0.block.conv1.convs.1")

_PAPER = dict(paper_ids=(JPEG_DCT_PAPER, MULTIGRID_PAPER, RESNET_PAPER), paper_name=JPEG_DCT_NAME)

default_cfgs = generate_default_cfgs(
    {
        "dct_mg_resnet18": dct_cfg(False, first_conv=_FIRST_CONVS, classifier="fc", **_PAPER),
        "dct_mg_resnet18_cifar": dct_cfg(True, first_conv=_FIRST_CONVS, classifier="fc", **_PAPER),
    }
)


@register_model
def dct_mg_resnet18(pretrained: bool = False, **kwargs) -> DCTMultigridResNet:
    """Y/CbCr multigrid ResNet-18 on DCT planes, 28x28 luma grids (224x224 images)."""
    return _create("dct_mg_resnet18", pretrained, False, **kwargs)


@register_model
def dct_mg_resnet18_cifar(pretrained: bool = False, **kwargs) -> DCTMultigridResNet:
    """Y/CbCr multigrid ResNet-18 on DCT planes of 32x32 images (4x4 luma, 2x2 chroma grids)."""
    return _create("dct_mg_resnet18_cifar", pretrained, True, **kwargs)
