"""backend= on the band-limited layers: choice, errors, and the CuPy code path run on CPU.

Without a GPU the CuPy path of the layer (flat planar spectra, group views, the custom ops
and their gradient formulas) is run on CPU with ``resolve_backend`` forced to ``"cupy"``:
the ops then compute with the torch path's products, or with the NumPy emulation of the
kernel, and the layer must match the torch path over the layer test grid.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import freqnets.layers.band_limited_conv as blc
from freqnets import convert_model, kernels
from freqnets.kernels import cupy_backend
from freqnets.layers import BandLimitedConv1d, BandLimitedConv2d, band_limited_conv2d
from freqnets.layers.band_limited_conv import _band_limited_conv2d, conv_padding
from tests.conftest import assert_close_relative
from tests.kernels.emulate import emulate_product
from tests.layers.test_band_limited_conv import CONV1D_CONFIGS, CONV2D_CONFIGS

needs_no_gpu = pytest.mark.skipif(kernels.is_available(), reason="checks the errors of a machine without CuPy/GPU")


def complex_launch(ops):
    """What a GPU launch does to ``ops`` (fill ``ops.out``), computed with a complex matmul of the same views."""

    def as_complex(planar, conj):
        z = torch.complex(planar[0], planar[1])
        return z.conj() if conj else z

    product = as_complex(ops.a, ops.conj_a) @ as_complex(ops.b, ops.conj_b)
    ops.c.copy_(torch.stack([product.real, product.imag]))
    return ops.out


@pytest.fixture
def cupy_path_on_cpu(monkeypatch):
    """Let backend='cupy' run on CPU tensors: the layer takes its CuPy path, the "launch" a complex matmul.

    Returns the list of launched products' operands.
    """
    launched = []
    monkeypatch.setattr(blc, "check_backend", lambda backend: backend)
    monkeypatch.setattr(blc, "resolve_backend", lambda backend, device: "cupy" if backend == "cupy" else "torch")
    monkeypatch.setattr(cupy_backend, "launch", lambda ops, gauss: launched.append(ops) or complex_launch(ops))
    return launched


@pytest.fixture
def emulated_kernel(monkeypatch, cupy_path_on_cpu):
    """...and the launches compute with the NumPy emulation of the CUDA kernel; returns the launches."""
    calls = []

    def launch(ops, gauss):
        calls.append(ops)
        return ops.out.copy_(emulate_product(ops, gauss))

    monkeypatch.setattr(cupy_backend, "launch", launch)
    return calls


def _pair(module_cls, config, rate, dtype=torch.float32):
    c_in, c_out, kernel, stride, padding, dilation, groups, mode, _ = config
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    torch_layer = module_cls(c_in, c_out, kernel, **kwargs, compress_rate=rate).to(dtype)
    cupy_layer = module_cls(c_in, c_out, kernel, **kwargs, compress_rate=rate, backend="cupy").to(dtype)
    cupy_layer.load_state_dict(torch_layer.state_dict())
    return torch_layer, cupy_layer


def assert_same_forward_backward(reference, ours, x, rtol):
    expected, out = reference(x), ours(x)
    assert_close_relative(out, expected, rtol)
    grad = torch.randn_like(expected)
    params = [p for p in (ours.weight, ours.bias) if p is not None]
    ref_params = [p for p in (reference.weight, reference.bias) if p is not None]
    ours_grads = torch.autograd.grad(out, (x, *params), grad)
    reference_grads = torch.autograd.grad(expected, (x, *ref_params), grad)
    for a, b in zip(ours_grads, reference_grads, strict=True):
        assert_close_relative(a, b, rtol)


@pytest.mark.parametrize("rate", [0.0, 0.5])
@pytest.mark.parametrize("config", CONV2D_CONFIGS)
def test_cupy_code_path_matches_the_torch_path_2d(config, rate, cupy_path_on_cpu):
    reference, ours = _pair(BandLimitedConv2d, config, rate, torch.float64)
    x = torch.randn(2, config[0], *config[-1], dtype=torch.float64, requires_grad=True)
    assert_same_forward_backward(reference, ours, x, 1e-10)


@pytest.mark.parametrize("config", CONV1D_CONFIGS[:4])
def test_cupy_code_path_matches_the_torch_path_1d(config, cupy_path_on_cpu):
    reference, ours = _pair(BandLimitedConv1d, config, 0.3, torch.float64)
    x = torch.randn(2, config[0], config[-1], dtype=torch.float64, requires_grad=True)
    assert_same_forward_backward(reference, ours, x, 1e-10)


@pytest.mark.parametrize("gauss", [False, True], ids=["4mult", "gauss"])
@pytest.mark.parametrize("config", [CONV2D_CONFIGS[1], CONV2D_CONFIGS[2], CONV2D_CONFIGS[6]])
def test_emulated_kernel_in_the_layer_matches_the_torch_path(config, gauss, emulated_kernel):
    c_in, c_out, kernel, stride, padding, dilation, groups, _, size = config
    reference = BandLimitedConv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
    edges = conv_padding(padding, reference.kernel_size, reference.stride, reference.dilation)
    args = (reference.weight, reference.bias, reference.stride, edges, reference.dilation, groups, 0.5)
    x = torch.randn(2, c_in, *size, requires_grad=True)
    expected = _band_limited_conv2d(x, *args)
    out = _band_limited_conv2d(x, *args, backend="cupy", gauss=gauss)  # Gauss's form is an argument
    assert_close_relative(out, expected, 1e-5)
    grad = torch.randn_like(out)
    for got, want in zip(
        torch.autograd.grad(out, (x, reference.weight), grad),
        torch.autograd.grad(expected, (x, reference.weight), grad),
        strict=True,
    ):
        assert_close_relative(got, want, 1e-5)
    assert len(emulated_kernel) == 3  # every product (forward, input and weight gradients) ran in the emulation


def test_gradcheck_of_the_cupy_code_path(cupy_path_on_cpu):
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)

    def fn(x, w):
        return _band_limited_conv2d(x, w, None, (2, 1), (1, 0, 2, 1), (1, 2), 2, 0.5, backend="cupy")

    assert torch.autograd.gradcheck(fn, (x, w), fast_mode=True)


def test_auto_is_torch_on_cpu_and_visible():
    conv = BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.5, backend="auto")
    assert conv.backend == "auto" and conv.resolved_backend == "torch"
    assert "backend='auto' (torch)" in repr(conv)
    assert "backend='torch'" in repr(BandLimitedConv2d(3, 4, 3))
    x = torch.randn(2, 3, 8, 8)
    plain = BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.5)
    plain.load_state_dict(conv.state_dict())
    assert torch.equal(conv(x), plain(x))


def test_convert_model_passes_the_backend():
    model = convert_model(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv1d(2, 2, 3)), backend="auto")
    assert model[0].backend == "auto" and model[2].backend == "auto"
    assert model.freqnets_conversion.backend == "auto"
    with pytest.raises(ValueError, match="backend must be one of torch, cupy, auto"):
        convert_model(nn.Conv2d(3, 4, 3), backend="cuda")


@needs_no_gpu
def test_cupy_requested_where_it_cannot_run_raises():
    with pytest.raises(kernels.BackendUnavailable, match="backend='cupy' needs") as error:
        BandLimitedConv2d(3, 4, 3, backend="cupy")
    assert isinstance(error.value, ValueError) and "use backend='torch' or 'auto'" in str(error.value)
    with pytest.raises(kernels.BackendUnavailable, match="backend='cupy' needs"):
        convert_model(nn.Conv2d(3, 4, 3), backend="cupy")
    with pytest.raises(kernels.BackendUnavailable, match="backend='cupy' needs"):
        band_limited_conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), backend="cupy")


def test_cupy_on_cpu_tensors_raises_never_falls_back(monkeypatch):
    monkeypatch.setattr(blc.cupy_backend, "unavailable_reason", lambda: None)  # as on a machine with a GPU
    conv = BandLimitedConv2d(3, 4, 3, backend="cupy")
    assert conv.resolved_backend == "cupy"
    with pytest.raises(kernels.BackendUnavailable, match="runs on CUDA tensors, got tensors on cpu"):
        conv(torch.randn(1, 3, 8, 8))


def test_cupy_code_path_under_torch_compile(cupy_path_on_cpu):
    # The products stay opaque custom ops inside the compiled graphs (the stand-in launch runs here).
    reference, ours = _pair(BandLimitedConv2d, CONV2D_CONFIGS[1], 0.5, torch.float32)
    x = torch.randn(2, 4, 13, 17, requires_grad=True)
    compiled = torch.compile(ours, backend="aot_eager")
    assert_same_forward_backward(reference, compiled, x, 1e-5)
    assert len(cupy_path_on_cpu) == 3  # forward, input gradient, weight gradient
