"""DCT-compressed convolution: input and filter band-limited in the orthonormal 2D DCT domain."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_float_tensor, check_rate
from ..transforms import conv2d_padding, get_domain
from .rates import CompressRateState


def dct_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    compress_rate: float = 0.0,
) -> torch.Tensor:
    """``F.conv2d`` of the DCT band-limited input and filters: the function form of :class:`DCTConv2d`.

    Each ``H x W`` plane of ``input (B, C, H, W)`` and each ``kh x kw`` filter of
    ``weight (O, C/groups, kh, kw)`` keeps the lowest ``1 - compress_rate`` of its orthonormal
    2D DCT coefficients (the ``"dct"`` domain's kept set); the rest of the arguments, zero
    ``padding`` included (int, pair, ``"valid"``, ``"same"``), mean what they mean in ``F.conv2d``.
    The input is band-limited before it is padded.

    Returns:
        ``(B, O, H_out, W_out)`` as ``F.conv2d``; at rate 0 equal to it.
    """
    check_float_tensor(input, "input", min_dims=3)
    check_float_tensor(weight, "weight", min_dims=4)
    rate = check_rate(compress_rate)
    conv2d_padding(padding, tuple(weight.shape[-2:]), dilation, stride)  # a typed error for what F.conv2d refuses
    return F.conv2d(_band_limited(input, rate), _band_limited(weight, rate), bias, stride, padding, dilation, groups)


def _band_limited(planes: torch.Tensor, rate: float) -> torch.Tensor:
    """``planes (..., H, W)`` projected on their lowest ``1 - rate`` DCT coefficients (themselves at rate 0)."""
    return get_domain("dct").compress(planes, rate) if rate > 0 else planes


class DCTConv2d(CompressRateState, nn.Conv2d):
    """Drop-in ``nn.Conv2d`` whose input planes and filters keep only low DCT frequencies.

    Each ``H x W`` input plane and each ``kh x kw`` filter is projected onto the
    lowest ``1 - compress_rate`` of its orthonormal 2D DCT coefficients (the DCT
    domain's kept set of :mod:`freqnets.transforms`), then convolved as usual.
    This layer studies the accuracy of DCT band-limiting; it computes the
    convolution itself in pixels, so it saves no time. At rate 0 it equals
    ``F.conv2d``, forward and backward.

    The function form is :func:`dct_conv2d` (with zero padding, ``layer(x) ==
    dct_conv2d(x, layer.weight, layer.bias, ..., compress_rate=layer.compress_rate)``).

    Args:
        compress_rate: fraction of DCT coefficients discarded, ``0 <= rate < 1``; saved in the
            ``state_dict`` with ``rate_frozen`` (:mod:`freqnets.layers.rates`).
        Other arguments as ``nn.Conv2d``.

    Example:
        >>> conv = DCTConv2d(3, 8, 3, padding=1, compress_rate=0.5)
        >>> conv(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(self, *args, compress_rate: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_rate_state(compress_rate)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, compress_rate: float = 0.0) -> DCTConv2d:
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype, compress_rate=compress_rate,
        )  # fmt: skip
        new.load_state_dict(conv.state_dict())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # _conv_forward pads the band-limited input in the other padding modes, as nn.Conv2d pads its input.
        rate = self.compress_rate
        return self._conv_forward(_band_limited(x, rate), _band_limited(self.weight, rate), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", compress_rate={self.compress_rate}"


def convert_conv(conv: nn.Module, compress_rate: float, backend: str) -> nn.Module:
    """Registry converter: ``nn.Conv2d`` -> :class:`DCTConv2d`."""
    from .registry import require_plain_conv2d, require_torch_backend

    require_torch_backend(backend, "dct")
    require_plain_conv2d(conv, "DCT-compressed")
    return DCTConv2d.from_conv(conv, compress_rate=compress_rate)
