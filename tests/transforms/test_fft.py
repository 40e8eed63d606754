"""FFT domain against numpy.fft, its kept sets, conjugate symmetry and Parseval energy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from freqnets.transforms import FFTDomain, fft_compress, fft_rate_for_energy, rfft_energy_weights, rfft_kept_mask
from tests.conftest import RTOL, assert_close_relative


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(16, 16), (9, 14), (10, 7)])
def test_forward_matches_numpy_rfft2(size, dtype, device):
    x = torch.randn(2, 3, *size, dtype=dtype, device=device)
    expected = np.fft.rfft2(x.cpu().double().numpy(), norm="ortho")
    coeffs = FFTDomain().forward(x)
    assert_close_relative(coeffs.real, torch.from_numpy(expected.real), RTOL[dtype])
    assert_close_relative(coeffs.imag, torch.from_numpy(expected.imag), RTOL[dtype])
    assert_close_relative(FFTDomain().inverse(coeffs, size), x, RTOL[dtype])


@pytest.mark.parametrize("size", [(16, 16), (16, 17), (17, 16), (21, 33)])
def test_parseval_weights(size):
    x = torch.randn(4, *size, dtype=torch.float64)
    coeffs = FFTDomain().forward(x)
    energy = (coeffs.abs().square() * rfft_energy_weights(size)).sum()
    assert torch.allclose(energy, x.square().sum(), rtol=1e-12)


@pytest.mark.parametrize("size", [(16, 16), (16, 17), (17, 16), (32, 20), (15, 15)])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.77, 0.95])
def test_kept_mask_is_conjugate_symmetric_and_low_pass(size, rate):
    h, w = size
    mask = rfft_kept_mask(size, rate)
    for col in [0] + ([w // 2] if w % 2 == 0 else []):
        column = mask[:, col]
        assert torch.equal(column, column[(-torch.arange(h)) % h]), f"column {col} splits a conjugate pair"
    # Every kept coefficient has a frequency (L-infinity, cycles/sample) no higher than any discarded one.
    rows = torch.arange(h)
    fy = (torch.minimum(rows, h - rows).double() / h)[:, None].expand(h, w // 2 + 1)
    fx = (torch.arange(w // 2 + 1).double() / w)[None, :].expand(h, w // 2 + 1)
    radius = torch.maximum(fy, fx)
    if (~mask).any():
        assert radius[mask].max() <= radius[~mask].min() + 1e-12
    assert mask[0, 0]  # DC always kept


def test_kept_set_lies_in_the_top_left_and_bottom_left_corners():
    mask = rfft_kept_mask((32, 32), 0.75)
    kept_rows = torch.nonzero(mask.any(dim=1)).flatten().tolist()
    assert 0 in kept_rows and 31 in kept_rows and 16 not in kept_rows
    assert mask[:, 0].any() and not mask[:, -1].any()


@pytest.mark.parametrize("size", [(16, 16), (16, 18), (20, 15)])
def test_compressed_spectrum_is_zero_outside_the_kept_set_with_real_dc_and_nyquist(size):
    h, w = size
    x = torch.randn(3, *size, dtype=torch.float64)
    out = fft_compress(x, 0.6)
    spectrum = torch.fft.rfft2(out, norm="ortho")
    mask = rfft_kept_mask(size, 0.6)
    assert spectrum[..., ~mask].abs().max() < 1e-12
    # The compressed coefficients are exactly the kept ones of the input.
    assert_close_relative(spectrum * mask, torch.fft.rfft2(x, norm="ortho") * mask, 1e-12)
    self_conjugate = [(0, 0)] + ([(h // 2, 0)] if h % 2 == 0 else [])
    if w % 2 == 0:
        self_conjugate += [(0, w // 2)] + ([(h // 2, w // 2)] if h % 2 == 0 else [])
    for row, col in self_conjugate:
        assert spectrum[:, row, col].imag.abs().max() < 1e-12


@pytest.mark.parametrize("energy", [0.5, 0.8, 0.9, 0.99])
def test_rate_for_energy_is_the_smallest_band_reaching_the_energy(energy):
    # A smooth signal plus noise, so the energy is concentrated at low frequencies.
    grid = torch.linspace(0, 1, 24, dtype=torch.float64)
    x = torch.sin(5 * grid)[:, None] * torch.cos(3 * grid)[None, :] + 0.1 * torch.randn(4, 24, 24, dtype=torch.float64)
    rate = fft_rate_for_energy(x, energy)
    weights = rfft_energy_weights((24, 24))

    def kept_energy(r: float) -> float:
        power = torch.fft.rfft2(x, norm="ortho").abs().square() * weights
        return (power * rfft_kept_mask((24, 24), r)).sum().item() / x.square().sum().item()

    assert kept_energy(rate) >= energy - 1e-9
    # One more step of compression (the next coarser band) falls short.
    mask = rfft_kept_mask((24, 24), rate)
    slightly_higher = rate + 1.0 / mask.numel()
    if slightly_higher < 1 and rfft_kept_mask((24, 24), slightly_higher).sum() < mask.sum():
        assert kept_energy(slightly_higher) < energy


def test_gradcheck_fft_domain():
    x = torch.randn(2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fft_compress(t, 0.5), (x,))
    assert torch.autograd.gradcheck(lambda t: torch.view_as_real(FFTDomain().forward(t)), (x,))


def test_inverse_rejects_a_size_that_does_not_fit():
    coeffs = FFTDomain().forward(torch.randn(8, 9))
    with pytest.raises(ValueError, match="does not match"):
        FFTDomain().inverse(coeffs, size=(8, 12))
    with pytest.raises(TypeError, match="complex"):
        FFTDomain().inverse(torch.randn(8, 5))
