"""SVD truncation against numpy.linalg.svd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from freqnets.transforms import SVDDomain, rank_for_energy, rank_for_rate, svd_truncate
from tests.conftest import assert_close_relative


def numpy_truncation(x: np.ndarray, rank: int) -> np.ndarray:
    u, s, vh = np.linalg.svd(x, full_matrices=False)
    return (u[..., :rank] * s[..., None, :rank]) @ vh[..., :rank, :]


@pytest.mark.parametrize("shape", [(12, 12), (3, 16, 9), (2, 2, 7, 20)])
@pytest.mark.parametrize("rank", [1, 3, 7])
def test_truncation_by_rank_matches_numpy(shape, rank):
    x = torch.randn(*shape, dtype=torch.float64)
    expected = numpy_truncation(x.numpy(), rank)
    assert_close_relative(svd_truncate(x, rank=rank), torch.from_numpy(expected), 1e-10)


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.9])
def test_truncation_by_rate_keeps_the_rounded_rank(rate):
    x = torch.randn(4, 20, 30, dtype=torch.float32)
    k = rank_for_rate(20, rate)
    assert abs(k / 20 - (1 - rate)) <= 0.5 / 20
    out = svd_truncate(x, rate=rate)
    assert out.dtype == torch.float32
    assert torch.linalg.matrix_rank(out.double(), rtol=1e-5).tolist() == [k] * 4
    assert_close_relative(out, torch.from_numpy(numpy_truncation(x.double().numpy(), k)), 1e-5)


def test_truncation_by_energy_keeps_the_energy():
    x = torch.randn(3, 16, 16, dtype=torch.float64)
    k = rank_for_energy(x, 0.8)
    s = np.linalg.svd(x.numpy(), compute_uv=False)
    shares = np.cumsum((s**2).sum(0)) / (s**2).sum()
    assert shares[k - 1] >= 0.8 and (k == 1 or shares[k - 2] < 0.8)
    assert_close_relative(svd_truncate(x, energy=0.8), torch.from_numpy(numpy_truncation(x.numpy(), k)), 1e-10)


def test_domain_round_trip_and_rate_for_energy():
    domain = SVDDomain()
    x = torch.randn(2, 5, 9, dtype=torch.float64)
    coeffs = domain.forward(x)
    assert coeffs.U.shape == (2, 5, 5) and coeffs.S.shape == (2, 5) and coeffs.Vh.shape == (2, 5, 9)
    assert_close_relative(domain.inverse(coeffs), x, 1e-12)
    rate = domain.rate_for_energy(x, 0.7)
    assert rank_for_rate(5, rate) == rank_for_energy(x, 0.7)


def test_gradcheck_truncation():
    x = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: svd_truncate(t, rank=2), (x,))


def test_bad_arguments():
    x = torch.randn(4, 4)
    with pytest.raises(ValueError, match="exactly one"):
        svd_truncate(x, rank=1, rate=0.5)
    with pytest.raises(ValueError, match="rank must be <="):
        svd_truncate(x, rank=5)
    with pytest.raises(ValueError, match="energy"):
        svd_truncate(x, energy=1.5)
