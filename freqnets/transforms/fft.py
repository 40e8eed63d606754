"""The FFT domain: real-input 2D spectrum (``rfft2`` layout) with low-pass compression.

Layout: for a real input ``(..., H, W)`` the coefficients are the one-sided
spectrum ``(..., H, W // 2 + 1)`` of ``torch.fft.rfft2`` with ``norm="ortho"``
(so Parseval holds with the weights of :func:`rfft_energy_weights`). Row ``k``
holds the vertical frequency ``k / H`` for ``k <= H / 2`` and ``(k - H) / H``
above; column ``l`` the horizontal frequency ``l / W``.

Kept set at a rate: the lowest-frequency ``round((1 - rate) * H * (W // 2 + 1))``
coefficients in the order of :mod:`._frequency_order`, i.e. squares in the
top-left and bottom-left corners of the one-sided spectrum, as in band-limited
training (Dziedzic et al., ICML 2019). Conjugate symmetry is respected: in the
self-conjugate columns (column 0 and, for even ``W``, column ``W / 2``) a
coefficient is kept together with its conjugate twin, so the compressed signal
is real, its spectrum is exactly zero outside the kept set, and the DC and
Nyquist entries stay real.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .._checks import check_float_tensor, check_rate, check_size2d, compute_dtype
from ._frequency_order import count_for_energy, frequency_order, kept_count, mask_from_order, rate_for_count
from .base import TransformDomain, register_domain


def rfft_shape(size: tuple[int, int]) -> tuple[int, int]:
    """Shape ``(H, W // 2 + 1)`` of the one-sided spectrum of an ``(H, W)`` input."""
    h, w = size
    return h, w // 2 + 1


def rfft_frequencies(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Signed normalised frequencies ``(H,)`` of the rows and ``(W // 2 + 1,)`` of the columns."""
    h, w = size
    k = np.arange(h)
    # Divide exact integers (not k * (1 / h)) so equal frequencies compare equal.
    return np.where(k <= h // 2, k, k - h) / h, np.arange(w // 2 + 1) / w


def rfft_energy_weights(size: tuple[int, int]) -> torch.Tensor:
    """``(W // 2 + 1,)`` Parseval weights of the one-sided spectrum's columns.

    Columns that stand for themselves and their mirror image count twice; the
    self-conjugate columns (0, and ``W / 2`` for even ``W``) count once. With
    ``norm="ortho"``, ``sum(weights * |X|**2) == sum(x**2)``.
    """
    _, w = size
    weights = torch.full((w // 2 + 1,), 2.0, dtype=torch.float64)
    weights[0] = 1.0
    if w % 2 == 0:
        weights[-1] = 1.0
    return weights


@lru_cache(maxsize=512)
def _rfft_order(size: tuple[int, int]) -> np.ndarray:
    return frequency_order(*rfft_frequencies(size))


def _complete_conjugate_pair(order: np.ndarray, size: tuple[int, int], count: int) -> int:
    """Grow ``count`` by one when it would split a conjugate pair in a self-conjugate column."""
    h, w = size
    if count >= len(order):
        return count
    last_row, last_col = divmod(int(order[count - 1]), w // 2 + 1)
    self_conjugate_col = last_col == 0 or (w % 2 == 0 and last_col == w // 2)
    has_twin = last_row != 0 and 2 * last_row != h
    next_row, next_col = divmod(int(order[count]), w // 2 + 1)
    if self_conjugate_col and has_twin and next_col == last_col and next_row == h - last_row:
        return count + 1
    return count


@lru_cache(maxsize=512)
def _rfft_kept_mask(size: tuple[int, int], rate: float) -> torch.Tensor:
    order = _rfft_order(size)
    count = _complete_conjugate_pair(order, size, kept_count(len(order), rate))
    return mask_from_order(order, rfft_shape(size), count)


def rfft_kept_mask(size: tuple[int, int], rate: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``(H, W // 2 + 1)`` mask of the one-sided coefficients kept at ``rate``.

    Args:
        size: spatial size ``(H, W)`` of the real input.
        rate: fraction discarded, ``0 <= rate < 1``.
        device: where to put the mask.

    Example:
        >>> rfft_kept_mask((32, 32), 0.5).float().mean().item()
        0.5
    """
    size = check_size2d(size)
    return _rfft_kept_mask(size, check_rate(rate, "rate")).to(device)


def fft_compress(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Band-limit ``x`` ``(..., H, W)``: zero the highest-frequency fraction ``rate`` of its spectrum.

    Returns a tensor of ``x``'s shape and dtype. Differentiable.
    """
    return FFTDomain().compress(x, rate)


def fft_rate_for_energy(x: torch.Tensor, energy: float) -> float:
    """Largest rate whose low-frequency band keeps at least ``energy`` of ``x``'s spectral energy."""
    return FFTDomain().rate_for_energy(x, energy)


@register_domain
class FFTDomain(TransformDomain):
    """Real 2D FFT domain; see the module docstring for layout and kept sets.

    Example:
        >>> fft = FFTDomain()
        >>> x = torch.randn(2, 3, 16, 20)
        >>> fft.forward(x).shape
        torch.Size([2, 3, 16, 11])
        >>> torch.allclose(fft.inverse(fft.forward(x), size=(16, 20)), x, atol=1e-5)
        True
    """

    name = "fft"
    fixed_grid = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., H, W)`` real -> ``(..., H, W // 2 + 1)`` complex, orthonormal."""
        check_float_tensor(x)
        return torch.fft.rfft2(x.to(compute_dtype(x.dtype)), norm="ortho")

    def inverse(self, coeffs: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``(..., H, W // 2 + 1)`` complex -> ``(..., H, W)`` real; ``size`` needed for odd ``W``."""
        if not isinstance(coeffs, torch.Tensor) or not coeffs.is_complex() or coeffs.dim() < 2:
            raise TypeError("coeffs must be a complex tensor (..., H, W // 2 + 1) from FFTDomain.forward")
        if size is None:
            size = (coeffs.shape[-2], 2 * (coeffs.shape[-1] - 1))
        size = check_size2d(size)
        if rfft_shape(size) != tuple(coeffs.shape[-2:]):
            raise ValueError(
                f"size {size} does not match coefficients of shape {tuple(coeffs.shape[-2:])}; "
                f"expected coefficients {rfft_shape(size)}"
            )
        return torch.fft.irfft2(coeffs, s=size, norm="ortho")

    def _kept_mask(self, size: tuple[int, int], rate: float) -> torch.Tensor:
        return _rfft_kept_mask(size, rate).clone()

    def _compress(self, x: torch.Tensor, rate: float) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        mask = _rfft_kept_mask(size, rate).to(x.device)
        return torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho") * mask, s=size, norm="ortho")

    def _rate_for_energy(self, x: torch.Tensor, energy: float) -> float:
        size = tuple(x.shape[-2:])
        power = torch.fft.rfft2(x.double(), norm="ortho").abs().square()
        power = (power * rfft_energy_weights(size).to(x.device)).reshape(-1, power.shape[-2] * power.shape[-1])
        order = _rfft_order(size)
        ordered = power.sum(0)[torch.from_numpy(order).to(x.device)]
        count = _complete_conjugate_pair(order, size, count_for_energy(ordered, energy))
        return rate_for_count(count, len(order))
