"""Band-limited convolution against F.conv1d/F.conv2d (rate 0) and a numpy FFT reference (rate > 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from freqnets.layers import BandLimitedConv1d, BandLimitedConv2d
from freqnets.layers.band_limited_conv import band_limited_conv2d, conv_geometry
from freqnets.layers.spectral_plan import make_plan, next_fast_length
from freqnets.transforms import rfft_kept_mask
from tests.conftest import assert_close_relative

CONV2D_CONFIGS = [
    # (C_in, C_out, kernel, stride, padding, dilation, groups, padding_mode, input H x W)
    (3, 8, 3, 1, 1, 1, 1, "zeros", (16, 16)),
    (4, 6, (3, 5), (2, 1), (1, 2), (1, 2), 2, "zeros", (13, 17)),
    (4, 4, 3, 2, 1, 1, 4, "reflect", (15, 9)),
    (2, 5, 5, 1, "same", 1, 1, "replicate", (11, 20)),
    (3, 3, 4, 3, 0, 1, 1, "zeros", (19, 14)),
    (2, 4, 3, 1, "valid", 2, 2, "circular", (12, 12)),
    (6, 3, 1, 1, 0, 1, 3, "zeros", (7, 5)),
    (2, 2, (1, 7), 1, (0, 3), 1, 1, "circular", (9, 31)),
    (3, 4, 2, 1, "same", 1, 1, "zeros", (8, 8)),
]


def assert_same_layer(ours, reference, x, rtol=1e-4):
    """Outputs and the gradients of input, weight and bias agree with the reference layer."""
    expected, out = reference(x), ours(x)
    assert_close_relative(out, expected, rtol)
    grad = torch.randn_like(expected)
    ours_grads = torch.autograd.grad(out, (x, ours.weight, ours.bias), grad)
    reference_grads = torch.autograd.grad(expected, (x, reference.weight, reference.bias), grad)
    for a, b in zip(ours_grads, reference_grads, strict=True):
        assert_close_relative(a, b, rtol)


def _pair(module_cls, reference_cls, config, dtype):
    c_in, c_out, kernel, stride, padding, dilation, groups, mode, _ = config
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    reference = reference_cls(c_in, c_out, kernel, **kwargs).to(dtype)
    ours = module_cls(c_in, c_out, kernel, **kwargs, compress_rate=0.0).to(dtype)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("config", CONV2D_CONFIGS)
def test_conv2d_rate_zero_matches_torch_forward_and_backward(config, batch, device):
    reference, ours = _pair(BandLimitedConv2d, nn.Conv2d, config, torch.float32)
    reference, ours = reference.to(device), ours.to(device)
    x = torch.randn(batch, config[0], *config[-1], device=device, requires_grad=True)
    assert_same_layer(ours, reference, x)


@pytest.mark.parametrize("route", ["matmul", "fft"])
@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_gradcheck_both_routes(route, rate):
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)

    def fn(x, w, b):
        return band_limited_conv2d(x, w, b, (2, 1), (1, 0, 2, 1), (1, 2), 2, rate, route=route)

    assert torch.autograd.gradcheck(fn, (x, w, b))


@pytest.mark.parametrize("route", ["matmul", "fft"])
def test_routes_agree(route):
    x = torch.randn(2, 3, 20, 24, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    # Padded to 24 x 28, both 7-smooth, so both routes use the same FFT grid and kept set.
    out = band_limited_conv2d(x, w, None, (1, 1), (1, 3, 1, 3), (1, 1), 1, 0.4, route=route)
    reference = numpy_band_limited(x, w, (1, 3, 1, 3), (1, 1), (1, 1), 0.4, make_plan((24, 28), 0.4, route).fft_size)
    assert_close_relative(out, reference, 1e-10)


def numpy_band_limited(x, w, padding, stride, dilation, rate, fft_size):
    """The definition, with numpy's FFT: correlate the band-limited input and filter on the FFT grid."""
    top, bottom, left, right = padding
    n_h, n_w = fft_size
    xp = np.zeros((*x.shape[:2], n_h, n_w))
    xp[..., top : top + x.shape[2], left : left + x.shape[3]] = x.numpy()
    kh, kw = w.shape[-2:]
    wd = np.zeros((*w.shape[:2], n_h, n_w))
    wd[..., : dilation[0] * (kh - 1) + 1 : dilation[0], : dilation[1] * (kw - 1) + 1 : dilation[1]] = w.numpy()
    mask = rfft_kept_mask((n_h, n_w), rate).numpy()
    xs = np.fft.rfft2(xp) * mask
    ws = np.fft.rfft2(wd) * mask
    ys = np.einsum("bcij,ocij->boij", xs, ws.conj())
    full = np.fft.irfft2(ys, s=(n_h, n_w))
    length_h, length_w = top + x.shape[2] + bottom, left + x.shape[3] + right
    out_h = (length_h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (length_w - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return torch.from_numpy(full[..., : out_h * stride[0] : stride[0], : out_w * stride[1] : stride[1]].copy())


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("stride,dilation", [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((1, 2), (2, 1))])
def test_rate_matches_the_numpy_definition(rate, stride, dilation):
    x = torch.randn(2, 3, 15, 18, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    padding = (1, 1, 2, 0)
    out = band_limited_conv2d(x, w, None, stride, padding, dilation, 1, rate)
    geometry = conv_geometry((15, 18), (3, 3), stride, dilation, padding)
    fft_size = make_plan(geometry.padded_size, rate).fft_size
    assert_close_relative(out, numpy_band_limited(x, w, padding, stride, dilation, rate, fft_size), 1e-10)


CONV1D_CONFIGS = [
    (3, 4, 5, 1, 2, 1, 1, "zeros", 50),
    (4, 4, 3, 2, 1, 2, 2, "reflect", 31),
    (2, 6, 7, 3, "valid", 1, 2, "zeros", 40),
    (2, 2, 4, 1, "same", 1, 1, "circular", 17),
    (4, 4, 129, 1, 64, 1, 1, "zeros", 300),
]


@pytest.mark.parametrize("config", CONV1D_CONFIGS)
def test_conv1d_rate_zero_matches_torch(config):
    reference, ours = _pair(BandLimitedConv1d, nn.Conv1d, config, torch.float32)
    x = torch.randn(2, config[0], config[-1], requires_grad=True)
    assert_same_layer(ours, reference, x)


def test_conv1d_gradcheck_at_a_rate():
    conv = BandLimitedConv1d(2, 3, 5, stride=2, padding=2, compress_rate=0.5).double()
    x = torch.randn(2, 2, 23, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_unbatched_and_state_dict_both_ways():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    ours = BandLimitedConv2d(3, 5, 3, padding=1, compress_rate=0.3)
    ours.load_state_dict(conv.state_dict())
    conv.load_state_dict(ours.state_dict(), strict=False)  # the rate entry is unexpected in a plain conv
    assert set(ours.state_dict()) == {"weight", "bias", "_extra_state"}
    x = torch.randn(3, 10, 12)
    assert ours(x).shape == (5, 10, 12)
    assert torch.allclose(ours(x), ours(x[None])[0])


def test_saves_only_the_compressed_spectra():
    x = torch.randn(8, 16, 32, 32, requires_grad=True)
    w = torch.randn(16, 16, 3, 3, requires_grad=True)
    saved = {}
    for rate in (0.0, 0.5):
        tensors: list[torch.Tensor] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, store=tensors: store.append(t) or t, lambda t: t):
            band_limited_conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, rate)
        assert not any(t.data_ptr() == x.data_ptr() for t in tensors)
        assert all(t.shape[0] == 2 for t in tensors)  # planar (real, imaginary) spectra only
        saved[rate] = sum(t.numel() * t.element_size() for t in tensors)
    assert saved[0.5] <= 0.6 * saved[0.0]


def test_fft_sizes():
    assert [next_fast_length(n) for n in (1, 11, 34, 97, 4224)] == [1, 12, 35, 98, 4320]
    assert make_plan((34, 34), 0.0).fft_size == (34, 34)  # the matrix route needs no smooth size
    assert make_plan((1, 4224), 0.0).fft_size == (1, 4320)
    plan = make_plan((34, 34), 0.5)
    assert abs(plan.kept_fraction - 0.5) < 0.02


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"compress_rate must be in \[0, 1\)"):
        BandLimitedConv2d(3, 3, 3, compress_rate=1.0)
    with pytest.raises(ValueError, match="backend must be one of torch, cupy, auto, got 'triton'"):
        BandLimitedConv2d(3, 3, 3, backend="triton")
    conv = BandLimitedConv2d(3, 4, 3)
    with pytest.raises(ValueError, match="expects 3 input channels, got 2"):
        conv(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="expects input of 4 dims"):
        conv(torch.randn(8, 8))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        conv(torch.randn(1, 3, 2, 2))
    with pytest.raises(TypeError, match="floating"):
        conv(torch.ones(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="route must be one of"):
        band_limited_conv2d(torch.randn(1, 1, 4, 4), torch.randn(1, 1, 3, 3), route="gpu")


@pytest.mark.parametrize("kronecker", [0.0, float("inf")], ids=["separable", "kronecker"])
@pytest.mark.parametrize("route", ["matmul", "fft"])
@pytest.mark.parametrize("rate", [0.0, 0.6])
def test_every_spectral_path_matches_the_definition(kronecker, route, rate, monkeypatch):
    import freqnets.layers.spectral_plan as spectral_plan

    monkeypatch.setattr(spectral_plan, "KRONECKER_ADVANTAGE", kronecker)
    x = torch.randn(2, 4, 9, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    padding, stride, dilation = (1, 2, 0, 1), (2, 1), (1, 2)
    out = band_limited_conv2d(x, w, None, stride, padding, dilation, 2, rate, route=route)
    geometry = conv_geometry((9, 12), (3, 3), stride, dilation, padding)
    fft_size = make_plan(geometry.padded_size, rate, route).fft_size
    grouped = [
        numpy_band_limited(
            x[:, 2 * g : 2 * g + 2].detach(), w[3 * g : 3 * g + 3].detach(), padding, stride, dilation, rate, fft_size
        )
        for g in range(2)
    ]
    assert_close_relative(out, torch.cat(grouped, dim=1), 1e-10)
    assert torch.autograd.gradcheck(
        lambda a, b: band_limited_conv2d(a, b, None, stride, padding, dilation, 2, rate, route=route), (x, w)
    )
