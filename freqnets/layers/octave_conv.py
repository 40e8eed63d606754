"""Octave convolution: feature maps split into a high-frequency full-resolution part and a low-frequency half.

Chen, Fan, Xu, Yan, Kalantidis, Rohrbach, Yan, Feng, "Drop an Octave: Reducing Spatial Redundancy in
Convolutional Neural Networks with Octave Convolution", ICCV 2019.

An octave feature map is a pair ``(high, low)``: ``high`` is ``(B, C_h, H, W)``, ``low`` is
``(B, C_l, ceil(H/2), ceil(W/2))``, and ``alpha = C_l / (C_h + C_l)``. :class:`OctConv2d` computes

* ``high_out = conv_hh(high) + upsample(conv_lh(low))``
* ``low_out = conv_ll(low) + conv_hl(pool(high))``

with 2x2 average pooling (``pool``) and nearest-neighbour upsampling to the high map's size
(``upsample``). Stride 2 pools both inputs first (the paper's choice: a strided convolution would
shift the high and low grids against each other).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int

__all__ = ["OctConv2d", "OctaveMap", "OctaveTensors", "octave_add", "octave_downsample", "octave_upsample"]


class OctaveTensors(NamedTuple):
    """An octave feature map: ``high`` ``(B, C_h, H, W)`` and ``low`` ``(B, C_l, ceil(H/2), ceil(W/2))`` or None."""

    high: torch.Tensor
    low: torch.Tensor | None


def octave_downsample(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling, ``(B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))`` (a trailing odd row is its own mean)."""
    return F.avg_pool2d(x, 2, ceil_mode=True)


def octave_upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of ``(B, C, h, w)`` to ``(B, C, *size)`` (each pixel repeated 2x2 when even)."""
    return F.interpolate(x, size=tuple(size), mode="nearest")


def octave_add(a: OctaveTensors, b: OctaveTensors) -> OctaveTensors:
    """Path-wise sum of two octave maps (a residual connection); ``low`` None only if both are."""
    if (a.low is None) != (b.low is None):
        raise ValueError("octave_add: both octave maps must have a low path, or neither")
    return OctaveTensors(a.high + b.high, None if a.low is None else a.low + b.low)


def _as_octave(x: torch.Tensor | tuple, name: str = "x") -> OctaveTensors:
    if isinstance(x, torch.Tensor):
        return OctaveTensors(x, None)
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], torch.Tensor):
        if x[1] is not None and not isinstance(x[1], torch.Tensor):
            raise TypeError(f"{name}: the low path must be a tensor or None, got {type(x[1]).__name__}")
        return OctaveTensors(*x)
    raise TypeError(f"{name} must be a tensor or a (high, low) pair of tensors, got {type(x).__name__}")


class OctaveMap(nn.Module):
    """Apply one module to the high path and another to the low path (batch norm, activation, pooling).

    Args:
        high: module for the high path.
        low: module for the low path, or None where the map has no low path.
    """

    def __init__(self, high: nn.Module, low: nn.Module | None) -> None:
        super().__init__()
        self.high = high
        self.low = low

    def forward(self, x: OctaveTensors | torch.Tensor) -> OctaveTensors:
        x = _as_octave(x)
        if (x.low is None) != (self.low is None):
            raise ValueError(
                f"OctaveMap built {'with' if self.low is not None else 'without'} a low path got a map "
                f"{'without' if x.low is None else 'with'} one"
            )
        return OctaveTensors(self.high(x.high), None if x.low is None else self.low(x.low))


def _split(channels: int, alpha: float) -> tuple[int, int]:
    low = round(alpha * channels)
    return channels - low, low


def _check_alpha(alpha: float, name: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1), got {type(alpha).__name__}")
    if not 0.0 <= float(alpha) < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (the low-frequency fraction of the channels), got {alpha}")
    return float(alpha)


class OctConv2d(nn.Module):
    """Octave convolution with the four high/low paths.

    Args:
        in_channels: channels of the input, high plus low.
        out_channels: channels of the output, high plus low.
        kernel_size: square kernel size (odd).
        stride: 1, or 2 (both inputs 2x2-average-pooled before the convolutions).
        padding: zero padding; default ``kernel_size // 2`` (same size).
        alpha_in: low-frequency fraction of the input channels, ``C_l = round(alpha_in * in_channels)``.
            0 means the input is a plain tensor (high path only).
        alpha_out: low-frequency fraction of the output channels; 0 means a plain tensor comes out.
        bias: add a learnable bias (to the high-high and low-low paths).

    Shapes:
        input: ``(B, C_h, H, W)`` tensor when ``alpha_in == 0``, else a pair ``(high, low)`` with ``low``
        ``(B, C_l, ceil(H/2), ceil(W/2))``. Output: ``(B, C_h', H', W')`` when ``alpha_out == 0``, else
        :class:`OctaveTensors` ``(high, low)``; ``H' = ceil(H / stride)`` with the default padding.

    With ``alpha_in == alpha_out == 0`` and ``stride == 1`` this is exactly ``nn.Conv2d``.

    Example:
        >>> conv = OctConv2d(64, 128, 3, alpha_in=0.5, alpha_out=0.5)
        >>> high, low = conv((torch.randn(2, 32, 16, 16), torch.randn(2, 32, 8, 8)))
        >>> high.shape, low.shape
        (torch.Size([2, 64, 16, 16]), torch.Size([2, 64, 8, 8]))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        alpha_in: float = 0.5,
        alpha_out: float = 0.5,
        bias: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(out_channels, "out_channels")
        check_positive_int(kernel_size, "kernel_size")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2 (stride 2 pools both paths), got {stride!r}")
        padding = kernel_size // 2 if padding is None else padding
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative int or None, got {padding!r}")
        self.alpha_in = _check_alpha(alpha_in, "alpha_in")
        self.alpha_out = _check_alpha(alpha_out, "alpha_out")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.in_high, self.in_low = _split(in_channels, self.alpha_in)
        self.out_high, self.out_low = _split(out_channels, self.alpha_out)
        if min(self.in_high, self.out_high) < 1:
            raise ValueError(
                f"alpha_in={alpha_in}, alpha_out={alpha_out} leave no high-frequency channels of "
                f"in_channels={in_channels} / out_channels={out_channels}"
            )

        def conv(cin: int, cout: int, with_bias: bool) -> nn.Conv2d | None:
            return nn.Conv2d(cin, cout, kernel_size, padding=padding, bias=with_bias) if cin and cout else None

        self.conv_hh = conv(self.in_high, self.out_high, bias)
        self.conv_hl = conv(self.in_high, self.out_low, False)
        self.conv_lh = conv(self.in_low, self.out_high, False)
        self.conv_ll = conv(self.in_low, self.out_low, bias)

    def forward(self, x: torch.Tensor | tuple) -> torch.Tensor | OctaveTensors:
        high, low = _as_octave(x)
        if high.dim() != 4 or high.shape[1] != self.in_high:
            raise ValueError(f"high path must be (B, {self.in_high}, H, W), got {tuple(high.shape)}")
        if (low is None) != (self.in_low == 0):
            wanted = "a (high, low) pair" if self.in_low else "a plain tensor"
            got = "a tensor" if low is None else "a pair"
            raise ValueError(f"OctConv2d with alpha_in={self.alpha_in} expects {wanted}, got {got}")
        if low is not None:
            expected = (high.shape[0], self.in_low, -(-high.shape[2] // 2), -(-high.shape[3] // 2))
            if tuple(low.shape) != expected:
                raise ValueError(f"low path must be {expected} (half the high resolution), got {tuple(low.shape)}")
        if self.stride == 2:
            high = octave_downsample(high)
            low = None if low is None else octave_downsample(low)
        out_high = self.conv_hh(high)
        if self.conv_lh is not None:
            out_high = out_high + octave_upsample(self.conv_lh(low), out_high.shape[-2:])
        if self.out_low == 0:
            return out_high
        out_low = self.conv_hl(octave_downsample(high))
        if self.conv_ll is not None:
            out_low = out_low + self.conv_ll(low)
        return OctaveTensors(out_high, out_low)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"alpha_in={self.alpha_in}, alpha_out={self.alpha_out}"
        )
