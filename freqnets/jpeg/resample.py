"""Exact linear maps on blockwise DCT coefficients that resample one axis of a plane.

A plane of channel coefficients ``(..., b*b, by, bx)`` (natural order) is viewed as a
"coefficient image" ``X (by*b, bx*b)`` whose row ``j*b + v`` holds frequency ``v`` of block
row ``j``. Any linear operation ``P`` on the pixels of one axis (``n_in*b`` pixels in,
``n_out*b`` out) is then one matrix on that axis of ``X``::

    M = blockdiag(D, ..., D) @ P @ blockdiag(D, ..., D)^T      (D: orthonormal b-point DCT-II)

and a separable 2D operation is ``M_v @ X @ M_u^T``: the inverse DCT, the pixel operation and
the forward DCT folded into one precomputed matrix per axis. Operations that act on fixed groups
of blocks (downsampling by averaging ``f`` pixels, upsampling by replication) are applied group by
group with one small ``(g_out*b, g_in*b)`` kernel (:func:`resample_axis`, linear in the image size);
the block-size-change resize of :class:`~freqnets.jpeg.augment.RandomResizedCrop` uses the dense
map (:func:`resize_map`, :func:`apply_axis_maps`) on the crop.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ..transforms import dct


@lru_cache(maxsize=32)
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D (n, n)`` in float64, the transform layer's: ``dct(x) = D @ x``."""
    # the DCT of basis vector e_j is column j of D; a product with the identity is exact
    return dct(torch.eye(n, dtype=torch.float64), method="matmul").T.contiguous().numpy()


def coefficient_map(pixel_map: np.ndarray, b: int) -> np.ndarray:
    """``(n_out*b, n_in*b)`` pixel map -> the same map on blockwise DCT coefficients (float64).

    ``blockdiag(D) @ P @ blockdiag(D)^T``, computed block by block in ``O(n_out n_in b^3)``.
    """
    n_out, n_in = pixel_map.shape[0] // b, pixel_map.shape[1] // b
    if pixel_map.shape != (n_out * b, n_in * b):
        raise ValueError(f"pixel map shape {pixel_map.shape} is not a multiple of the block size {b}")
    d = dct_matrix(b)
    blocks = pixel_map.reshape(n_out, b, n_in, b)
    return np.einsum("km,omin,ln->okil", d, blocks, d, optimize=True).reshape(n_out * b, n_in * b)


@lru_cache(maxsize=32)
def downsample_kernel(factor: int, b: int = 8) -> torch.Tensor:
    """``(b, factor*b)`` map: ``factor`` neighbouring blocks -> one block of their ``factor``-pixel averages."""
    return torch.from_numpy(coefficient_map(np.kron(np.eye(b), np.full((1, factor), 1.0 / factor)), b))


@lru_cache(maxsize=32)
def upsample_kernel(factor: int, b: int = 8) -> torch.Tensor:
    """``(factor*b, b)`` map: one block -> ``factor`` blocks with every pixel replicated ``factor`` times."""
    return torch.from_numpy(coefficient_map(np.kron(np.eye(b), np.ones((factor, 1))), b))


def resample_axis(plane: torch.Tensor, factor: int, up: bool, axis: int) -> torch.Tensor:
    """Down- (average) or upsample (replicate) one axis of ``(..., b*b, by, bx)`` natural-order coefficients.

    Args:
        plane: channel coefficients.
        factor: 2 or 4 (any positive int).
        up: ``True`` replicates pixels (``n`` blocks -> ``n * factor``), ``False`` averages ``factor``
            pixels (``n`` -> ``ceil(n / factor)``, repeating the last block to a multiple first).
        axis: ``-2`` (vertical) or ``-1`` (horizontal).

    Each group of blocks is one small matrix product (:func:`downsample_kernel`, :func:`upsample_kernel`),
    so the cost is linear in the number of blocks.
    """
    b = math.isqrt(plane.shape[-3])
    lead = plane.shape[:-3]
    x = plane.reshape(*lead, b, b, *plane.shape[-2:])  # (..., v, u, by, bx)
    if axis == -1:  # work on (u, bx): move them to the (v, by) slots
        x = x.transpose(-4, -3).transpose(-2, -1)
    n = x.shape[-2]
    if up:
        kernel, g_in, g_out = upsample_kernel(factor, b), 1, factor
    else:
        kernel, g_in, g_out = downsample_kernel(factor, b), factor, 1
        pad = -n % factor
        if pad:
            x = torch.cat([x, x[..., -1:, :].expand(*x.shape[:-2], pad, x.shape[-1])], dim=-2)
    groups = x.shape[-2] // g_in
    x = x.reshape(*lead, b, b, groups, g_in, x.shape[-1])  # (..., v, u, group, i, w)
    k = kernel.to(x.dtype).reshape(g_out, b, g_in, b)  # (o, q, i, v)
    out = torch.einsum("oqiv,...vugiw->...qugow", k, x).reshape(*lead, b, b, groups * g_out, x.shape[-1])
    if axis == -1:
        out = out.transpose(-4, -3).transpose(-2, -1)
    return out.reshape(*lead, b * b, *out.shape[-2:])


@lru_cache(maxsize=512)
def resize_map(n_in: int, n_out: int, b: int = 8) -> torch.Tensor:
    """Resize ``n_in`` blocks to ``n_out`` blocks by changing each block's size in the DCT domain.

    Input block ``j`` becomes ``p_j = floor((j+1) L / n_in) - floor(j L / n_in)`` pixels
    (``L = n_out * b``): its lowest ``min(p_j, b)`` coefficients, zero-padded to ``p_j`` and scaled
    by ``sqrt(p_j / b)`` (so a constant block keeps its value), then a ``p_j``-point inverse DCT.
    The pixels are then re-blocked into ``b``-blocks: truncation when shrinking (an ideal low-pass
    within each block), zero-padding when enlarging (band-limited interpolation within each block).
    """
    length = n_out * b
    edges = [(j * length) // n_in for j in range(n_in + 1)]
    pixel_map = np.zeros((length, n_in * b))
    d_in = dct_matrix(b)
    for j in range(n_in):
        p = edges[j + 1] - edges[j]
        if p == 0:
            continue
        keep = min(p, b)
        block = dct_matrix(p)[:keep].T @ d_in[:keep] * np.sqrt(p / b)  # pixels(p) <- pixels(b)
        pixel_map[edges[j] : edges[j + 1], j * b : (j + 1) * b] = block
    return torch.from_numpy(coefficient_map(pixel_map, b))


def apply_axis_maps(plane: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None) -> torch.Tensor:
    """Apply coefficient maps to the two axes of channel coefficients.

    Args:
        plane: ``(..., b*b, by, bx)`` natural-order coefficients.
        rows: ``(my*b, by*b)`` map of the vertical axis, or ``None`` to leave it.
        cols: ``(mx*b, bx*b)`` map of the horizontal axis, or ``None``.

    Returns:
        ``(..., b*b, my, mx)`` in ``plane``'s dtype.
    """
    b = math.isqrt(plane.shape[-3])
    by, bx = plane.shape[-2:]
    lead = plane.shape[:-3]
    x = plane.reshape(*lead, b, b, by, bx).movedim(-2, -4)  # (..., by, v, u, bx)
    x = x.movedim(-1, -2).reshape(*lead, by * b, bx * b)  # (..., by*b, bx*b): rows j*b+v, cols i*b+u
    if rows is not None:
        x = rows.to(x.dtype) @ x
    if cols is not None:
        x = x @ cols.to(x.dtype).T
    my, mx = x.shape[-2] // b, x.shape[-1] // b
    x = x.reshape(*lead, my, b, mx, b).permute(*range(len(lead)), -3, -1, -4, -2)  # (..., v, u, my, mx)
    return x.reshape(*lead, b * b, my, mx)
