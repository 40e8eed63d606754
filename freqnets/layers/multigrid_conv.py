"""Multigrid convolution: a pyramid of feature grids, each convolved together with its neighbour scales.

Ke, Maire, Yu, "Multigrid Neural Architectures", CVPR 2017.

A multigrid feature map is a list of grids ``x[0], ..., x[n-1]``; ``x[j]`` is ``(B, C_j, H_j, W_j)``
with ``H_{j+1} = ceil(H_j / 2)`` (grid 0 is the finest). :class:`MultigridConv2d` computes, for every
scale ``j``,

    ``out[j] = conv_j(concat(pool(x[j-1]), x[j], upsample(x[j+1])))``

(the neighbours that exist), with 2x2 pooling (max by default, or average) of the finer grid and
nearest-neighbour upsampling of the coarser grid to ``x[j]``'s size. Every scale thus reads the ones
above and below it in one layer, and information crosses the whole pyramid over a few layers.
:class:`MultigridBasicBlock` is ResNet's basic block on such a pyramid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int

__all__ = ["MultigridBasicBlock", "MultigridConv2d", "drop_branches", "multigrid_neighbours"]


def drop_branches(branches: Sequence[torch.Tensor | None], rate: float, training: bool) -> list[torch.Tensor | None]:
    """Stochastic depth of a residual branch that has several tensors (one per grid or octave path).

    In training, each sample's branch is zeroed with probability ``rate`` and kept scaled by
    ``1 / (1 - rate)`` otherwise, as timm's ``DropPath``, with one draw per sample shared by all
    tensors (``None`` entries pass through): the whole block is skipped, not some of its grids.
    """
    if rate == 0.0 or not training:
        return list(branches)
    present = [b for b in branches if b is not None]
    keep = 1.0 - rate
    mask = present[0].new_empty((present[0].shape[0],) + (1,) * (present[0].dim() - 1)).bernoulli_(keep) / keep
    return [None if b is None else b * mask for b in branches]


def _pool(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "max":
        return F.max_pool2d(x, 2, ceil_mode=True)
    return F.avg_pool2d(x, 2, ceil_mode=True)


def multigrid_neighbours(grids: Sequence[torch.Tensor], pool: str = "max") -> list[torch.Tensor]:
    """The input of each scale's convolution: ``concat(pool(x[j-1]), x[j], upsample(x[j+1]))`` along channels.

    Args:
        grids: ``n`` tensors ``(B, C_j, H_j, W_j)``, finest first, ``H_{j+1} = ceil(H_j / 2)``.
        pool: ``"max"`` or ``"avg"``, the 2x2 pooling of the finer neighbour.

    Returns:
        ``n`` tensors ``(B, C_{j-1} + C_j + C_{j+1}, H_j, W_j)`` (missing neighbours contribute nothing).
    """
    out = []
    for j, grid in enumerate(grids):
        parts = []
        if j > 0:
            parts.append(_pool(grids[j - 1], pool))
        parts.append(grid)
        if j + 1 < len(grids):
            parts.append(F.interpolate(grids[j + 1], size=grid.shape[-2:], mode="nearest"))
        out.append(torch.cat(parts, dim=1))
    return out


def _check_channels(channels: Sequence[int], name: str) -> tuple[int, ...]:
    if isinstance(channels, int) or not isinstance(channels, Sequence) or len(channels) < 1:
        raise TypeError(f"{name} must be a non-empty sequence of ints (channels per grid, finest first)")
    return tuple(check_positive_int(c, f"{name}[{i}]") for i, c in enumerate(channels))


class MultigridConv2d(nn.Module):
    """One convolution per grid of a pyramid, each reading its own grid and both neighbour grids.

    Args:
        in_channels: channels of each input grid, finest first (its length is the number of grids).
        out_channels: channels of each output grid (same length).
        kernel_size: square kernel size.
        stride: 1 or 2; stride 2 halves every grid (a strided convolution on the concatenated input).
        padding: zero padding; default ``kernel_size // 2``.
        pool: ``"max"`` (default) or ``"avg"``, how a finer neighbour is brought to a grid's size.
        bias: add learnable biases.

    Shapes:
        input: a sequence of ``n`` tensors ``(B, in_channels[j], H_j, W_j)`` with ``H_{j+1} = ceil(H_j / 2)``.
        output: a list of ``n`` tensors ``(B, out_channels[j], ceil(H_j / stride), ceil(W_j / stride))``.

    Example:
        >>> conv = MultigridConv2d((32, 16, 8), (32, 16, 8), 3)
        >>> [g.shape[-1] for g in conv([torch.randn(1, 32, 16, 16), torch.randn(1, 16, 8, 8), torch.randn(1, 8, 4, 4)])]
        [16, 8, 4]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        pool: str = "max",
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = _check_channels(in_channels, "in_channels")
        self.out_channels = _check_channels(out_channels, "out_channels")
        if len(self.in_channels) != len(self.out_channels):
            raise ValueError(
                f"in_channels and out_channels need one entry per grid, got {len(self.in_channels)} and "
                f"{len(self.out_channels)}"
            )
        check_positive_int(kernel_size, "kernel_size")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        padding = kernel_size // 2 if padding is None else padding
        self.num_grids, self.stride, self.pool = len(self.in_channels), stride, pool
        cin = self.in_channels
        self.convs = nn.ModuleList(
            nn.Conv2d(
                (cin[j - 1] if j > 0 else 0) + cin[j] + (cin[j + 1] if j + 1 < len(cin) else 0),
                cout,
                kernel_size,
                stride=stride,
                padding=padding,
                bias=bias,
            )
            for j, cout in enumerate(self.out_channels)
        )

    def forward(self, grids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(grids, torch.Tensor) or not isinstance(grids, Sequence):
            raise TypeError(f"MultigridConv2d expects a sequence of {self.num_grids} grids, got {type(grids).__name__}")
        if len(grids) != self.num_grids:
            raise ValueError(f"MultigridConv2d expects {self.num_grids} grids, got {len(grids)}")
        for j, grid in enumerate(grids):
            if not isinstance(grid, torch.Tensor) or grid.dim() != 4 or grid.shape[1] != self.in_channels[j]:
                shape = tuple(grid.shape) if isinstance(grid, torch.Tensor) else type(grid).__name__
                raise ValueError(f"grid {j} must be (B, {self.in_channels[j]}, H, W), got {shape}")
            if j > 0:
                above = grids[j - 1].shape[-2:]
                expected = (-(-above[0] // 2), -(-above[1] // 2))
                if tuple(grid.shape[-2:]) != expected:
                    got = tuple(grid.shape[-2:])
                    raise ValueError(f"grid {j} must be {expected} (half of grid {j - 1}), got {got}")
        return [conv(x) for conv, x in zip(self.convs, multigrid_neighbours(grids, self.pool), strict=True)]

    def extra_repr(self) -> str:
        channels = f"in_channels={self.in_channels}, out_channels={self.out_channels}"
        return f"{channels}, stride={self.stride}, pool={self.pool!r}"


class MultigridBasicBlock(nn.Module):
    """ResNet's basic block on a pyramid: two 3x3 multigrid convolutions, batch norm, ReLU, and a shortcut.

    Args:
        in_channels: channels of each input grid, finest first.
        out_channels: channels of each output grid.
        stride: 1 or 2 (every grid halved).
        pool: pooling of the finer neighbour, ``"max"`` or ``"avg"``.
        drop_path: stochastic-depth rate of the residual branch (all grids together, see :func:`drop_branches`).

    The shortcut is the identity when shapes match, else a 1x1 convolution (with the stride) and batch
    norm on each grid. Input and output: a list of grids as :class:`MultigridConv2d`.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        stride: int = 1,
        pool: str = "max",
        drop_path: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1) (a stochastic-depth rate), got {drop_path!r}")
        self.drop_path = float(drop_path)
        self.conv1 = MultigridConv2d(in_channels, out_channels, 3, stride=stride, pool=pool)
        self.bn1 = nn.ModuleList(nn.BatchNorm2d(c) for c in self.conv1.out_channels)
        self.conv2 = MultigridConv2d(out_channels, out_channels, 3, pool=pool)
        self.bn2 = nn.ModuleList(nn.BatchNorm2d(c) for c in self.conv1.out_channels)
        self.act = nn.ReLU(inplace=True)
        if stride == 1 and tuple(in_channels) == tuple(out_channels):
            self.downsample = None
        else:
            self.downsample = nn.ModuleList(
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                for cin, cout in zip(self.conv1.in_channels, self.conv1.out_channels, strict=True)
            )

    def zero_init_last(self) -> None:
        """Start every grid's residual branch at zero (timm's ``zero_init_last``)."""
        for bn in self.bn2:
            nn.init.zeros_(bn.weight)

    def forward(self, grids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = [self.act(bn(x)) for bn, x in zip(self.bn1, self.conv1(grids), strict=True)]
        out = [bn(x) for bn, x in zip(self.bn2, self.conv2(out), strict=True)]
        out = drop_branches(out, self.drop_path, self.training)
        if self.downsample is None:
            shortcut = list(grids)
        else:
            shortcut = [down(x) for down, x in zip(self.downsample, grids, strict=True)]
        return [self.act(x + s) for x, s in zip(out, shortcut, strict=True)]
