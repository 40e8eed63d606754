"""DCT-compressed convolution: input and filter band-limited in the orthonormal 2D DCT domain."""

from __future__ import annotations

import torch
import torch.nn as nn

from .._checks import check_rate
from ..transforms import get_domain


class DCTConv2d(nn.Conv2d):
    """Drop-in ``nn.Conv2d`` whose input planes and filters keep only low DCT frequencies.

    Each ``H x W`` input plane and each ``kh x kw`` filter is projected onto the
    lowest ``1 - compress_rate`` of its orthonormal 2D DCT coefficients (the DCT
    domain's kept set of :mod:`freqnets.transforms`), then convolved as usual.
    This layer studies the accuracy of DCT band-limiting; it computes the
    convolution itself in pixels, so it saves no time. At rate 0 it equals
    ``F.conv2d``, forward and backward.

    Args:
        compress_rate: fraction of DCT coefficients discarded, ``0 <= rate < 1``.
        Other arguments as ``nn.Conv2d``.

    Example:
        >>> conv = DCTConv2d(3, 8, 3, padding=1, compress_rate=0.5)
        >>> conv(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(self, *args, compress_rate: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.compress_rate = check_rate(compress_rate)
        self._domain = get_domain("dct")

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
        rate = self.compress_rate
        return self._conv_forward(self._domain.compress(x, rate), self._domain.compress(self.weight, rate), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", compress_rate={self.compress_rate}"


def convert_conv(conv: nn.Module, compress_rate: float, backend: str) -> nn.Module:
    """Registry converter: ``nn.Conv2d`` -> :class:`DCTConv2d`."""
    from .registry import require_plain_conv2d, require_torch_backend

    require_torch_backend(backend, "dct")
    require_plain_conv2d(conv, "DCT-compressed")
    return DCTConv2d.from_conv(conv, compress_rate=compress_rate)
