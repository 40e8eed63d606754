"""The CuPy kernels on a GPU against the torch path, forward and backward (skipped without CuPy and a GPU).

Each test checks :func:`freqnets.kernels.launch_count` so a pass proves the kernel ran, not a fallback.
"""

from __future__ import annotations

import pytest
import torch

from freqnets import kernels
from freqnets.layers import BandLimitedConv2d
from freqnets.layers.band_limited_conv import _band_limited_conv2d
from freqnets.layers.spectral_product import bl_product, reference_product
from tests.conftest import assert_close_relative
from tests.kernels.test_products import PRODUCTS, SHAPES, _operands, numpy_product
from tests.layers.test_band_limited_conv import CONV2D_CONFIGS, assert_same_layer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not kernels.is_available(), reason=f"CuPy backend unavailable: {kernels.unavailable_reason()}"),
]



def _layers(config, rate, dtype):
    c_in, c_out, kernel, stride, padding, dilation, groups, mode, _ = config
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    reference = BandLimitedConv2d(c_in, c_out, kernel, **kwargs, compress_rate=rate).to("cuda", dtype)
    ours = BandLimitedConv2d(c_in, c_out, kernel, **kwargs, compress_rate=rate, backend="cupy").to("cuda", dtype)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rate", [0.0, 0.5])
@pytest.mark.parametrize("config", CONV2D_CONFIGS)
def test_layer_grid_matches_the_torch_path(config, rate, dtype):
    reference, ours = _layers(config, rate, dtype)
    x = torch.randn(3, config[0], *config[-1], device="cuda", dtype=dtype, requires_grad=True)
    before = kernels.launch_count()
    assert_same_layer(ours, reference, x, rtol=1e-4 if dtype == torch.float32 else 1e-10)
    assert kernels.launch_count() - before == 3  # forward, input gradient, weight gradient


def test_gradcheck_on_gpu():
    x = torch.randn(2, 4, 7, 6, device="cuda", dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, device="cuda", dtype=torch.float64, requires_grad=True)

    def fn(x, w):
        return _band_limited_conv2d(x, w, None, (2, 1), (1, 0, 2, 1), (1, 2), 2, 0.5, backend="cupy")

    before = kernels.launch_count()
    assert torch.autograd.gradcheck(fn, (x, w))
    assert kernels.launch_count() > before


TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.mark.parametrize("gauss", [False, True], ids=["4mult", "gauss"])
@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("product", PRODUCTS)
def test_kernel_products_every_dtype(product, shape, dtype, gauss):
    batch, groups = shape[0], shape[3]
    first, second = (t.to("cuda", dtype) for t in _operands(product, *shape))
    before = kernels.launch_count()
    out = bl_product(product, first, second, batch, groups, gauss, "cupy")
    assert kernels.launch_count() == before + 1 and out.dtype == dtype
    # float32 accumulation of the rounded inputs: compare with float64 on the same rounded inputs
    expected = numpy_product(product, first.cpu().double(), second.cpu().double(), batch, groups)
    assert_close_relative(out, expected, TOLERANCE[dtype])


def test_kernel_runs_on_torchs_current_stream():
    first, second = (t.to("cuda", torch.float32) for t in _operands("forward", 33, 17, 35, 1, 64))
    expected = reference_product("forward", first, second, 33, 1)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = bl_product("forward", first, second, 33, 1, False, "cupy")
        out = out * 1.0  # queued behind the kernel on the same stream
    torch.cuda.current_stream().wait_stream(side)
    assert_close_relative(out, expected, 1e-5)


def test_no_batch_in_out_freq_intermediate():
    k, batch, c, o = 64, 64, 256, 256
    x = torch.randn(2, k, batch * c, device="cuda")
    w = torch.randn(2, k, o * c, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    y = bl_product("forward", x, w, batch, 1, False, "cupy")
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    assert peak <= 1.5 * y.numel() * y.element_size()  # the output only; B x C x O x K floats would be 2 GiB


def test_layer_under_torch_compile():
    reference, ours = _layers(CONV2D_CONFIGS[1], 0.5, torch.float32)
    x = torch.randn(2, 4, 13, 17, device="cuda", requires_grad=True)
    compiled = torch.compile(ours)
    before = kernels.launch_count()
    out = compiled(x)
    out.sum().backward()
    assert kernels.launch_count() - before == 3
    assert_close_relative(out, reference(x), 1e-4)


def test_auto_picks_cupy_on_cuda_tensors_and_torch_on_cpu():
    conv = BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.5, backend="auto")
    assert conv.resolved_backend == "torch"
    conv = conv.cuda()
    assert conv.resolved_backend == "cupy" and "backend='auto' (cupy)" in repr(conv)
    before = kernels.launch_count()
    conv(torch.randn(2, 3, 8, 8, device="cuda"))
    assert kernels.launch_count() == before + 1
    with pytest.raises(kernels.BackendUnavailable, match="runs on CUDA tensors"):
        BandLimitedConv2d(3, 4, 3, backend="cupy")(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("gauss", [False, True])
def test_layer_with_gauss_products(gauss):
    x = torch.randn(2, 4, 7, 6, device="cuda", dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, device="cuda", dtype=torch.float64, requires_grad=True)
    args = (None, (2, 1), (1, 0, 2, 1), (1, 2), 2, 0.5)
    before = kernels.launch_count()
    out = _band_limited_conv2d(x, w, *args, backend="cupy", gauss=gauss)
    assert kernels.launch_count() == before + 1
    assert_close_relative(out, _band_limited_conv2d(x, w, *args), 1e-10)


@pytest.mark.slow
def test_64bit_indexing_past_2_31_elements():
    # One kept frequency, a plane of 2**31 + 2**20 half-precision values: plane offsets pass 2**31.
    batch, c = 2**22 + 2**11, 2**9
    x = torch.randn(2, 1, batch * c, device="cuda", dtype=torch.float16)
    w = torch.randn(2, 1, 2 * c, device="cuda", dtype=torch.float16)
    assert x[0].numel() > 2**31
    y = bl_product("forward", x, w, batch, 1, False, "cupy")
    rows = torch.tensor([0, 1, batch // 2, batch - 2, batch - 1], device="cuda")
    xs = x.view(2, batch, c)[:, rows].double().reshape(2, 1, -1)
    expected = reference_product("forward", xs, w.double(), len(rows), 1)
    got = y.view(2, batch, 2)[:, rows].double().reshape(2, 1, -1)
    assert_close_relative(got, expected, 2e-3)


@pytest.mark.parametrize("product", PRODUCTS)
def test_opcheck_on_cuda(product):
    first, second = (t.to("cuda").requires_grad_() for t in _operands(product, 3, 6, 4, 2, 5))
    torch.library.opcheck(bl_product, (product, first, second, 3, 2, False, "cupy"))
