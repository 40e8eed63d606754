"""Cutting ``(..., H, W)`` tensors into non-overlapping square blocks and back."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def padded_size(size: tuple[int, int], block: int) -> tuple[int, int]:
    """``size`` rounded up to a multiple of ``block`` in both dims."""
    return tuple(-(-s // block) * block for s in size)  # type: ignore[return-value]


def to_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """``(..., H, W)`` -> ``(..., H' / b, W' / b, b, b)``.

    Sizes that are not a multiple of ``block`` are padded at the bottom and right
    by repeating the last row and column, as JPEG encoders do, so the padding
    adds no artificial edge.
    """
    h, w = x.shape[-2:]
    hp, wp = padded_size((h, w), block)
    if (hp, wp) != (h, w):
        lead = x.shape[:-2]
        flat = x.reshape(-1, 1, h, w)
        x = F.pad(flat, (0, wp - w, 0, hp - h), mode="replicate").reshape(*lead, hp, wp)
    blocks = x.reshape(*x.shape[:-2], hp // block, block, wp // block, block)
    return blocks.transpose(-3, -2)


def from_blocks(blocks: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``(..., nh, nw, b, b)`` -> ``(..., H, W)``, cropped to ``size`` (default: the full grid)."""
    nh, nw, bh, bw = blocks.shape[-4:]
    x = blocks.transpose(-3, -2).reshape(*blocks.shape[:-4], nh * bh, nw * bw)
    if size is not None:
        if size[0] > nh * bh or size[1] > nw * bw or (nh * bh - size[0]) >= bh or (nw * bw - size[1]) >= bw:
            raise ValueError(f"size {tuple(size)} does not fit a grid of {nh}x{nw} blocks of {bh}x{bw}")
        x = x[..., : size[0], : size[1]]
    return x
