"""Y and CbCr as two paths at their own resolutions, exchanging information at every block.

In a 4:2:0 JPEG the chroma planes have half the luma resolution in both directions: the DCT block grid
of Cb and Cr is ``ceil(Hy / 2) x ceil(Wy / 2)`` for a ``Hy x Wy`` luma block grid, exactly the ratio
between neighbouring grids of an octave or multigrid network. :class:`YCbCrExchangeBlock` is a
two-grid :class:`~freqnets.layers.MultigridBasicBlock` whose fine grid is the luma path and whose
coarse grid is the chroma path: the Y path reads the CbCr path upsampled (nearest neighbour), the
CbCr path reads the Y path pooled (2x2), in each of its two convolutions. The Y path is meant to be
wider than the CbCr path (most of an image's information is in luma).

:func:`as_ycbcr_pair` is the input contract of the models that take the two planes separately.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .multigrid_conv import MultigridBasicBlock

__all__ = ["YCbCrExchangeBlock", "as_ycbcr_pair"]


def as_ycbcr_pair(x, cbcr: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(y, cbcr)`` pair of DCT planes from any of the accepted input forms.

    Args:
        x: the luma tensor ``(B, Ky, Hy, Wy)`` (then ``cbcr`` is required), a ``(y, cbcr)`` tuple, or any
            object with ``.y`` and ``.cbcr`` tensors (``freqnets.jpeg.collate.DCTBatch`` with
            ``layout="planes"``).
        cbcr: the chroma tensor ``(B, 2 * Kc, ceil(Hy / 2), ceil(Wy / 2))``, Cb channels then Cr channels,
            when ``x`` is the luma tensor.

    Returns:
        ``(y, cbcr)``.

    Raises:
        TypeError: an input form that is none of the above.
        ValueError: shapes that are not 4D, batch sizes that differ, or a chroma grid that is not
            half the luma grid (rounded up).
    """
    if cbcr is None:
        if hasattr(x, "y") and hasattr(x, "cbcr"):
            x, cbcr = x.y, x.cbcr
        elif isinstance(x, (tuple, list)) and len(x) == 2:
            x, cbcr = x
        else:
            raise TypeError(
                "DCT input must be (y, cbcr) tensors, a (y, cbcr) tuple or a batch with .y and .cbcr "
                f"(DCTCollate layout='planes'), got {type(x).__name__}"
            )
    if not isinstance(x, torch.Tensor) or not isinstance(cbcr, torch.Tensor):
        raise TypeError(f"y and cbcr must be tensors, got {type(x).__name__} and {type(cbcr).__name__}")
    if x.dim() != 4 or cbcr.dim() != 4:
        raise ValueError(f"y and cbcr must be (B, C, H, W), got {tuple(x.shape)} and {tuple(cbcr.shape)}")
    expected = (-(-x.shape[2] // 2), -(-x.shape[3] // 2))
    if cbcr.shape[0] != x.shape[0] or tuple(cbcr.shape[2:]) != expected:
        raise ValueError(
            f"cbcr must be (B={x.shape[0]}, C, {expected[0]}, {expected[1]}) for y of shape {tuple(x.shape)} "
            f"(4:2:0 chroma grid), got {tuple(cbcr.shape)}"
        )
    return x, cbcr


class YCbCrExchangeBlock(nn.Module):
    """A residual block on a luma path and a half-resolution chroma path that read each other.

    Args:
        y_in: channels of the incoming Y path.
        c_in: channels of the incoming CbCr path.
        y_out: channels of the outgoing Y path (larger than ``c_out`` in the models).
        c_out: channels of the outgoing CbCr path.
        stride: 1 or 2 (both paths halved).
        pool: how the Y path is brought to the CbCr grid, ``"avg"`` (default) or ``"max"``.
        drop_path: stochastic-depth rate of the block's residual branch (both paths together).

    Shapes:
        ``forward(y, cbcr)``: ``y`` ``(B, y_in, H, W)``, ``cbcr`` ``(B, c_in, ceil(H/2), ceil(W/2))``
        -> ``(y', cbcr')`` with ``y_out`` and ``c_out`` channels, each grid divided by ``stride``.
    """

    def __init__(
        self, y_in: int, c_in: int, y_out: int, c_out: int, stride: int = 1, pool: str = "avg", drop_path: float = 0.0
    ):
        super().__init__()
        self.block = MultigridBasicBlock((y_in, c_in), (y_out, c_out), stride=stride, pool=pool, drop_path=drop_path)

    def zero_init_last(self) -> None:
        self.block.zero_init_last()

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, cbcr = self.block([y, cbcr])
        return y, cbcr
