"""MultigridConv2d and the Y/CbCr exchange block against compositions written out here."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F

from freqnets.layers import MultigridBasicBlock, MultigridConv2d, YCbCrExchangeBlock, as_ycbcr_pair
from tests.conftest import assert_close_relative


def max2x2(x):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).amax(dim=(3, 5))


def mean2x2(x):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def repeat2x2(x):
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def split_conv(x, weight, splits, stride=1):
    """A convolution of a concatenation, as the sum of convolutions of its parts (independent of torch.cat)."""
    out, start = 0, 0
    for part, c in zip(x, splits, strict=True):
        out = out + F.conv2d(part, weight[:, start : start + c], stride=stride, padding=weight.shape[-1] // 2)
        start += c
    return out


@pytest.mark.parametrize("stride", [1, 2])
def test_three_grids_against_explicit_composition(stride):
    channels = (6, 4, 2)
    layer = MultigridConv2d(channels, (5, 3, 2), 3, stride=stride).double()
    grids = [torch.randn(2, c, 16 >> j, 16 >> j, dtype=torch.float64) for j, c in enumerate(channels)]
    out = layer(grids)
    w = [c.weight for c in layer.convs]
    expected = [
        split_conv([grids[0], repeat2x2(grids[1])], w[0], (6, 4), stride),
        split_conv([max2x2(grids[0]), grids[1], repeat2x2(grids[2])], w[1], (6, 4, 2), stride),
        split_conv([max2x2(grids[1]), grids[2]], w[2], (4, 2), stride),
    ]
    for j, (got, want) in enumerate(zip(out, expected, strict=True)):
        assert got.shape == (2, layer.out_channels[j], (16 >> j) // stride, (16 >> j) // stride)
        assert_close_relative(got, want, 1e-12)


def test_one_grid_is_a_plain_convolution():
    layer = MultigridConv2d((3,), (4,), 3)
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(layer([x])[0], F.conv2d(x, layer.convs[0].weight, padding=1))


def test_avg_pooling_option():
    layer = MultigridConv2d((2, 2), (2, 2), 1, pool="avg").double()
    grids = [torch.randn(1, 2, 4, 4, dtype=torch.float64), torch.randn(1, 2, 2, 2, dtype=torch.float64)]
    got = layer(grids)[1]
    assert_close_relative(got, split_conv([mean2x2(grids[0]), grids[1]], layer.convs[1].weight, (2, 2)), 1e-12)


def test_basic_block_against_composition():
    block = MultigridBasicBlock((4, 2), (6, 3), stride=2).double().eval()
    for module in block.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 2)
    grids = [torch.randn(1, 4, 8, 8, dtype=torch.float64), torch.randn(1, 2, 4, 4, dtype=torch.float64)]

    def bn(x, m):
        return (x - m.running_mean[:, None, None]) / (m.running_var[:, None, None] + m.eps).sqrt() * m.weight[
            :, None, None
        ] + m.bias[:, None, None]

    h = [bn(x, m).clamp_min(0) for x, m in zip(block.conv1(grids), block.bn1, strict=True)]
    h = [bn(x, m) for x, m in zip(block.conv2(h), block.bn2, strict=True)]
    short = [bn(F.conv2d(x, d[0].weight, stride=2), d[1]) for x, d in zip(grids, block.downsample, strict=True)]
    out = block(grids)
    for got, a, b in zip(out, h, short, strict=True):
        assert_close_relative(got, (a + b).clamp_min(0), 1e-12)


def test_ycbcr_exchange_reads_both_paths():
    block = YCbCrExchangeBlock(8, 4, 8, 4).eval()
    y, c = torch.randn(1, 8, 6, 6, requires_grad=True), torch.randn(1, 4, 3, 3, requires_grad=True)
    y_out, c_out = block(y, c)
    assert y_out.shape == (1, 8, 6, 6) and c_out.shape == (1, 4, 3, 3)
    # The chroma output depends on the luma input and the luma output on the chroma input.
    (g_y,) = torch.autograd.grad(c_out.sum(), y, retain_graph=True)
    (g_c,) = torch.autograd.grad(y_out.sum(), c)
    assert g_y.abs().sum() > 0 and g_c.abs().sum() > 0


def test_as_ycbcr_pair_forms():
    y, c = torch.randn(2, 64, 5, 7), torch.randn(2, 128, 3, 4)
    Batch = namedtuple("Batch", "y cbcr labels")
    for form in ((y, c), [y, c], Batch(y, c, None)):
        got = as_ycbcr_pair(form)
        assert got[0] is y and got[1] is c
    assert as_ycbcr_pair(y, c)[1] is c
    with pytest.raises(ValueError, match="4:2:0"):
        as_ycbcr_pair(y, torch.randn(2, 128, 5, 7))
    with pytest.raises(TypeError, match="cbcr"):
        as_ycbcr_pair(y)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        as_ycbcr_pair(y[0], c[0])


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="one entry per grid"):
        MultigridConv2d((4, 2), (4,))
    with pytest.raises(TypeError, match="in_channels"):
        MultigridConv2d(4, (4,))
    with pytest.raises(ValueError, match="pool"):
        MultigridConv2d((4,), (4,), pool="median")
    layer = MultigridConv2d((4, 2), (4, 2))
    with pytest.raises(ValueError, match="expects 2 grids"):
        layer([torch.randn(1, 4, 8, 8)])
    with pytest.raises(ValueError, match="half of grid 0"):
        layer([torch.randn(1, 4, 8, 8), torch.randn(1, 2, 8, 8)])
    with pytest.raises(ValueError, match="grid 1 must be"):
        layer([torch.randn(1, 4, 8, 8), torch.randn(1, 3, 4, 4)])
    with pytest.raises(TypeError, match="sequence"):
        layer(torch.randn(1, 4, 8, 8))
