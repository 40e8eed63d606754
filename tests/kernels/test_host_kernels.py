"""The CUDA kernels' own source run on the CPU (g++, 256 OS threads per block, a barrier for __syncthreads).

This executes spectral_product.cu itself, with the arguments packed as for the GPU launch,
against the complex-einsum definition; what stays unchecked without a GPU is listed in
docs/kernels.md (PTX half conversions, the GPU memory model, speed).
"""

from __future__ import annotations

import pytest
import torch

from freqnets.kernels import cupy_backend
from freqnets.kernels.operands import product_operands
from freqnets.layers import BandLimitedConv2d
from tests.conftest import assert_close_relative
from tests.kernels import host_emulation
from tests.kernels.test_layer_backends import assert_same_forward_backward
from tests.kernels.test_products import PRODUCTS, SHAPES, _operands, numpy_product
from tests.layers.test_band_limited_conv import CONV2D_CONFIGS

pytestmark = pytest.mark.skipif(host_emulation.compiler() is None, reason="needs g++ (C++20)")

TOLERANCE = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 1e-6, torch.float64: 1e-14}


def _host(product, first, second, batch, groups, gauss, max_grid=2**31 - 1):
    ops = product_operands(product, first, second, batch, groups)
    ops.out.fill_(float("nan"))  # every element must be written by some thread
    return host_emulation.host_product(ops, gauss, max_grid)


@pytest.mark.parametrize("gauss", [False, True], ids=["4mult", "gauss"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("product", PRODUCTS)
def test_kernel_source_float32(product, shape, gauss):
    batch, groups = shape[0], shape[3]
    first, second = _operands(product, *shape, torch.float32)
    out = _host(product, first, second, batch, groups, gauss)
    assert not out.isnan().any()
    assert_close_relative(out, numpy_product(product, first, second, batch, groups), TOLERANCE[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("product", PRODUCTS)
def test_kernel_source_other_dtypes(product, dtype):
    shape = SHAPES[4]
    batch, groups = shape[0], shape[3]
    first, second = _operands(product, *shape, dtype)
    for gauss in (False, True):
        out = _host(product, first, second, batch, groups, gauss)
        assert out.dtype == dtype and not out.isnan().any()
        expected = numpy_product(product, first.double(), second.double(), batch, groups)
        assert_close_relative(out, expected, TOLERANCE[dtype])


def test_grid_stride_loop_with_a_small_grid():
    first, second = _operands("grad_input", 40, 20, 36, 2, 3, torch.float32)
    out = _host("grad_input", first, second, 40, 2, True, max_grid=5)
    assert_close_relative(out, numpy_product("grad_input", first, second, 40, 2), 1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_output_rounding_is_round_to_nearest_even(dtype):
    # real operands, one channel: each output is one exact float32 product, rounded once by the kernel's store
    n = 1024
    x = torch.zeros(2, 1, n, dtype=dtype)
    w = torch.zeros(2, 1, 1, dtype=dtype)
    x[0] = torch.randn(n).mul(torch.logspace(-6, 4, n)).to(dtype)  # half's subnormals up to large values
    w[0] = torch.tensor(1.3).to(dtype)
    out = _host("forward", x, w, n, 1, False)
    expected = (x[0].float() * w[0].float()).to(dtype)
    assert torch.equal(out[0].view(torch.int16), expected.view(torch.int16))


def test_host_half_conversions_match_torch():
    values = [0.0, -0.0, 1.0, 65504.0, 65519.0, 65520.0, 1e6, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1 + 2**-11, 1 + 3 * 2**-11]
    values += [float("inf"), -float("inf"), -1.5e-6]
    got = torch.tensor(host_emulation.half_round_trip(values))
    assert torch.equal(got, torch.tensor(values).half().float())
    assert host_emulation.half_round_trip([float("nan")])[0] != host_emulation.half_round_trip([float("nan")])[0]


@pytest.mark.parametrize("config", [CONV2D_CONFIGS[1]])
def test_layer_with_the_kernel_source_matches_the_torch_path(config, monkeypatch):
    import freqnets.layers.band_limited_conv as blc

    monkeypatch.setattr(blc, "check_backend", lambda backend: backend)
    monkeypatch.setattr(blc, "resolve_backend", lambda backend, device: "cupy" if backend == "cupy" else "torch")
    ran = []


    def launch(ops, gauss):
        ran.append(ops)
        return host_emulation.host_product(ops, gauss)

    monkeypatch.setattr(cupy_backend, "launch", launch)
    c_in, c_out, kernel, stride, padding, dilation, groups, mode, size = config
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    reference = BandLimitedConv2d(c_in, c_out, kernel, **kwargs, compress_rate=0.5)
    ours = BandLimitedConv2d(c_in, c_out, kernel, **kwargs, compress_rate=0.5, backend="cupy")
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, c_in, *size, requires_grad=True)
    assert_same_forward_backward(reference, ours, x, 1e-5)
    assert len(ran) == 3  # forward, input gradient, weight gradient
