"""convert_model and calibrate_rates on real networks, checked against the unconverted ones and numpy."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

from freqnets import calibrate_rates, convert_model
from freqnets.layers import BandLimitedConv1d, BandLimitedConv2d
from freqnets.layers.spectral_plan import make_plan
from freqnets.transforms import NonFiniteInputError, rfft_energy_weights, rfft_kept_mask


def test_rate_zero_conversion_keeps_the_function_of_a_timm_resnet():
    model = timm.create_model("resnet18", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    converted = convert_model(model, compress_rate=0.0)
    assert converted is model
    assert torch.allclose(converted(x), expected, rtol=1e-4, atol=1e-4)
    summary = model.freqnets_conversion
    assert summary.converted == 17 and summary.skipped == 3  # the three 1x1 downsample convolutions
    assert "layer2.0.downsample.0 | Conv2d | 1x1 | no | kernel smaller than min_kernel_size=3" in str(summary)
    assert isinstance(model.layer1[0].conv1, BandLimitedConv2d) and type(model.layer2[0].downsample[0]) is nn.Conv2d


def test_conversion_of_mixed_modules_says_why_it_skipped():
    model = nn.Sequential(
        nn.Conv1d(2, 3, 5, padding=2),
        nn.Conv2d(3, 3, 1),
        nn.ConvTranspose2d(3, 3, 3),
        nn.Conv3d(1, 1, 3),
        BandLimitedConv2d(3, 3, 3),
    )
    convert_model(model, compress_rate=0.25, min_kernel_size=1)
    notes = {row.name: (row.converted, row.note) for row in model.freqnets_conversion.rows}
    assert notes["0"] == (True, "-> BandLimitedConv1d (backend=torch)") and isinstance(model[0], BandLimitedConv1d)
    assert notes["1"][0] and model[1].compress_rate == 0.25
    assert notes["2"] == (False, "ConvTranspose2d has no band-limited form (Conv1d and Conv2d do)")
    assert notes["3"][0] is False and notes["4"] == (False, "re-rated: compress_rate 0.0 -> 0.25")
    assert model.freqnets_conversion.rerated == 1 and model[4].compress_rate == 0.25


def test_a_bare_convolution_is_returned_converted():
    conv = nn.Conv2d(2, 4, 3, padding="same", padding_mode="reflect", bias=False)
    new = convert_model(conv, compress_rate=0.0)
    assert isinstance(new, BandLimitedConv2d) and new.padding_mode == "reflect" and new.bias is None
    x = torch.randn(1, 2, 9, 9)
    assert torch.allclose(new(x), conv(x), atol=1e-5)


def test_domains_without_layers_and_bad_arguments(monkeypatch):
    import freqnets.layers.registry as registry

    with pytest.raises(ValueError, match="unknown domain 'wavelet'"):
        convert_model(nn.Conv2d(1, 1, 3), domain="wavelet")
    monkeypatch.delitem(registry._LAYERS, "dct")
    with pytest.raises(ValueError, match="domain 'dct' has no convolution layer yet; convert_model supports: fft, svd"):
        convert_model(nn.Conv2d(1, 1, 3), domain="dct")
    with pytest.raises(ValueError, match="compress_rate"):
        convert_model(nn.Conv2d(1, 1, 3), compress_rate=1.5)


def _numpy_energy_share(grid: np.ndarray, rate: float) -> float:
    spectrum = np.abs(np.fft.rfft2(grid)) ** 2 * rfft_energy_weights(grid.shape[-2:]).numpy()
    mask = rfft_kept_mask(grid.shape[-2:], rate).numpy()
    return (spectrum * mask).sum() / spectrum.sum()


@pytest.mark.parametrize("energy", [0.5, 0.9, 0.99])
def test_calibrated_rate_keeps_the_energy_and_no_less_band_would(energy):
    layer = BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.3)
    model = nn.Sequential(layer)
    grid = torch.linspace(0, 1, 20)
    batch = torch.sin(7 * grid)[None, None, :, None] * torch.cos(3 * grid) + 0.3 * torch.randn(4, 3, 20, 20)
    report = calibrate_rates(model, batch, energy=energy)
    rate = layer.compress_rate
    assert layer.rate_frozen and report.rows[0].compress_rate == rate and report.rows[0].fft_size == (22, 22)
    padded = np.pad(batch.numpy().astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert _numpy_energy_share(padded, rate) >= energy - 1e-6
    step = 1 / (22 * 12)
    smaller_band = rate + step
    if make_plan((22, 22), smaller_band).num_kept < make_plan((22, 22), rate).num_kept:
        assert _numpy_energy_share(padded, smaller_band) < energy
    with pytest.raises(RuntimeError, match="frozen"):
        layer.compress_rate = 0.1
    assert "| 0 | 4x3x20x20 | 22x22 |" in str(report)


def test_calibration_measures_the_uncompressed_network_and_restores_on_error():
    model = nn.Sequential(
        BandLimitedConv1d(2, 2, 9, padding=4, compress_rate=0.8), BandLimitedConv1d(2, 2, 9, padding=4)
    )
    calibrate_rates(model, torch.randn(3, 2, 100), energy=0.95)
    assert all(m.rate_frozen for m in model)
    broken = nn.Sequential(BandLimitedConv2d(2, 2, 3, compress_rate=0.4), nn.Linear(5, 5))
    with pytest.raises(RuntimeError):
        calibrate_rates(broken, torch.randn(1, 2, 8, 8))
    assert broken[0].compress_rate == 0.4 and not broken[0].rate_frozen
    with pytest.raises(ValueError, match="no band-limited layers"):
        calibrate_rates(nn.Sequential(nn.Conv2d(1, 1, 3)), torch.randn(1, 1, 8, 8))


def test_one_nan_in_the_calibration_batch_raises_and_changes_no_rate():
    model = nn.Sequential(
        BandLimitedConv2d(2, 3, 3, padding=1, compress_rate=0.4), nn.ReLU(), BandLimitedConv2d(3, 3, 3, padding=1)
    )
    batch = torch.randn(4, 2, 12, 12)
    batch[3, 1, 6, 6] = float("nan")
    with pytest.raises(NonFiniteInputError, match=r"calibrate_rates: the input of layer '0' is not finite") as error:
        calibrate_rates(model, batch)
    assert isinstance(error.value, ValueError)
    assert (model[0].compress_rate, model[2].compress_rate) == (0.4, 0.0)
    assert not model[0].rate_frozen and not model[2].rate_frozen
    batch[3, 1, 6, 6] = 0.0
    calibrate_rates(model, batch)  # the same batch without the NaN calibrates (rates above 0 for smooth data)
    assert model[0].rate_frozen and model[2].rate_frozen
