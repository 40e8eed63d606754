"""Compress rates as layer state: saved in the state_dict, restored on load, read and set per model, re-rated."""

from __future__ import annotations

import io

import pytest
import timm
import torch
import torch.nn as nn

import freqnets
from freqnets import calibrate_rates, convert_model, get_compress_rates, set_compress_rates
from freqnets.layers import (
    BandLimitedConv2d,
    DCTConv2d,
    RateMismatchWarning,
    SVDConv2d,
    WinogradConv2d,
)

LAYERS = {
    "fft": lambda rate: BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=rate),
    "svd": lambda rate: SVDConv2d(3, 4, 3, padding=1, compress_rate=rate),
    "winograd": lambda rate: WinogradConv2d(3, 4, 3, padding=1, compress_rate=rate),
    "dct": lambda rate: DCTConv2d(3, 4, 3, padding=1, compress_rate=rate),
}


def _round_trip(state: dict) -> dict:
    """Through torch.save and torch.load(weights_only=True), as a checkpoint file is."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("domain", sorted(LAYERS))
def test_rate_and_frozen_flag_survive_save_and_load_and_the_file_wins(domain):
    saved = LAYERS[domain](0.25)
    saved.rate_frozen = False
    saved.compress_rate = 0.405 if domain != "svd" else saved.compress_rate
    saved.rate_frozen = True
    state = _round_trip(saved.state_dict())
    fresh = LAYERS[domain](0.5)
    with pytest.warns(RateMismatchWarning, match=f"compress_rate {fresh.compress_rate} of the model replaced by"):
        fresh.load_state_dict(state)
    assert fresh.compress_rate == saved.compress_rate and fresh.rate_frozen
    if domain != "svd":
        assert fresh.compress_rate == 0.405  # exactly: the state is float64
    with pytest.raises(RuntimeError, match="frozen"):
        fresh.compress_rate = 0.1
    x = torch.randn(2, 3, 9, 9)
    assert torch.equal(fresh(x), saved(x))


@pytest.mark.parametrize("domain", sorted(LAYERS))
def test_a_plain_conv2d_state_dict_loads_strictly_and_keeps_the_model_rate(domain):
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer = LAYERS[domain](0.5)
    rate = layer.compress_rate
    layer.load_state_dict(conv.state_dict())  # strict: the missing rate entry is not an error
    assert layer.compress_rate == rate and not layer.rate_frozen
    reference = convert_model(nn.Conv2d(3, 4, 3, padding=1), domain, compress_rate=0.5)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(1, 3, 8, 8)
    assert torch.allclose(layer(x), convert_model(conv, domain, compress_rate=0.5)(x), atol=1e-5)
    # The other direction needs strict=False; the rate entry is then the only unexpected key.
    result = nn.Conv2d(3, 4, 3, padding=1).load_state_dict(DCTConv2d(3, 4, 3).state_dict(), strict=False)
    assert result.unexpected_keys == ["_extra_state"] and result.missing_keys == []


def test_calibrated_rates_survive_a_checkpoint_of_a_timm_model():
    torch.manual_seed(0)
    model = timm.create_model("bl_resnet18_cifar", compress_rate=0.5).eval()
    calibrate_rates(model, torch.randn(2, 3, 32, 32), energy=0.9)
    rates = get_compress_rates(model)
    assert len(set(rates.values())) > 1 and all(layer.rate_frozen for layer in model.modules() if hasattr(layer, "rate_frozen"))
    state = _round_trip(model.state_dict())
    restored = timm.create_model("bl_resnet18_cifar", compress_rate=0.5).eval()
    with pytest.warns(RateMismatchWarning):
        restored.load_state_dict(state)
    assert get_compress_rates(restored) == rates  # exactly equal floats
    assert all(m.rate_frozen for m in restored.modules() if hasattr(m, "rate_frozen"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(restored(x), model(x))


def test_timm_weights_load_into_every_converted_resnet():
    reference = timm.create_model("resnet18", num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    for domain in ("fft", "svd", "winograd", "dct"):
        model = convert_model(timm.create_model("resnet18", num_classes=10), domain, compress_rate=0.0).eval()
        model.load_state_dict(reference.state_dict())  # strict
        assert set(get_compress_rates(model).values()) == {0.0}
        assert torch.allclose(model(x), reference(x), rtol=1e-3, atol=1e-3), domain


def test_a_second_conversion_re_rates_and_says_so():
    model = convert_model(timm.create_model("resnet18", num_classes=10), "fft", compress_rate=0.5)
    convert_model(model, "fft", compress_rate=0.25)
    summary = model.freqnets_conversion
    assert summary.converted == 0 and summary.rerated == 17 and summary.skipped == 3
    assert set(get_compress_rates(model).values()) == {0.25}
    assert "0 of 20 convolutions converted, 17 re-rated" in str(summary)
    assert "| layer1.0.conv1 | BandLimitedConv2d | 3x3 | re-rated | re-rated: compress_rate 0.5 -> 0.25 |" in str(
        summary
    )
    model.layer1[0].conv1.rate_frozen = True
    convert_model(model, "fft", compress_rate=0.1)
    notes = {row.name: row for row in model.freqnets_conversion.rows}
    assert not notes["layer1.0.conv1"].rerated and "frozen" in notes["layer1.0.conv1"].note
    assert model.layer1[0].conv1.compress_rate == 0.25 and model.layer1[0].conv2.compress_rate == 0.1
    # Another domain's layers stay; an SVD layer cannot grow a rank back.
    convert_model(model, "dct", compress_rate=0.3)
    assert model.freqnets_conversion.converted == 0 and model.freqnets_conversion.rerated == 0
    svd = convert_model(nn.Sequential(nn.Conv2d(4, 4, 3)), "svd", compress_rate=0.5)
    convert_model(svd, "svd", compress_rate=0.75)
    assert svd[0].rank == 3 and svd.freqnets_conversion.rerated == 1
    convert_model(svd, "svd", compress_rate=0.0)
    assert svd[0].rank == 3 and "not re-rated" in svd.freqnets_conversion.rows[0].note


def test_a_number_as_the_domain_is_a_type_error_that_names_the_keyword():
    with pytest.raises(TypeError, match=r"compress_rate keyword: convert_model\(model, 'fft', compress_rate=0.5\)"):
        convert_model(nn.Conv2d(2, 2, 3), 0.5)


def test_get_and_set_compress_rates_of_a_model():
    model = convert_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)), "winograd", compress_rate=0.5)
    assert get_compress_rates(model) == {"0": 0.5, "2": 0.5}
    assert set_compress_rates(model, 0.25) == {"0": 0.25, "2": 0.25}
    assert model[0].winograd_mask.float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert set_compress_rates(model, {"2": 0.6}) == {"0": 0.25, "2": 0.6}
    model[0].rate_frozen = True
    with pytest.raises(RuntimeError, match=r"frozen rates .* in 0"):
        set_compress_rates(model, 0.1)
    assert get_compress_rates(model) == {"0": 0.25, "2": 0.6}  # nothing changed
    with pytest.raises(ValueError, match="no transform-domain layer named '1'"):
        set_compress_rates(model, {"1": 0.1})
    with pytest.raises(ValueError, match="compress_rate"):
        set_compress_rates(model, 1.0)
    with pytest.raises(ValueError, match="no transform-domain layers"):
        set_compress_rates(nn.Sequential(nn.Conv2d(1, 1, 3)), 0.5)
    assert get_compress_rates(nn.Conv2d(1, 1, 3)) == {}
    assert freqnets.layers.get_compress_rates is get_compress_rates


def test_malformed_rate_state_is_refused_by_name():
    layer = DCTConv2d(2, 2, 3)
    state = layer.state_dict()
    state["_extra_state"] = torch.tensor([0.5, 0.5], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"rate state must be a tensor \[compress_rate, rate_frozen"):
        layer.load_state_dict(state)
    state["_extra_state"] = torch.tensor([1.5, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="compress_rate must be in"):
        layer.load_state_dict(state)


def test_an_svd_state_dict_of_another_rank_loads_and_its_rank_wins():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    saved = SVDConv2d.from_conv(conv, compress_rate=0.75)
    model = SVDConv2d.from_conv(conv, compress_rate=0.25)
    with pytest.warns(RateMismatchWarning):
        model.load_state_dict(_round_trip(saved.state_dict()))
    assert model.rank == saved.rank and model.compress_rate == saved.compress_rate
    x = torch.randn(1, 4, 7, 7)
    assert torch.equal(model(x), saved(x))
