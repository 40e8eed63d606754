"""The band-limited layer's eager fast path (issue 13's host cost): eager twins of its autograd functions, the
per-call setup cache, and the routes traces and torch.func transforms still take."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile

import freqnets.layers.band_limited_conv as blc
import freqnets.layers.spectral_product as spectral_product
from freqnets import _autograd
from freqnets.kernels import cupy_backend
from freqnets.layers import BandLimitedConv2d
from freqnets.layers.spectral_plan import _Kronecker, _kronecker, kronecker_analysis, kronecker_synthesis
from freqnets.layers.spectral_product import BandLimitedProduct, band_limited_product
from tests.conftest import assert_close_relative
from tests.kernels.test_layer_backends import complex_launch


def _layer_pair(rate: float, channels: int = 8):
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=True).double()
    layer = BandLimitedConv2d(channels, channels, 3, padding=1, compress_rate=rate).double()
    layer.load_state_dict(conv.state_dict())
    return conv, layer


@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_eager_step_binds_no_signatures_and_matches_conv2d(rate, monkeypatch):
    # Function.apply of a setup_context Function calls inspect.signature on every call: the eager path must not.
    conv, layer = _layer_pair(rate)
    x = torch.randn(2, 8, 7, 7, dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()  # builds plans and matrices (which may inspect) before the check

    def no_binding(*args, **kwargs):
        raise AssertionError("inspect.signature called on the eager path")

    monkeypatch.setattr(inspect, "signature", no_binding)
    out = layer(x)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, layer.weight, layer.bias), grad)
    monkeypatch.undo()
    if rate == 0.0:  # at rate 0 the layer is nn.Conv2d
        expected = conv(x)
        assert_close_relative(out, expected, 1e-10)
        for got, want in zip(grads, torch.autograd.grad(expected, (x, conv.weight, conv.bias), grad), strict=True):
            assert_close_relative(got, want, 1e-10)


def test_eager_graph_is_one_node_per_transform_and_product(monkeypatch):
    # the path of separate nodes (eager calls with grad now fuse them: tests/layers/test_fused_conv.py)
    monkeypatch.setattr(blc, "FUSE_EAGER", False)
    _, layer = _layer_pair(0.5)
    x = torch.randn(2, 8, 7, 7, dtype=torch.float64, requires_grad=True)
    names, stack = [], [layer(x).grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            names.append(type(node).__name__)
            stack.extend(next_node for next_node, _ in node.next_functions)
    # synthesis <- product <- (input analysis, filter analysis), the bias add, and the leaves' accumulators
    assert sorted(names) == sorted(
        ["AddBackward0", "_KroneckerEagerBackward", "BandLimitedProductEagerBackward"]
        + ["_KroneckerEagerBackward"] * 2
        + ["AccumulateGrad"] * 3
        + ["ViewBackward0"]  # the bias viewed (1, O, 1, 1)
    )


def test_eager_step_makes_at_most_half_the_aten_ops_of_the_first_version():
    # 297 aten ops per forward + backward before issue 13 (8 channels, 7x7, rate 0.5, no bias).
    layer = BandLimitedConv2d(8, 8, 3, padding=1, bias=False, compress_rate=0.5)
    x = torch.randn(2, 8, 7, 7, requires_grad=True)
    grad = torch.randn(2, 8, 7, 7)
    layer(x).backward(grad)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        layer(x).backward(grad)
    ops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
    assert ops <= 297 // 2


@pytest.mark.parametrize("product", ["forward", "grad_input", "grad_weight"])
def test_product_routes_agree_exactly(product):
    batch, groups, k = 3, 1, 5
    first = torch.randn(2, k, batch * 4, dtype=torch.float64, requires_grad=True)
    second_size = {"forward": 6 * 4, "grad_input": 4 * 6, "grad_weight": batch * 6}[product]
    second = torch.randn(2, k, second_size, dtype=torch.float64, requires_grad=True)
    eager = band_limited_product(product, first, second, batch, groups, False, "torch")
    general = BandLimitedProduct.apply(product, first, second, batch, groups, False, "torch")
    assert type(eager.grad_fn).__name__ == "BandLimitedProductEagerBackward"
    assert type(general.grad_fn).__name__ == "BandLimitedProductBackward"
    assert torch.equal(eager, general)
    with torch.no_grad():  # nothing to record: the forward alone
        assert torch.equal(band_limited_product(product, first, second, batch, groups, False, "torch"), eager)
    grad = torch.randn_like(eager)
    for a, b in zip(
        torch.autograd.grad(eager, (first, second), grad, create_graph=True),
        torch.autograd.grad(general, (first, second), grad, create_graph=True),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert torch.autograd.gradgradcheck(
        lambda a, b: band_limited_product(product, a, b, batch, groups, False, "torch"), (first, second)
    )


def test_kronecker_routes_agree_and_are_adjoint():
    matrix = torch.randn(10, 12, dtype=torch.float64)
    t = torch.randn(3, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    eager = kronecker_analysis(t, matrix)
    general = _Kronecker.apply(t, matrix, "analysis", (2, 5, 6))
    assert torch.equal(eager, general)
    assert_close_relative(eager, (matrix @ t.reshape(6, 12).T).view(2, 5, 6), 1e-12)
    planar = torch.randn(2, 5, 6, dtype=torch.float64)
    # <analysis(t), planar> == <t, synthesis(planar)>: each direction's backward is the other direction
    assert_close_relative((eager * planar).sum(), (t * kronecker_synthesis(planar, matrix, t.shape)).sum(), 1e-12)
    assert torch.autograd.gradgradcheck(lambda a: _kronecker(a, matrix, "analysis", (2, 5, 6)), (t,))
    y = planar.clone().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda a: kronecker_synthesis(a, matrix, (3, 2, 3, 4)), (y,))


def test_runs_eagerly_is_false_under_traces_modes_and_transforms():
    from torch._subclasses.fake_tensor import FakeTensorMode

    assert _autograd.runs_eagerly()
    seen = []

    def record(x):
        seen.append(_autograd.runs_eagerly())
        return x.sin().sum()

    torch.func.grad(record)(torch.randn(3))
    torch.func.vmap(record)(torch.randn(2, 3))
    with FakeTensorMode():
        seen.append(_autograd.runs_eagerly())
    with torch.device("cpu"):
        seen.append(_autograd.runs_eagerly())
    with pytest.warns(Warning):  # the trace says its output does not depend on the input's values
        torch.jit.trace(lambda x: torch.tensor(float(record(x))), torch.randn(3), check_trace=False)
    torch.compile(record, backend="eager", fullgraph=True)(torch.randn(3))
    assert seen == [False] * 6


def test_setup_cache_follows_the_kronecker_setting(monkeypatch):
    import freqnets.layers.spectral_plan as spectral_plan

    x = torch.randn(2, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    args = (x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, 0.5)
    kron = blc._band_limited_conv2d(*args)
    assert type(kron.grad_fn).__name__ == "_FusedKroneckerConvBackward"  # the whole call, on 2D-DFT matrices
    monkeypatch.setattr(spectral_plan, "KRONECKER_ADVANTAGE", 0.0)  # the separable transforms
    separable = blc._band_limited_conv2d(*args)
    assert "Kronecker" not in type(separable.grad_fn).__name__
    assert_close_relative(separable, kron, 1e-10)
    key = ((9, 9), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 0.5, "auto", x.device, x.dtype)
    assert blc._conv_setup(*key, 0.0).x_matrix is None
    assert blc._conv_setup(*key, spectral_plan.KRONECKER_ADVANTAGE).y_matrix is None


@pytest.fixture
def cupy_path_on_cpu(monkeypatch):
    """backend='cupy' on CPU tensors with a stand-in launch; the custom op itself refuses to run."""
    launched = []
    monkeypatch.setattr(blc, "check_backend", lambda backend: backend)
    monkeypatch.setattr(blc, "resolve_backend", lambda backend, device: "cupy" if backend == "cupy" else "torch")
    monkeypatch.setattr(cupy_backend, "launch", lambda ops, gauss: launched.append(ops) or complex_launch(ops))
    return launched


def test_eager_cupy_products_launch_without_the_op(cupy_path_on_cpu, monkeypatch):
    def no_op(*args, **kwargs):
        raise AssertionError("the custom op was dispatched in an eager call")

    monkeypatch.setattr(spectral_product, "bl_product", no_op)
    reference = BandLimitedConv2d(4, 6, 3, padding=1, compress_rate=0.5).double()
    ours = BandLimitedConv2d(4, 6, 3, padding=1, compress_rate=0.5, backend="cupy").double()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    out, expected = ours(x), reference(x)
    assert_close_relative(out, expected, 1e-10)
    grad = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, x, grad), torch.autograd.grad(expected, x, grad), strict=True):
        assert_close_relative(a, b, 1e-10)
    assert len(cupy_path_on_cpu) == 3  # forward, input gradient, weight gradient
    assert all(ops.a.dtype == torch.float64 and ops.out.shape[0] == 2 for ops in cupy_path_on_cpu)


def test_compiled_cupy_products_stay_custom_ops(cupy_path_on_cpu):
    graphs = []

    def backend(gm, example_inputs):
        graphs.extend(str(m.graph) for m in gm.modules() if isinstance(m, torch.fx.GraphModule))
        return gm.forward

    layer = BandLimitedConv2d(4, 6, 3, padding=1, compress_rate=0.5, backend="cupy")
    reference = BandLimitedConv2d(4, 6, 3, padding=1, compress_rate=0.5)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 9, 9)
    out = torch.compile(layer, backend=backend)(x)
    assert any("bl_product" in graph for graph in graphs)  # the op is in the trace, the kernel behind it
    assert len(cupy_path_on_cpu) == 1
    assert_close_relative(out, reference(x), 1e-5)
