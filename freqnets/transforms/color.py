"""JFIF (JPEG File Interchange Format) RGB <-> YCbCr conversion.

The full-range BT.601 transform of the JFIF specification (version 1.02)::

    Y  =  0.299    R + 0.587    G + 0.114    B
    Cb = -0.168736 R - 0.331264 G + 0.5      B + 128
    Cr =  0.5      R - 0.418688 G - 0.081312 B + 128

written for values in ``[0, max_value]`` (the offset 128 becomes
``max_value * 128 / 255``). The inverse is the exact inverse of this matrix, so a
round trip is lossless up to floating-point rounding.
"""

from __future__ import annotations

import torch

from .._checks import check_float_tensor

_RGB_TO_YCBCR = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ],
    dtype=torch.float64,
)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)
_CHROMA_OFFSET = torch.tensor([0.0, 128.0, 128.0], dtype=torch.float64) / 255.0


def _apply(x: torch.Tensor, matrix: torch.Tensor, offset_before: bool, max_value: float) -> torch.Tensor:
    check_float_tensor(x, min_dims=3)
    if x.shape[-3] != 3:
        raise ValueError(f"expected 3 channels at dim -3, (..., 3, H, W), got shape {tuple(x.shape)}")
    offset = (_CHROMA_OFFSET * max_value).to(x.device, x.dtype).view(3, 1, 1)
    m = matrix.to(x.device, x.dtype)
    if offset_before:
        x = x - offset
    out = torch.einsum("ij,...jhw->...ihw", m, x)
    return out if offset_before else out + offset


def rgb_to_ycbcr(rgb: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """RGB ``(..., 3, H, W)`` in ``[0, max_value]`` -> JFIF YCbCr ``(..., 3, H, W)``, same range.

    Example:
        >>> rgb_to_ycbcr(torch.ones(3, 1, 1) * 255, max_value=255).flatten()
        tensor([255., 128., 128.])
    """
    return _apply(rgb, _RGB_TO_YCBCR, offset_before=False, max_value=max_value)


def ycbcr_to_rgb(ycbcr: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """JFIF YCbCr ``(..., 3, H, W)`` -> RGB ``(..., 3, H, W)``; the exact inverse of :func:`rgb_to_ycbcr`."""
    return _apply(ycbcr, _YCBCR_TO_RGB, offset_before=True, max_value=max_value)
