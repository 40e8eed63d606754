"""The one ordering of frequencies used by every fixed-grid domain (FFT, DCT).

Coefficients are ranked from low to high frequency by their normalised
frequency ``(fy, fx)`` in cycles per sample: first by ``max(|fy|, |fx|)`` (so a
kept set grows as a square around the zero frequency, the corner regions of the
band-limited convolution paper), then by ``|fy| + |fx|``, then by ``|fy|``, and
a positive frequency comes before its negative twin. Keeping the first ``n``
coefficients of this order is "discarding the highest frequencies".
"""

from __future__ import annotations

import numpy as np
import torch

from .base import NonFiniteInputError


def frequency_order(freq_rows: np.ndarray, freq_cols: np.ndarray) -> np.ndarray:
    """Indices into the flattened ``(len(freq_rows), len(freq_cols))`` grid, lowest first.

    Args:
        freq_rows: ``(H,)`` signed normalised frequency of each row.
        freq_cols: ``(W,)`` signed normalised frequency of each column.

    Returns:
        ``(H * W,)`` int64 array: a permutation of the flat indices.
    """
    fy = np.repeat(freq_rows[:, None], len(freq_cols), axis=1).ravel()
    fx = np.repeat(freq_cols[None, :], len(freq_rows), axis=0).ravel()
    ay, ax = np.abs(fy), np.abs(fx)
    # np.lexsort sorts by the last key first.
    return np.lexsort((fx < 0, fy < 0, ay, ay + ax, np.maximum(ay, ax))).astype(np.int64)


def kept_count(total: int, rate: float) -> int:
    """Number of coefficients kept when the fraction ``rate`` of ``total`` is discarded.

    Rounded to the nearest integer and never below one, so at least the lowest
    frequency (or the largest coefficient) survives any rate below 1.
    """
    return min(total, max(1, round((1.0 - rate) * total)))


def mask_from_order(order: np.ndarray, shape: tuple[int, int], count: int) -> torch.Tensor:
    """Boolean ``shape`` mask that keeps the first ``count`` entries of ``order``."""
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[order[:count]] = True
    return torch.from_numpy(mask.reshape(shape))


def count_for_energy(ordered: torch.Tensor, energy: float) -> int:
    """Length of the shortest prefix of ``ordered`` (1D, non-negative) holding ``energy`` of the sum.

    Returns at least 1; an all-zero input keeps everything.

    Raises:
        NonFiniteInputError: the energies are not finite (a NaN, or finite values whose squares overflow).
    """
    total = ordered.sum()
    if not bool(torch.isfinite(total)):
        raise NonFiniteInputError(f"the energy to share is {total.item()}: the input is not finite or overflows")
    if total <= 0:
        return len(ordered)
    cumulative = torch.cumsum(ordered, 0) / total
    # The tolerance keeps a prefix whose share rounds to just below ``energy``.
    target = torch.tensor(energy - 1e-12, dtype=cumulative.dtype, device=cumulative.device)
    return min(int(torch.searchsorted(cumulative, target).item()) + 1, len(ordered))


def rate_for_count(count: int, total: int) -> float:
    """The rate at which :func:`kept_count` keeps exactly ``count`` of ``total`` coefficients."""
    return min(max(1.0 - count / total, 0.0), float(np.nextafter(1.0, 0.0)))
