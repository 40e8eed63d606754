"""The DCT domain: orthonormal DCT-II along any dim, in 2D, and blockwise as in JPEG.

Pure PyTorch, differentiable, matching ``scipy.fft.dct(x, type=2, norm="ortho")``
and ``scipy.fft.idct``. Long transforms use ``torch.fft`` (Makhoul's reordering:
one complex FFT of length ``N`` per DCT of length ``N``); short ones, such as
JPEG's 8-point blocks, a dense DCT matrix, which measures up to 15x faster
there (see :func:`dct`).

Layouts:

* global 2D DCT: ``(..., H, W)`` -> ``(..., H, W)``; coefficient ``(i, j)`` has
  frequency ``(i / 2H, j / 2W)`` cycles per sample.
* blockwise DCT (``block_size=b``): ``(..., H, W)`` -> ``(..., ceil(H/b), ceil(W/b), b, b)``,
  one orthonormal 2D DCT per ``b x b`` block (JPEG uses ``b = 8``). Use
  :func:`blocks_to_channels` for JPEG's ``(..., b*b, H/b, W/b)`` channel layout.

Kept set at a rate: the lowest frequencies in the order of
:mod:`._frequency_order` (a growing square at the top-left corner), of the
whole ``H x W`` grid for the global DCT or of each block for the blockwise DCT.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .._checks import check_float_tensor, check_positive_int, check_size2d, compute_dtype
from ._blocks import from_blocks, to_blocks
from ._frequency_order import count_for_energy, frequency_order, kept_count, mask_from_order, rate_for_count
from .base import TransformDomain, register_domain


@lru_cache(maxsize=128)
def _makhoul_tables(n: int, device: torch.device, dtype: torch.dtype):
    """Reordering permutation, its inverse, twiddles and orthonormal scales for length ``n``."""
    perm = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)]).to(device)
    inverse_perm = torch.argsort(perm)
    k = torch.arange(n, dtype=torch.float64)
    twiddle = torch.polar(torch.ones(n, dtype=torch.float64), -math.pi * k / (2 * n))
    scale = torch.full((n,), math.sqrt(2.0 / n), dtype=torch.float64)
    scale[0] = math.sqrt(1.0 / n)
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    return perm, inverse_perm, twiddle.to(device, complex_dtype), scale.to(device, dtype)


#: Longest transform computed as a dense matrix product under ``method="auto"``: up to this size
#: the product is faster than the FFT route on CPU (2 threads: 15x at n=8, 3.3x at n=256, 1.5x at
#: n=512, 0.4x at n=2048; ``benchmarks/bench_transforms.py`` and docs/benchmarks.md).
MATMUL_MAX_SIZE = 512
_METHODS = ("auto", "fft", "matmul")


@lru_cache(maxsize=128)
def _dct_matrix(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D (n, n)``, ``D[k, j] = s_k cos(pi k (2j + 1) / 2n)``."""
    k = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    matrix = np.cos(np.pi * k * (2 * j + 1) / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return torch.from_numpy(matrix).to(device, dtype)


def _use_matmul(n: int, method: str) -> bool:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    return method == "matmul" or (method == "auto" and n <= MATMUL_MAX_SIZE)


def dct(x: torch.Tensor, dim: int = -1, method: str = "auto") -> torch.Tensor:
    """Orthonormal DCT-II of ``x`` along ``dim``; same shape and dtype as ``x``.

    ``X[k] = s_k * sum_n x[n] cos(pi k (2n + 1) / 2N)`` with ``s_0 = sqrt(1/N)``
    and ``s_k = sqrt(2/N)``, exactly ``scipy.fft.dct(x, type=2, norm="ortho")``.

    Args:
        x: real tensor, any shape.
        dim: the dimension to transform.
        method: ``"fft"`` (Makhoul's algorithm, ``O(N log N)``), ``"matmul"``
            (dense DCT matrix, ``O(N^2)`` but faster for short transforms), or
            ``"auto"``: ``"matmul"`` up to :data:`MATMUL_MAX_SIZE`, else ``"fft"``.

    Example:
        >>> x = torch.ones(4, dtype=torch.float64)   # a constant has only a DC term
        >>> torch.allclose(dct(x), torch.tensor([2.0, 0, 0, 0], dtype=torch.float64))
        True
    """
    check_float_tensor(x, min_dims=1)
    work = x.to(compute_dtype(x.dtype)).movedim(dim, -1)
    n = work.shape[-1]
    if _use_matmul(n, method):
        return (work @ _dct_matrix(n, work.device, work.dtype).T).movedim(-1, dim).to(x.dtype)
    perm, _, twiddle, scale = _makhoul_tables(n, work.device, work.dtype)
    spectrum = torch.fft.fft(work[..., perm], dim=-1)
    # Makhoul: 2 Re(e^{-i pi k / 2N} V_k) is the unnormalised DCT-II; 2 * scale / 2 folds the factor.
    out = (spectrum * twiddle).real * scale
    return out.movedim(-1, dim).to(x.dtype)


def idct(coeffs: torch.Tensor, dim: int = -1, method: str = "auto") -> torch.Tensor:
    """Inverse of :func:`dct` (the orthonormal DCT-III) along ``dim``; ``method`` as for :func:`dct`.

    Matches ``scipy.fft.idct(X, type=2, norm="ortho")``.
    """
    check_float_tensor(coeffs, "coeffs", min_dims=1)
    work = coeffs.to(compute_dtype(coeffs.dtype)).movedim(dim, -1)
    n = work.shape[-1]
    if _use_matmul(n, method):
        return (work @ _dct_matrix(n, work.device, work.dtype)).movedim(-1, dim).to(coeffs.dtype)
    _, inverse_perm, twiddle, scale = _makhoul_tables(n, work.device, work.dtype)
    unscaled = work / scale  # the unnormalised DCT-II values y_k, times 1/2
    # V_k = e^{i pi k / 2N} (y_k - i y_{N-k}) with y_N = 0 recovers the FFT of the reordered signal.
    mirrored = torch.cat([torch.zeros_like(unscaled[..., :1]), unscaled.flip(-1)[..., : n - 1]], dim=-1)
    spectrum = torch.complex(unscaled, -mirrored) * twiddle.conj()
    reordered = torch.fft.ifft(spectrum, dim=-1).real
    return reordered[..., inverse_perm].movedim(-1, dim).to(coeffs.dtype)


def dct2(x: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Orthonormal 2D DCT-II over the last two dims ``(..., H, W)``; ``method`` as for :func:`dct`."""
    check_float_tensor(x)
    h, w = x.shape[-2:]
    if _use_matmul(h, method) and _use_matmul(w, method):
        work = x.to(compute_dtype(x.dtype))
        d_h, d_w = _dct_matrix(h, work.device, work.dtype), _dct_matrix(w, work.device, work.dtype)
        return (d_h @ work @ d_w.T).to(x.dtype)
    return dct(dct(x, dim=-1, method=method), dim=-2, method=method)


def idct2(coeffs: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Inverse of :func:`dct2` over the last two dims ``(..., H, W)``."""
    check_float_tensor(coeffs, "coeffs")
    h, w = coeffs.shape[-2:]
    if _use_matmul(h, method) and _use_matmul(w, method):
        work = coeffs.to(compute_dtype(coeffs.dtype))
        d_h, d_w = _dct_matrix(h, work.device, work.dtype), _dct_matrix(w, work.device, work.dtype)
        return (d_h.T @ work @ d_w).to(coeffs.dtype)
    return idct(idct(coeffs, dim=-2, method=method), dim=-1, method=method)


@lru_cache(maxsize=32)
def _block_matrix(b: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``kron(D, D)``: the 2D DCT of a ``b x b`` block as one ``(b*b, b*b)`` map on its flattened pixels."""
    d = _dct_matrix(b, device, torch.float64)
    return torch.kron(d, d).to(dtype)


def block_dct2(x: torch.Tensor, block_size: int = 8) -> torch.Tensor:
    """Blockwise 2D DCT: ``(..., H, W)`` -> ``(..., ceil(H/b), ceil(W/b), b, b)``.

    Sizes that are not multiples of ``b`` are padded by edge replication. Each
    block's 2D DCT is one product with ``kron(D, D)`` on its flattened pixels,
    a single large GEMM for the whole tensor.
    """
    check_float_tensor(x)
    b = check_positive_int(block_size, "block_size")
    blocks = to_blocks(x.to(compute_dtype(x.dtype)), b)
    flat = blocks.reshape(*blocks.shape[:-2], b * b) @ _block_matrix(b, blocks.device, blocks.dtype).T
    return flat.reshape(blocks.shape).to(x.dtype)


def block_idct2(coeffs: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of :func:`block_dct2`: ``(..., nh, nw, b, b)`` -> ``(..., H, W)`` cropped to ``size``."""
    check_float_tensor(coeffs, "coeffs", min_dims=4)
    b = coeffs.shape[-1]
    if coeffs.shape[-2] != b:
        raise ValueError(f"blocks must be square (..., nh, nw, b, b), got {tuple(coeffs.shape)}")
    work = coeffs.to(compute_dtype(coeffs.dtype))
    flat = work.reshape(*work.shape[:-2], b * b) @ _block_matrix(b, work.device, work.dtype)
    return from_blocks(flat.reshape(work.shape), None if size is None else check_size2d(size)).to(coeffs.dtype)


@lru_cache(maxsize=64)
def _zigzag(n: int) -> torch.Tensor:
    rows, cols = np.divmod(np.arange(n * n), n)
    diagonal = rows + cols
    # Odd anti-diagonals run down-left (row increasing), even ones up-right.
    within = np.where(diagonal % 2 == 1, rows, -rows)
    return torch.from_numpy(np.lexsort((within, diagonal)).astype(np.int64))


def zigzag_indices(n: int = 8) -> torch.Tensor:
    """JPEG zigzag order of an ``n x n`` block: flat row-major indices, ``(n * n,)`` int64.

    ``block.flatten(-2)[..., zigzag_indices(8)]`` lists the coefficients in the
    order a JPEG file stores them; ``torch.argsort`` of it goes back.
    """
    return _zigzag(check_positive_int(n, "n")).clone()


def blocks_to_channels(blocks: torch.Tensor, order: str = "natural") -> torch.Tensor:
    """``(..., nh, nw, b, b)`` -> ``(..., b*b, nh, nw)``: one channel per frequency.

    Args:
        blocks: blockwise coefficients, e.g. from :func:`block_dct2`.
        order: ``"natural"`` (row-major within the block) or ``"zigzag"`` (JPEG order).
    """
    if order not in ("natural", "zigzag"):
        raise ValueError(f"order must be 'natural' or 'zigzag', got {order!r}")
    b = blocks.shape[-1]
    flat = blocks.flatten(-2)
    if order == "zigzag":
        flat = flat[..., _zigzag(b).to(flat.device)]
    return flat.movedim(-1, -3)


def channels_to_blocks(channels: torch.Tensor, order: str = "natural") -> torch.Tensor:
    """Inverse of :func:`blocks_to_channels`: ``(..., b*b, nh, nw)`` -> ``(..., nh, nw, b, b)``."""
    if order not in ("natural", "zigzag"):
        raise ValueError(f"order must be 'natural' or 'zigzag', got {order!r}")
    b = math.isqrt(channels.shape[-3])
    if b * b != channels.shape[-3]:
        raise ValueError(f"channel dim must be a square number of frequencies, got {channels.shape[-3]}")
    flat = channels.movedim(-3, -1)
    if order == "zigzag":
        flat = flat[..., torch.argsort(_zigzag(b)).to(flat.device)]
    return flat.unflatten(-1, (b, b))


@lru_cache(maxsize=512)
def _dct_order(size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return frequency_order(np.arange(h) / (2 * h), np.arange(w) / (2 * w))


@lru_cache(maxsize=512)
def _dct_kept_mask(size: tuple[int, int], rate: float) -> torch.Tensor:
    order = _dct_order(size)
    return mask_from_order(order, size, kept_count(len(order), rate))


@register_domain
class DCTDomain(TransformDomain):
    """Orthonormal 2D DCT domain, global (default) or blockwise.

    Args:
        block_size: ``None`` for one DCT over the whole ``H x W`` plane, or the
            side ``b`` of JPEG-style blocks (4, 8, 16, ...).

    Example:
        >>> dct_domain = DCTDomain(block_size=8)
        >>> dct_domain.forward(torch.rand(3, 32, 48)).shape
        torch.Size([3, 4, 6, 8, 8])
        >>> dct_domain.kept_mask((32, 48), rate=0.75).sum().item()  # per 8x8 block
        16
    """

    name = "dct"
    fixed_grid = True

    def __init__(self, block_size: int | None = None) -> None:
        self.block_size = None if block_size is None else check_positive_int(block_size, "block_size")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., H, W)`` -> ``(..., H, W)`` (global) or ``(..., nh, nw, b, b)`` (blockwise)."""
        check_float_tensor(x)
        return dct2(x) if self.block_size is None else block_dct2(x, self.block_size)

    def inverse(self, coeffs: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Back to ``(..., H, W)``; ``size`` crops the padding of the blockwise layout."""
        if self.block_size is None:
            if size is not None and check_size2d(size) != tuple(coeffs.shape[-2:]):
                raise ValueError(f"size {tuple(size)} does not match coefficients {tuple(coeffs.shape[-2:])}")
            return idct2(coeffs)
        if coeffs.dim() < 4 or tuple(coeffs.shape[-2:]) != (self.block_size, self.block_size):
            raise ValueError(
                f"blockwise coefficients must have shape (..., nh, nw, {self.block_size}, {self.block_size}), "
                f"got {tuple(coeffs.shape)}"
            )
        return block_idct2(coeffs, size)

    def _grid(self, size: tuple[int, int]) -> tuple[int, int]:
        return size if self.block_size is None else (self.block_size, self.block_size)

    def _kept_mask(self, size: tuple[int, int], rate: float) -> torch.Tensor:
        return _dct_kept_mask(self._grid(size), rate).clone()

    def _compress(self, x: torch.Tensor, rate: float) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        mask = _dct_kept_mask(self._grid(size), rate).to(x.device)
        return self.inverse(self.forward(x) * mask, size)

    def _rate_for_energy(self, x: torch.Tensor, energy: float) -> float:
        size = tuple(x.shape[-2:])
        grid = self._grid(size)
        power = self.forward(x.double()).square().reshape(-1, grid[0] * grid[1]).sum(0)
        order = _dct_order(grid)
        count = count_for_energy(power[torch.from_numpy(order).to(x.device)], energy)
        return rate_for_count(count, len(order))

    def __repr__(self) -> str:
        return f"DCTDomain(block_size={self.block_size})"
