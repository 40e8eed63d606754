"""OctConv2d: each of the four paths against plain convolutions, pooling and upsampling written out here."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from freqnets.layers import OctaveMap, OctaveTensors, OctConv2d
from freqnets.layers.octave_conv import octave_add, octave_downsample, octave_upsample
from tests.conftest import assert_close_relative


def pool2x2(x: torch.Tensor) -> torch.Tensor:
    """Mean of each 2x2 block, written as a reshape (even sizes)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def repeat2x2(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def conv(x: torch.Tensor, layer: nn.Conv2d) -> torch.Tensor:
    return F.conv2d(x, layer.weight, layer.bias, padding=layer.padding)


def test_pooling_and_upsampling_helpers_against_loops():
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64)
    pooled = octave_downsample(x)
    expected = torch.empty(1, 2, 3, 4, dtype=torch.float64)
    for i in range(3):
        for j in range(4):
            expected[..., i, j] = x[..., 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(dim=(-2, -1))
    assert_close_relative(pooled, expected, 1e-12)
    up = octave_upsample(pooled, (6, 8))
    assert torch.equal(up, repeat2x2(pooled))


@pytest.mark.parametrize("bias", [False, True])
def test_four_paths_against_plain_convolutions(bias):
    layer = OctConv2d(12, 10, 3, alpha_in=0.5, alpha_out=0.4, bias=bias).double()
    assert (layer.in_high, layer.in_low, layer.out_high, layer.out_low) == (6, 6, 6, 4)
    high = torch.randn(2, 6, 8, 10, dtype=torch.float64)
    low = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    out = layer((high, low))
    assert isinstance(out, OctaveTensors)
    expected_high = conv(high, layer.conv_hh) + repeat2x2(conv(low, layer.conv_lh))
    expected_low = conv(low, layer.conv_ll) + conv(pool2x2(high), layer.conv_hl)
    assert_close_relative(out.high, expected_high, 1e-12)
    assert_close_relative(out.low, expected_low, 1e-12)


def test_each_path_alone():
    layer = OctConv2d(8, 8, 3, alpha_in=0.5, alpha_out=0.5).double()
    high = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    low = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    zero_h, zero_l = torch.zeros_like(high), torch.zeros_like(low)
    # Only the high input: H->H and H->L paths.
    out = layer((high, zero_l))
    assert_close_relative(out.high, conv(high, layer.conv_hh), 1e-12)
    assert_close_relative(out.low, conv(pool2x2(high), layer.conv_hl), 1e-12)
    # Only the low input: L->H and L->L paths.
    out = layer((zero_h, low))
    assert_close_relative(out.high, repeat2x2(conv(low, layer.conv_lh)), 1e-12)
    assert_close_relative(out.low, conv(low, layer.conv_ll), 1e-12)


def test_stride_two_pools_both_paths_first():
    layer = OctConv2d(8, 6, 3, stride=2, alpha_in=0.5, alpha_out=0.5).double()
    high = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    low = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    out = layer((high, low))
    h2, l2 = pool2x2(high), pool2x2(low)
    assert out.high.shape == (2, 3, 4, 4) and out.low.shape == (2, 3, 2, 2)
    assert_close_relative(out.high, conv(h2, layer.conv_hh) + repeat2x2(conv(l2, layer.conv_lh)), 1e-12)
    assert_close_relative(out.low, conv(l2, layer.conv_ll) + conv(pool2x2(h2), layer.conv_hl), 1e-12)


def test_alpha_zero_is_exactly_conv2d():
    layer = OctConv2d(5, 7, 3, alpha_in=0.0, alpha_out=0.0, bias=True)
    reference = nn.Conv2d(5, 7, 3, padding=1, bias=True)
    reference.load_state_dict(layer.conv_hh.state_dict())
    x = torch.randn(2, 5, 9, 9)
    out = layer(x)
    assert isinstance(out, torch.Tensor)
    assert torch.equal(out, reference(x))
    assert layer.conv_hl is None and layer.conv_lh is None and layer.conv_ll is None


def test_first_and_last_octave_layers():
    first = OctConv2d(4, 8, 3, alpha_in=0.0, alpha_out=0.25).double()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    out = first(x)
    assert_close_relative(out.high, conv(x, first.conv_hh), 1e-12)
    assert_close_relative(out.low, conv(pool2x2(x), first.conv_hl), 1e-12)
    last = OctConv2d(8, 4, 3, alpha_in=0.25, alpha_out=0.0).double()
    y = last(out)
    assert isinstance(y, torch.Tensor)
    assert_close_relative(y, conv(out.high, last.conv_hh) + repeat2x2(conv(out.low, last.conv_lh)), 1e-12)


def test_odd_sizes_keep_the_half_resolution_grid():
    layer = OctConv2d(8, 8, 3)
    out = layer((torch.randn(1, 4, 7, 5), torch.randn(1, 4, 4, 3)))
    assert out.high.shape[-2:] == (7, 5) and out.low.shape[-2:] == (4, 3)
    out = OctConv2d(8, 8, 3, stride=2)(out)
    assert out.high.shape[-2:] == (4, 3) and out.low.shape[-2:] == (2, 2)


def test_gradcheck():
    layer = OctConv2d(4, 4, 3).double()
    high = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    low = torch.randn(1, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, lo: tuple(layer((h, lo))), (high, low))


def test_octave_map_and_add():
    bn = OctaveMap(nn.Identity(), nn.ReLU())
    x = OctaveTensors(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2))
    out = bn(x)
    assert torch.equal(out.high, x.high) and torch.equal(out.low, x.low.clamp_min(0))
    total = octave_add(x, out)
    assert torch.equal(total.low, x.low + out.low)
    with pytest.raises(ValueError, match="low path"):
        octave_add(x, OctaveTensors(x.high, None))
    with pytest.raises(ValueError, match="low path"):
        OctaveMap(nn.Identity(), None)(x)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="alpha_in"):
        OctConv2d(8, 8, 3, alpha_in=1.0)
    with pytest.raises(TypeError, match="alpha_out"):
        OctConv2d(8, 8, 3, alpha_out="half")
    with pytest.raises(ValueError, match="stride"):
        OctConv2d(8, 8, 3, stride=3)
    with pytest.raises(ValueError, match="no high-frequency"):
        OctConv2d(1, 8, 3, alpha_in=0.9)
    layer = OctConv2d(8, 8, 3)
    with pytest.raises(ValueError, match="pair"):
        layer(torch.randn(1, 4, 4, 4))
    with pytest.raises(ValueError, match="half the high resolution"):
        layer((torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)))
    with pytest.raises(ValueError, match="high path"):
        layer((torch.randn(1, 5, 8, 8), torch.randn(1, 4, 4, 4)))
    with pytest.raises(TypeError, match="pair"):
        layer([1, 2, 3])
