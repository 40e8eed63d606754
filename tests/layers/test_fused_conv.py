"""Issue 13: an eager small-grid layer call with grad on is one autograd node (``_FusedKroneckerConv``). It must
give what the path of separate nodes gives (the one traces take, forced here with ``FUSE_EAGER = False``)."""

from __future__ import annotations

import pytest
import torch

import freqnets.layers.band_limited_conv as blc
from freqnets.layers import BandLimitedConv1d, BandLimitedConv2d
from tests.conftest import assert_close_relative


def _both_paths(layer, x, grad_seed=1, monkeypatch=None):
    """``(y, grad x, grad weight, grad bias, names of y's autograd nodes)`` fused and unfused, for one output gradient."""
    results = []
    for fuse in (True, False):
        monkeypatch.setattr(blc, "FUSE_EAGER", fuse)
        y = layer(x)
        grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=y.dtype)
        wrt = [t for t in (x, layer.weight, layer.bias) if t is not None and t.requires_grad]
        results.append((y, *torch.autograd.grad(y, wrt, grad), _node_names(y)))
    return results


def _node_names(y: torch.Tensor) -> list[str]:
    """Names of the autograd nodes ``y`` depends on."""
    names, stack = [], [y.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            names.append(type(node).__name__)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def _assert_same(fused, unfused, rtol):
    assert "_FusedKroneckerConvBackward" in fused[-1], fused[-1]
    assert "_FusedKroneckerConvBackward" not in unfused[-1]
    for got, want in zip(fused[:-1], unfused[:-1], strict=True):
        assert got.dtype == want.dtype
        assert_close_relative(got, want, rtol)


CASES = [
    dict(),
    dict(groups=2),
    dict(stride=2),
    dict(dilation=2, padding=2),
    dict(padding="same"),
    dict(padding=0, bias=False),
    dict(padding_mode="reflect"),
    dict(padding_mode="circular", stride=(2, 1)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rate", [0.0, 0.5])
@pytest.mark.parametrize("options", CASES, ids=[str(c) for c in CASES])
def test_fused_call_equals_separate_nodes(options, rate, dtype, monkeypatch):
    options = {"padding": 1, **options}
    layer = BandLimitedConv2d(4, 6, 3, compress_rate=rate, dtype=dtype, **options)
    x = torch.randn(2, 4, 7, 6, dtype=dtype, requires_grad=True)
    fused, unfused = _both_paths(layer, x, monkeypatch=monkeypatch)
    _assert_same(fused, unfused, 1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_fused_1d_layer(rate, monkeypatch):
    layer = BandLimitedConv1d(3, 5, 5, padding=2, stride=2, compress_rate=rate)
    x = torch.randn(2, 3, 17, requires_grad=True)
    fused, unfused = _both_paths(layer, x, monkeypatch=monkeypatch)
    _assert_same(fused, unfused, 1e-6)


def test_fused_channels_last_and_unbatched(monkeypatch):
    layer = BandLimitedConv2d(4, 4, 3, padding=1, compress_rate=0.5)
    x = torch.randn(2, 4, 7, 7).to(memory_format=torch.channels_last).requires_grad_()
    _assert_same(*_both_paths(layer, x, monkeypatch=monkeypatch), 1e-6)
    x = torch.randn(4, 7, 7, requires_grad=True)
    _assert_same(*_both_paths(layer, x, monkeypatch=monkeypatch), 1e-6)


def test_fused_under_bf16_autocast(monkeypatch):
    layer = BandLimitedConv2d(4, 4, 3, padding=1, compress_rate=0.5)
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    results = []
    for fuse in (True, False):
        monkeypatch.setattr(blc, "FUSE_EAGER", fuse)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(x)
        assert y.dtype == torch.bfloat16
        results.append((y, *torch.autograd.grad(y.float().square().sum(), (x, layer.weight)), _node_names(y)))
    _assert_same(*results, 1e-6)
    # a backward called inside autocast still works (its transforms stay float32)
    monkeypatch.setattr(blc, "FUSE_EAGER", True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grads = torch.autograd.grad(layer(x).float().square().sum(), (x, layer.weight))
    for got, want in zip(grads, results[0][1:3], strict=True):
        assert got.dtype == torch.float32
        assert_close_relative(got, want, 1e-6)


def test_fused_input_only_or_weight_only_grads(monkeypatch):
    layer = BandLimitedConv2d(4, 4, 3, padding=1, compress_rate=0.5)
    x = torch.randn(2, 4, 7, 7)  # no grad for x: only the parameters'
    _assert_same(*_both_paths(layer, x, monkeypatch=monkeypatch), 1e-6)
    layer.requires_grad_(False)
    x.requires_grad_()
    _assert_same(*_both_paths(layer, x, monkeypatch=monkeypatch), 1e-6)


@pytest.mark.parametrize("groups", [1, 2])
def test_fused_double_backward(groups, monkeypatch):
    # gradgradcheck against finite differences in float64, and the double backward equals the separate nodes'.
    monkeypatch.setattr(blc, "FUSE_EAGER", True)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2 // groups, 3, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def conv(x, w, bias):
        y = blc.band_limited_conv2d(x, w, bias, padding=1, groups=groups, compress_rate=0.3)
        assert type(y.grad_fn).__name__ == "_FusedKroneckerConvBackward"
        return y

    assert torch.autograd.gradgradcheck(conv, (x, w, bias))

    def second_order():
        y = blc.band_limited_conv2d(x, w, bias, padding=1, groups=groups, compress_rate=0.3)
        gx, gw = torch.autograd.grad((y**2).sum(), (x, w), create_graph=True)
        return torch.autograd.grad((gx**3).sum() + (gw * gw.detach()).sum(), (x, w, bias), allow_unused=True)

    fused = second_order()
    monkeypatch.setattr(blc, "FUSE_EAGER", False)
    for got, want in zip(fused, second_order(), strict=True):
        assert (got is None) == (want is None)
        if got is not None:
            assert_close_relative(got, want, 1e-12)


def test_fused_graph_is_one_node(monkeypatch):
    monkeypatch.setattr(blc, "FUSE_EAGER", True)
    layer = BandLimitedConv2d(4, 4, 3, padding=1, compress_rate=0.5)
    y = layer(torch.randn(2, 4, 7, 7, requires_grad=True))
    assert sorted(_node_names(y)) == sorted(["_FusedKroneckerConvBackward"] + ["AccumulateGrad"] * 3)


def test_fused_saves_no_more_than_separate_nodes(monkeypatch):
    x = torch.randn(4, 8, 7, 7, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    saved = {}
    for fuse in (True, False):
        monkeypatch.setattr(blc, "FUSE_EAGER", fuse)
        tensors: list[torch.Tensor] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, store=tensors: store.append(t) or t, lambda t: t):
            y = blc._band_limited_conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0.5)
        assert (type(y.grad_fn).__name__ == "_FusedKroneckerConvBackward") == fuse
        assert not any(t.data_ptr() in (x.data_ptr(), w.data_ptr()) for t in tensors)
        saved[fuse] = sum(t.numel() * t.element_size() for t in tensors if t.requires_grad)
        assert all(t.shape[0] == 2 for t in tensors if t.requires_grad)  # planar spectra only
    assert 0 < saved[True] <= saved[False]


def test_no_fusion_without_grad_or_under_traces(monkeypatch):
    monkeypatch.setattr(blc, "FUSE_EAGER", True)
    layer = BandLimitedConv2d(4, 4, 3, padding=1, compress_rate=0.5)
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    calls = []
    original = blc._FusedKroneckerConv.forward
    monkeypatch.setattr(blc._FusedKroneckerConv, "forward", staticmethod(lambda *a: calls.append(1) or original(*a)))
    with torch.no_grad():
        layer(x)
    torch.func.grad(lambda x: layer(x).sum())(x)
    traced = torch.jit.trace(layer, x.detach(), check_trace=False)
    assert calls == []
    assert_close_relative(traced(x.detach()), layer(x).detach(), 1e-6)
    assert calls == [1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("options", CASES, ids=[str(c) for c in CASES])
def test_inference_call_equals_separate_nodes(options, dtype, monkeypatch):
    # With grad mode off a one-group small-grid call runs the fused forward's GEMMs without a node (other calls
    # the separate nodes' forward): the same output as the separate nodes, and as F.conv2d at rate 0.
    options = {"padding": 1, **options}
    calls = []
    original = blc._gauss_forward
    monkeypatch.setattr(blc, "_gauss_forward", lambda *a: calls.append(1) or original(*a))
    for rate in (0.0, 0.5):
        layer = BandLimitedConv2d(4, 6, 3, compress_rate=rate, dtype=dtype, **options)
        reference = torch.nn.Conv2d(4, 6, 3, dtype=dtype, **options)
        layer.load_state_dict(reference.state_dict())
        x = torch.randn(2, 4, 7, 6, dtype=dtype)
        outputs = []
        for fuse in (True, False):
            monkeypatch.setattr(blc, "FUSE_EAGER", fuse)
            with torch.no_grad():
                outputs.append(layer(x))
        assert_close_relative(outputs[0], outputs[1], 1e-6 if dtype == torch.float32 else 1e-12)
        if rate == 0.0:
            assert_close_relative(outputs[0], reference(x).detach(), 1e-5 if dtype == torch.float32 else 1e-12)
    assert len(calls) == (2 if options.get("groups", 1) == 1 else 0)


def test_fused_weight_grad_is_accumulated_contiguous(monkeypatch):
    # The fused backward returns grad_w transposed in memory; the parameter's .grad is still laid out as the
    # parameter, and equals nn.Conv2d's at rate 0 over two accumulated steps.
    monkeypatch.setattr(blc, "FUSE_EAGER", True)
    layer = BandLimitedConv2d(4, 6, 3, padding=1)
    reference = torch.nn.Conv2d(4, 6, 3, padding=1)
    layer.load_state_dict(reference.state_dict())
    for _ in range(2):
        x = torch.randn(2, 4, 7, 7)
        grad = torch.randn(2, 6, 7, 7)
        layer(x).backward(grad)
        reference(x).backward(grad)
    assert layer.weight.grad.is_contiguous()
    assert_close_relative(layer.weight.grad, reference.weight.grad, 1e-5)
    assert_close_relative(layer.bias.grad, reference.bias.grad, 1e-6)
