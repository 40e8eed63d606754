"""Winograd matrices and tiled convolution against numpy correlation and F.conv2d."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from freqnets.transforms import WinogradDomain, winograd_conv2d, winograd_matrices, winograd_points
from tests.conftest import assert_close_relative


@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (6, 3), (3, 2), (2, 5), (1, 3), (3, 1)])
def test_one_dimensional_minimal_filtering_equals_correlation(m, r):
    at, g, bt = winograd_matrices(m, r)
    assert at.shape == (m, m + r - 1) and g.shape == (m + r - 1, r) and bt.shape == (m + r - 1, m + r - 1)
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        d = rng.standard_normal(m + r - 1)
        filt = rng.standard_normal(r)
        expected = np.correlate(d, filt, mode="valid")
        ours = at.numpy() @ ((g.numpy() @ filt) * (bt.numpy() @ d))
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10)


def test_f23_matches_lavin_and_gray():
    # Lavin & Gray (CVPR 2016), section 4.1, F(2,3) with points 0, 1, -1 and infinity.
    at, g, bt = winograd_matrices(2, 3)
    assert torch.equal(
        bt, torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]], dtype=torch.float64)
    )
    assert torch.equal(g[:3], torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5]], dtype=torch.float64))
    assert torch.equal(at, torch.tensor([[1, 1, 1, 0], [0, 1, -1, 1]], dtype=torch.float64))


def test_points_and_custom_points():
    assert [float(p) for p in winograd_points(7)] == [0, 1, -1, 2, -2, 0.5, -0.5]
    at, g, bt = winograd_matrices(2, 3, points=[0, 2, -2])
    d, filt = np.arange(4.0), np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(at.numpy() @ ((g.numpy() @ filt) * (bt.numpy() @ d)), np.correlate(d, filt, "valid"))
    with pytest.raises(ValueError, match="distinct"):
        winograd_matrices(2, 3, points=[0, 1, 1])


CONFIGS = [
    # (N, C, O, H, W, r, padding, groups, bias)
    (2, 3, 4, 8, 8, 3, 1, 1, True),
    (1, 4, 6, 7, 11, 3, 0, 2, False),
    (1, 2, 2, 13, 5, 3, "same", 2, True),
    (3, 1, 5, 9, 9, 3, (2, 0), 1, True),
    (1, 3, 3, 6, 10, 5, 2, 1, False),
    (1, 4, 4, 16, 16, 3, "valid", 4, True),
]


@pytest.mark.parametrize("m,rtol", [(2, 1e-5), (4, 1e-4)])
@pytest.mark.parametrize("config", CONFIGS)
def test_conv2d_matches_torch_float32(config, m, rtol, device):
    n, c, o, h, w, r, padding, groups, use_bias = config
    x = torch.randn(n, c, h, w, device=device)
    weight = torch.randn(o, c // groups, r, r, device=device)
    bias = torch.randn(o, device=device) if use_bias else None
    expected = F.conv2d(
        x.double(), weight.double(), None if bias is None else bias.double(), padding=padding, groups=groups
    )
    out = winograd_conv2d(x, weight, bias, padding=padding, groups=groups, m=m)
    assert out.dtype == torch.float32
    assert_close_relative(out, expected, rtol)


def test_conv2d_f63_float64_is_exact_and_gradients_match():
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    out = winograd_conv2d(x, weight, padding=1, m=6)
    expected = F.conv2d(x, weight, padding=1)
    assert_close_relative(out, expected, 1e-10)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, weight), grad)
    reference = torch.autograd.grad(expected, (x, weight), grad)
    for a, b in zip(ours, reference, strict=True):
        assert_close_relative(a, b, 1e-10)


def test_gradcheck_conv2d():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: winograd_conv2d(a, b, c, padding=1, m=2), (x, weight, bias))


def test_conv2d_rejects_what_it_cannot_do():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="square"):
        winograd_conv2d(x, torch.randn(2, 4, 3, 1))
    with pytest.raises(ValueError, match="channels"):
        winograd_conv2d(x, torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match="stride 1 and dilation 1"):
        winograd_conv2d(x, torch.randn(2, 4, 3, 3), stride=2)
    with pytest.raises(ValueError, match="stride 1 and dilation 1"):
        winograd_conv2d(x, torch.randn(2, 4, 3, 3), dilation=(1, 2))
    with pytest.raises(ValueError, match="padding must be"):
        winograd_conv2d(x, torch.randn(2, 4, 3, 3), padding="full")
    with pytest.raises(ValueError, match="smaller"):
        winograd_conv2d(torch.randn(1, 4, 2, 2), torch.randn(2, 4, 3, 3))
    with pytest.raises(TypeError, match="floating"):
        winograd_conv2d(x.int(), torch.randn(2, 4, 3, 3))


@pytest.mark.parametrize("m", [2, 4, 6])
def test_domain_is_the_input_tile_transform(m):
    domain = WinogradDomain(m=m)
    alpha = m + 2
    x = torch.randn(2, 2 * alpha, 3 * alpha, dtype=torch.float64)
    coeffs = domain.forward(x)
    assert coeffs.shape == (2, 2, 3, alpha, alpha)
    _, _, bt = winograd_matrices(m, 3)
    tile = x[:, alpha : 2 * alpha, 2 * alpha : 3 * alpha]
    assert_close_relative(coeffs[:, 1, 2], bt @ tile @ bt.T, 1e-12)
    assert_close_relative(domain.inverse(coeffs, tuple(x.shape[-2:])), x, 1e-10)


def test_compression_keeps_the_coefficients_whose_removal_costs_most():
    domain = WinogradDomain(m=2)
    x = torch.randn(1, 8, 8, dtype=torch.float64)
    out = domain.compress(x, 0.5)
    kept = domain.forward(out)
    nonzero = kept.abs() > 1e-10
    assert nonzero.sum() == 32  # half of 64 coefficients
    # Brute force reference: the pixel error of dropping each coefficient alone.
    coeffs = domain.forward(x)
    errors = torch.empty(coeffs.numel(), dtype=torch.float64)
    for i in range(coeffs.numel()):
        dropped = coeffs.clone().flatten()
        dropped[i] = 0
        errors[i] = (domain.inverse(dropped.view_as(coeffs), (8, 8)) - x).norm()
    assert errors[nonzero.flatten()].min() >= errors[~nonzero.flatten()].max() - 1e-12
    assert_close_relative(kept[nonzero], coeffs[nonzero], 1e-10)
