"""The SVD domain: truncated singular value decompositions of ``(..., H, W)`` matrices.

Coefficients are the thin SVD ``x = U diag(S) Vh`` of every ``H x W`` matrix
(batched over leading dims). Compression keeps the largest singular values:
at rate ``r`` the rank kept is ``round((1 - r) * min(H, W))`` (at least 1), so
the kept fraction of singular values is within ``0.5 / min(H, W)`` of
``1 - r``. Truncation by rank, rate or energy are all offered.

Gradients flow through ``torch.linalg.svd``; like any SVD gradient they are
ill-conditioned where kept and discarded singular values (nearly) coincide.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._checks import check_float_tensor, check_fraction, check_positive_int, check_rate, compute_dtype
from ._frequency_order import count_for_energy, kept_count, rate_for_count
from .base import TransformDomain, check_finite, register_domain


class SVDCoefficients(NamedTuple):
    """Thin SVD of a batch of matrices: ``U (..., H, k)``, ``S (..., k)``, ``Vh (..., k, W)``."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor


def rank_for_rate(n: int, rate: float) -> int:
    """Rank kept out of ``n`` singular values when the fraction ``rate`` is discarded."""
    return kept_count(check_positive_int(n, "n"), check_rate(rate, "rate"))


def rank_for_energy(x: torch.Tensor, energy: float) -> int:
    """Smallest rank whose singular values hold ``energy`` of ``x``'s energy (summed over the batch).

    Raises:
        NonFiniteInputError: ``x`` holds NaN or infinite values.
    """
    check_float_tensor(x)
    check_finite(x)
    energy = check_fraction(energy, "energy")
    s = torch.linalg.svdvals(x.detach().to(compute_dtype(x.dtype)).double())
    return count_for_energy(s.square().reshape(-1, s.shape[-1]).sum(0), energy)


def svd_truncate(
    x: torch.Tensor,
    *,
    rank: int | None = None,
    rate: float | None = None,
    energy: float | None = None,
) -> torch.Tensor:
    """Best rank-``k`` approximation (Eckart-Young) of each ``(H, W)`` matrix of ``x``.

    Give exactly one of ``rank`` (singular values kept), ``rate`` (fraction
    discarded) or ``energy`` (fraction of the squared Frobenius norm kept).

    Returns:
        Tensor of ``x``'s shape and dtype.

    Example:
        >>> x = torch.randn(4, 16, 16)
        >>> torch.linalg.matrix_rank(svd_truncate(x, rank=3)).tolist()
        [3, 3, 3, 3]
    """
    check_float_tensor(x)
    given = [name for name, value in (("rank", rank), ("rate", rate), ("energy", energy)) if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of rank, rate or energy; got {given or 'none'}")
    n = min(x.shape[-2:])
    if rank is not None:
        k = check_positive_int(rank, "rank")
        if k > n:
            raise ValueError(f"rank must be <= min(H, W) = {n}, got {k}")
    elif rate is not None:
        k = rank_for_rate(n, rate)
    else:
        k = rank_for_energy(x, energy)
    work = x.to(compute_dtype(x.dtype))
    u, s, vh = torch.linalg.svd(work, full_matrices=False)
    return ((u[..., :k] * s[..., None, :k]) @ vh[..., :k, :]).to(x.dtype)


@register_domain
class SVDDomain(TransformDomain):
    """Singular value domain; compression keeps the largest singular values.

    Example:
        >>> svd = SVDDomain()
        >>> coeffs = svd.forward(torch.randn(2, 8, 5))
        >>> coeffs.S.shape
        torch.Size([2, 5])
    """

    name = "svd"
    fixed_grid = False

    def forward(self, x: torch.Tensor) -> SVDCoefficients:
        """``(..., H, W)`` -> :class:`SVDCoefficients` with ``k = min(H, W)``."""
        check_float_tensor(x)
        return SVDCoefficients(*torch.linalg.svd(x.to(compute_dtype(x.dtype)), full_matrices=False))

    def inverse(self, coeffs: SVDCoefficients, size: tuple[int, int] | None = None) -> torch.Tensor:
        """:class:`SVDCoefficients` -> ``(..., H, W)``; ``size`` is implied and only checked."""
        if not isinstance(coeffs, tuple) or len(coeffs) != 3:
            raise TypeError("coeffs must be SVDCoefficients(U, S, Vh) from SVDDomain.forward")
        u, s, vh = coeffs
        out = (u * s[..., None, :]) @ vh
        if size is not None and tuple(size) != tuple(out.shape[-2:]):
            raise ValueError(f"size {tuple(size)} does not match the factors' {tuple(out.shape[-2:])}")
        return out

    def _compress(self, x: torch.Tensor, rate: float) -> torch.Tensor:
        return svd_truncate(x, rate=rate)

    def _rate_for_energy(self, x: torch.Tensor, energy: float) -> float:
        return rate_for_count(rank_for_energy(x, energy), min(x.shape[-2:]))
