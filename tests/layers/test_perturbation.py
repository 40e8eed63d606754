"""Perturbation channels against independent references (numpy, PIL, scipy, Python loops)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy import stats

from freqnets.layers import (
    ColorDepthChannel,
    FFTChannel,
    GaussianNoiseChannel,
    JPEGChannel,
    LaplaceNoiseChannel,
    SVDChannel,
    UniformNoiseChannel,
    Vote,
    jpeg_quant_tables,
    make_channel,
)
from freqnets.transforms import rfft_kept_mask


def _images(n=4, c=3, h=16, w=16, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=generator, dtype=dtype)


def _smooth_8bit_images(n=6, seed=0):
    """Natural-ish images: bilinear upsampling of 8x8 noise, quantised to 8 bits."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=generator, dtype=torch.float64)
    return (F.interpolate(coarse, size=32, mode="bilinear", align_corners=False) * 255).round() / 255


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.75, 0.95])
@pytest.mark.parametrize("size", [(16, 16), (15, 20)])
def test_fft_channel_matches_numpy_low_pass(rate, size):
    x = _images(h=size[0], w=size[1])
    mask = rfft_kept_mask(size, rate).numpy()
    expected = np.fft.irfft2(np.fft.rfft2(x.numpy(), norm="ortho") * mask, s=size, norm="ortho")
    np.testing.assert_allclose(FFTChannel(rate)(x).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("bits", [1, 2, 5, 8])
def test_color_depth_is_nearest_level(bits):
    x = _images()
    levels = np.linspace(0.0, 1.0, 2**bits)
    nearest = levels[np.abs(x.numpy()[..., None] - levels).argmin(-1)]
    np.testing.assert_allclose(ColorDepthChannel(bits)(x).numpy(), nearest, atol=1e-12)


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9])
def test_svd_channel_matches_numpy_truncation(rate):
    x = _images(h=12, w=10)
    keep = max(1, int(np.floor((1 - rate) * 10 + 0.5)))
    u, s, vh = np.linalg.svd(x.numpy(), full_matrices=False)
    expected = (u[..., :keep] * s[..., None, :keep]) @ vh[..., :keep, :]
    np.testing.assert_allclose(SVDChannel(rate)(x).numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("quality", [10, 50, 95])
def test_jpeg_tables_match_libjpeg(quality):
    rgb = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, subsampling=0)
    with Image.open(buffer) as decoded:
        tables = decoded.quantization
    ours = jpeg_quant_tables(quality)
    assert ours[0].flatten().tolist() == list(tables[0])
    assert ours[1].flatten().tolist() == list(tables[1])


@pytest.mark.parametrize("quality", [10, 50, 90])
def test_jpeg_channel_close_to_libjpeg_round_trip(quality):
    x = _smooth_8bit_images()
    reference = []
    for image in x:
        buffer = io.BytesIO()
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
            buffer, "JPEG", quality=quality, subsampling=0
        )
        with Image.open(buffer) as decoded:
            reference.append(torch.from_numpy(np.array(decoded.convert("RGB"))).permute(2, 0, 1) / 255.0)
    reference = torch.stack(reference).double()
    ours = JPEGChannel(quality)(x)
    libjpeg_error = (reference - x).abs().mean()
    # libjpeg uses an integer DCT and rounds to 8 bits, so the two differ by rounding only:
    # far less than the compression error itself, and the same mean distortion.
    assert (ours - reference).abs().mean() < 0.4 * libjpeg_error
    assert abs((ours - x).abs().mean() - libjpeg_error) < 0.05 * libjpeg_error


def test_noise_statistics_match_distributions():
    shape = (4, 3, 64, 64)  # 49152 draws
    x = torch.zeros(shape, dtype=torch.float64)
    cases = [
        (GaussianNoiseChannel(0.3, clip=False), stats.norm(scale=0.3), 0.3**2),
        (UniformNoiseChannel(0.4, clip=False), stats.uniform(loc=-0.4, scale=0.8), 0.4**2 / 3),
        (LaplaceNoiseChannel(0.2, clip=False), stats.laplace(scale=0.2), 2 * 0.2**2),
    ]
    for channel, distribution, variance in cases:
        channel.generator = torch.Generator().manual_seed(1)
        noise = channel(x).flatten().numpy()
        n = noise.size
        assert abs(noise.mean()) < 5 * np.sqrt(variance / n)
        assert abs(noise.var() / variance - 1) < 0.03
        # Kolmogorov-Smirnov: the 0.999 critical value is about 1.95 / sqrt(n).
        assert stats.kstest(noise, distribution.cdf).statistic < 1.95 / np.sqrt(n)
    laplace = LaplaceNoiseChannel(0.2, clip=False)
    laplace.generator = torch.Generator().manual_seed(2)
    assert abs(np.abs(laplace(x).numpy()).mean() / 0.2 - 1) < 0.02  # E|noise| = b


def test_noise_clipping_keeps_images_in_range():
    x = _images()
    out = GaussianNoiseChannel(1.0)(x)
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(GaussianNoiseChannel(0.0)(x).numpy(), x.numpy())


class _TinyClassifier(nn.Module):
    def __init__(self, classes=5, channels=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.head = nn.Linear(4, classes)

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).mean((-2, -1)))


def test_vote_matches_python_loop_with_same_seed():
    model = _TinyClassifier().double().eval()
    x = _images(n=5)
    draws = 7
    channel = GaussianNoiseChannel(0.5)
    channel.generator = torch.Generator().manual_seed(3)
    shares = Vote(model, channel, draws=draws)(x)
    # Reference: the same noise (one draw of (T * B, C, H, W)), then a loop over draws and a numpy tally.
    noise = torch.randn((draws * 5, 3, 16, 16), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    noise = noise.view(draws, 5, 3, 16, 16) * 0.5
    tally = np.zeros((5, 5))
    with torch.no_grad():
        for t in range(draws):
            predictions = model((x + noise[t]).clamp(0, 1)).argmax(-1).numpy()
            for b, p in enumerate(predictions):
                tally[b, p] += 1
    np.testing.assert_allclose(shares.numpy(), tally / draws)
    assert shares.sum(-1).allclose(torch.ones(5, dtype=torch.float64))


def test_vote_chunks_give_the_same_shares_for_a_deterministic_channel():
    model = _TinyClassifier().double().eval()
    x = _images(n=6)
    whole = Vote(model, FFTChannel(0.5), draws=3)(x)
    chunked = Vote(model, FFTChannel(0.5), draws=3, chunk=4)(x)
    torch.testing.assert_close(whole, chunked)
    assert set(whole.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", ["fft", "svd", "color_depth", "jpeg", "gauss", "uniform", "laplace"])
def test_bpda_gradient_is_identity(name):
    strength = 4 if name == "color_depth" else 50 if name == "jpeg" else 0.3
    channel = make_channel(name, strength, backward="bpda")
    x = _images(n=2).requires_grad_()
    weights = torch.randn_like(x)
    (channel(x) * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights)


@pytest.mark.parametrize("channel", [FFTChannel(0.6), SVDChannel(0.5)], ids=["fft", "svd"])
def test_exact_gradients_gradcheck(channel):
    x = _images(n=2, c=2, h=6, w=5).requires_grad_()
    assert torch.autograd.gradcheck(channel, (x,))


def test_noise_exact_gradient_is_clip_mask():
    x = _images(n=2).requires_grad_()
    channel = GaussianNoiseChannel(0.5)
    channel.generator = torch.Generator().manual_seed(0)
    out = channel(x)
    out.sum().backward()
    inside = ((out > 0) & (out < 1)).double()
    torch.testing.assert_close(x.grad, inside)


@pytest.mark.parametrize(
    "channel", [FFTChannel(), SVDChannel(), ColorDepthChannel(), JPEGChannel(), LaplaceNoiseChannel()],
    ids=lambda c: type(c).__name__,
)
def test_calibrate_hits_target_distortion(channel):
    x = _smooth_8bit_images(n=8).float()
    target = 1.2
    strength = channel.calibrate(None, x, target)
    assert channel.strength == strength
    if channel.strength_range.integer:
        # The closest integer: its neighbours are no closer to the target.
        achieved = channel.distortion(x)
        for neighbour in (strength - 1, strength + 1):
            if channel.strength_range.low <= neighbour <= channel.strength_range.high:
                other = type(channel)(neighbour).distortion(x)
                assert abs(achieved - target) <= abs(other - target) + 1e-9
    elif isinstance(channel, SVDChannel):
        # Rank is an integer: the chosen rate gives the rank whose distortion is closest to the target.
        achieved = channel.distortion(x)
        by_rank = [SVDChannel(1 - k / 32).distortion(x) for k in range(1, 33)]
        assert abs(achieved - target) <= min(abs(d - target) for d in by_rank) + 1e-6
    else:
        channel.generator = torch.Generator().manual_seed(0)
        assert abs(channel.distortion(x) - target) <= 0.01 * target + 1e-6


def test_calibrate_for_accuracy_drop():
    x = _smooth_8bit_images(n=200).float()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2)).eval()
    labels = model(x).argmax(-1)  # clean accuracy 1 by construction
    channel = GaussianNoiseChannel()
    channel.calibrate(model, (x, labels), 0.25, measure="accuracy_drop", seed=5)
    # Independent check: fresh noise (another seed) at the chosen sigma, added by hand.
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(11)) * channel.strength
    with torch.no_grad():
        accuracy = (model((x + noise).clamp(0, 1)).argmax(-1) == labels).float().mean().item()
    assert abs((1 - accuracy) - 0.25) <= 0.08


def test_calibrate_rejects_unreachable_target_and_bad_measure():
    x = _images()
    with pytest.raises(ValueError, match="outside what"):
        FFTChannel().calibrate(None, x, 1e6)
    with pytest.raises(ValueError, match="measure"):
        FFTChannel().calibrate(None, x, 1.0, measure="psnr")
    with pytest.raises(ValueError, match="needs a model"):
        FFTChannel().calibrate(None, x, 0.1, measure="accuracy_drop")


@pytest.mark.parametrize(
    ("factory", "bad", "error"),
    [
        (FFTChannel, 1.0, ValueError), (FFTChannel, -0.1, ValueError), (SVDChannel, float("nan"), ValueError),
        (ColorDepthChannel, 0, ValueError), (ColorDepthChannel, 9, ValueError), (ColorDepthChannel, 4.0, TypeError),
        (JPEGChannel, 0, ValueError), (JPEGChannel, 101, ValueError), (GaussianNoiseChannel, -1.0, ValueError),
        (UniformNoiseChannel, 2.5, ValueError), (LaplaceNoiseChannel, "0.1", TypeError), (FFTChannel, True, TypeError),
    ],
)  # fmt: skip
def test_bad_strengths_raise(factory, bad, error):
    with pytest.raises(error):
        factory(bad)
    channel = factory()
    with pytest.raises(error):
        channel.strength = bad


def test_bad_backward_and_inputs_raise():
    with pytest.raises(ValueError, match="bpda"):
        ColorDepthChannel(4, backward="exact")
    with pytest.raises(ValueError, match="backward"):
        FFTChannel(0.5, backward="smooth")
    with pytest.raises(ValueError, match="B, C, H, W"):
        FFTChannel()(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="floating"):
        FFTChannel()(torch.ones(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="RGB"):
        JPEGChannel()(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="channel must be one of"):
        make_channel("blur", 1.0)
    with pytest.raises(ValueError, match="draws"):
        Vote(nn.Identity(), FFTChannel(), draws=0)
