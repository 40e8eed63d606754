"""Band-limited convolution against F.conv1d/F.conv2d (rate 0) and a numpy FFT reference (rate > 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from freqnets.layers import BandLimitedConv1d, BandLimitedConv2d
from freqnets.layers.band_limited_conv import _band_limited_conv2d, band_limited_conv2d, conv_geometry
from freqnets.layers.spectral_plan import make_plan, next_fast_length
from freqnets.transforms import rfft_kept_mask
from tests.conftest import assert_close_relative

CONV2D_CONFIGS = [
    # (C_in, C_out, kernel, stride, padding, dilation, groups, padding_mode, input H x W)
    (3, 8, 3, 1, 1, 1, 1, "zeros", (16, 16)),
    (4, 6, (3, 5), (2, 1), (1, 2), (1, 2), 2, "zeros", (13, 17)),
    (4, 4, 3, 2, 1, 1, 4, "reflect", (15, 9)),
    (2, 5, 5, 1, "same", 1, 1, "replicate", (11, 20)),
    (3, 3, 4, 3, 0, 1, 1, "zeros", (19, 14)),
    (2, 4, 3, 1, "valid", 2, 2, "circular", (12, 12)),
    (6, 3, 1, 1, 0, 1, 3, "zeros", (7, 5)),
    (2, 2, (1, 7), 1, (0, 3), 1, 1, "circular", (9, 31)),
    (3, 4, 2, 1, "same", 1, 1, "zeros", (8, 8)),
]


def assert_same_layer(ours, reference, x, rtol=1e-4):
    """Outputs and the gradients of input, weight and bias agree with the reference layer."""
    expected, out = reference(x), ours(x)
    assert_close_relative(out, expected, rtol)
    grad = torch.randn_like(expected)
    ours_grads = torch.autograd.grad(out, (x, ours.weight, ours.bias), grad)
    reference_grads = torch.autograd.grad(expected, (x, reference.weight, reference.bias), grad)
    for a, b in zip(ours_grads, reference_grads, strict=True):
        assert_close_relative(a, b, rtol)


def _pair(module_cls, reference_cls, config, dtype):
    c_in, c_out, kernel, stride, padding, dilation, groups, mode, _ = config
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    reference = reference_cls(c_in, c_out, kernel, **kwargs).to(dtype)
    ours = module_cls(c_in, c_out, kernel, **kwargs, compress_rate=0.0).to(dtype)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("config", CONV2D_CONFIGS)
def test_conv2d_rate_zero_matches_torch_forward_and_backward(config, batch, device):
    reference, ours = _pair(BandLimitedConv2d, nn.Conv2d, config, torch.float32)
    reference, ours = reference.to(device), ours.to(device)
    x = torch.randn(batch, config[0], *config[-1], device=device, requires_grad=True)
    assert_same_layer(ours, reference, x)


@pytest.mark.parametrize("route", ["matmul", "fft"])
@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_gradcheck_both_routes(route, rate):
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)

    def fn(x, w, b):
        return _band_limited_conv2d(x, w, b, (2, 1), (1, 0, 2, 1), (1, 2), 2, rate, route=route)

    assert torch.autograd.gradcheck(fn, (x, w, b))


@pytest.mark.parametrize("route", ["matmul", "fft"])
def test_routes_agree(route):
    x = torch.randn(2, 3, 20, 24, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    # Padded to 24 x 28, both 7-smooth, so both routes use the same FFT grid and kept set.
    out = _band_limited_conv2d(x, w, None, (1, 1), (1, 3, 1, 3), (1, 1), 1, 0.4, route=route)
    reference = numpy_band_limited(x, w, (1, 3, 1, 3), (1, 1), (1, 1), 0.4, make_plan((24, 28), 0.4, route).fft_size)
    assert_close_relative(out, reference, 1e-10)


def numpy_band_limited(x, w, padding, stride, dilation, rate, fft_size):
    """The definition, with numpy's FFT: correlate the band-limited input and filter on the FFT grid."""
    top, bottom, left, right = padding
    n_h, n_w = fft_size
    xp = np.zeros((*x.shape[:2], n_h, n_w))
    xp[..., top : top + x.shape[2], left : left + x.shape[3]] = x.numpy()
    kh, kw = w.shape[-2:]
    wd = np.zeros((*w.shape[:2], n_h, n_w))
    wd[..., : dilation[0] * (kh - 1) + 1 : dilation[0], : dilation[1] * (kw - 1) + 1 : dilation[1]] = w.numpy()
    mask = rfft_kept_mask((n_h, n_w), rate).numpy()
    xs = np.fft.rfft2(xp) * mask
    ws = np.fft.rfft2(wd) * mask
    ys = np.einsum("bcij,ocij->boij", xs, ws.conj())
    full = np.fft.irfft2(ys, s=(n_h, n_w))
    length_h, length_w = top + x.shape[2] + bottom, left + x.shape[3] + right
    out_h = (length_h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (length_w - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return torch.from_numpy(full[..., : out_h * stride[0] : stride[0], : out_w * stride[1] : stride[1]].copy())


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("stride,dilation", [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((1, 2), (2, 1))])
def test_rate_matches_the_numpy_definition(rate, stride, dilation):
    x = torch.randn(2, 3, 15, 18, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    padding = (1, 1, 2, 0)
    out = _band_limited_conv2d(x, w, None, stride, padding, dilation, 1, rate)
    geometry = conv_geometry((15, 18), (3, 3), stride, dilation, padding)
    fft_size = make_plan(geometry.padded_size, rate).fft_size
    assert_close_relative(out, numpy_band_limited(x, w, padding, stride, dilation, rate, fft_size), 1e-10)


CONV1D_CONFIGS = [
    (3, 4, 5, 1, 2, 1, 1, "zeros", 50),
    (4, 4, 3, 2, 1, 2, 2, "reflect", 31),
    (2, 6, 7, 3, "valid", 1, 2, "zeros", 40),
    (2, 2, 4, 1, "same", 1, 1, "circular", 17),
    (4, 4, 129, 1, 64, 1, 1, "zeros", 300),
]


@pytest.mark.parametrize("config", CONV1D_CONFIGS)
def test_conv1d_rate_zero_matches_torch(config):
    reference, ours = _pair(BandLimitedConv1d, nn.Conv1d, config, torch.float32)
    x = torch.randn(2, config[0], config[-1], requires_grad=True)
    assert_same_layer(ours, reference, x)


def test_conv1d_gradcheck_at_a_rate():
    conv = BandLimitedConv1d(2, 3, 5, stride=2, padding=2, compress_rate=0.5).double()
    x = torch.randn(2, 2, 23, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))


def test_unbatched_and_state_dict_both_ways():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    ours = BandLimitedConv2d(3, 5, 3, padding=1, compress_rate=0.3)
    ours.load_state_dict(conv.state_dict())
    conv.load_state_dict(ours.state_dict(), strict=False)  # the rate entry is unexpected in a plain conv
    assert set(ours.state_dict()) == {"weight", "bias", "_extra_state"}
    x = torch.randn(3, 10, 12)
    assert ours(x).shape == (5, 10, 12)
    assert torch.allclose(ours(x), ours(x[None])[0])


def test_saves_only_the_compressed_spectra():
    x = torch.randn(8, 16, 32, 32, requires_grad=True)
    w = torch.randn(16, 16, 3, 3, requires_grad=True)
    saved = {}
    for rate in (0.0, 0.5):
        tensors: list[torch.Tensor] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, store=tensors: store.append(t) or t, lambda t: t):
            _band_limited_conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, rate)
        tensors = [t for t in tensors if t.requires_grad]  # the rest are the plan's cached DFT matrices
        assert not any(t.data_ptr() == x.data_ptr() for t in tensors)
        assert all(t.shape[0] == 2 for t in tensors)  # planar (real, imaginary) spectra only
        saved[rate] = sum(t.numel() * t.element_size() for t in tensors)
    assert saved[0.5] <= 0.6 * saved[0.0]


def test_fft_sizes():
    assert [next_fast_length(n) for n in (1, 11, 34, 97, 4224)] == [1, 12, 35, 98, 4320]
    assert make_plan((34, 34), 0.0).fft_size == (34, 34)  # the matrix route needs no smooth size
    assert make_plan((1, 4224), 0.0).fft_size == (1, 4320)
    plan = make_plan((34, 34), 0.5)
    assert abs(plan.kept_fraction - 0.5) < 0.02


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"compress_rate must be in \[0, 1\)"):
        BandLimitedConv2d(3, 3, 3, compress_rate=1.0)
    with pytest.raises(ValueError, match="backend must be one of torch, cupy, auto, got 'triton'"):
        BandLimitedConv2d(3, 3, 3, backend="triton")
    conv = BandLimitedConv2d(3, 4, 3)
    with pytest.raises(ValueError, match="expects 3 input channels, got 2"):
        conv(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="expects input of 4 dims"):
        conv(torch.randn(8, 8))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        conv(torch.randn(1, 3, 2, 2))
    with pytest.raises(TypeError, match="floating"):
        conv(torch.ones(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="route must be one of"):
        band_limited_conv2d(torch.randn(1, 1, 4, 4), torch.randn(1, 1, 3, 3), route="gpu")


@pytest.mark.parametrize("kronecker", [0.0, float("inf")], ids=["separable", "kronecker"])
@pytest.mark.parametrize("route", ["matmul", "fft"])
@pytest.mark.parametrize("rate", [0.0, 0.6])
def test_every_spectral_path_matches_the_definition(kronecker, route, rate, monkeypatch):
    import freqnets.layers.spectral_plan as spectral_plan

    monkeypatch.setattr(spectral_plan, "KRONECKER_ADVANTAGE", kronecker)
    x = torch.randn(2, 4, 9, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    padding, stride, dilation = (1, 2, 0, 1), (2, 1), (1, 2)
    out = _band_limited_conv2d(x, w, None, stride, padding, dilation, 2, rate, route=route)
    geometry = conv_geometry((9, 12), (3, 3), stride, dilation, padding)
    fft_size = make_plan(geometry.padded_size, rate, route).fft_size
    grouped = [
        numpy_band_limited(
            x[:, 2 * g : 2 * g + 2].detach(), w[3 * g : 3 * g + 3].detach(), padding, stride, dilation, rate, fft_size
        )
        for g in range(2)
    ]
    assert_close_relative(out, torch.cat(grouped, dim=1), 1e-10)
    assert torch.autograd.gradcheck(
        lambda a, b: _band_limited_conv2d(a, b, None, stride, padding, dilation, 2, rate, route=route), (x, w)
    )


# --- the function form's F.conv2d arguments ----------------------------------------------------------


@pytest.mark.parametrize(
    "stride,padding,dilation",
    [(1, 0, 1), (2, 1, 1), ((1, 2), (2, 0), (2, 1)), (1, "same", (1, 2)), (1, "valid", 1), (1, "same", 1)],
)
@pytest.mark.parametrize("kernel", [3, (2, 4)])
def test_function_form_takes_f_conv2d_arguments(stride, padding, dilation, kernel, device):
    x = torch.randn(2, 4, 11, 13, dtype=torch.float64, device=device)
    w = torch.randn(6, 2, *((kernel, kernel) if isinstance(kernel, int) else kernel), dtype=torch.float64, device=device)
    b = torch.randn(6, dtype=torch.float64, device=device)
    expected = F.conv2d(x, w, b, stride, padding, dilation, 2)
    assert_close_relative(band_limited_conv2d(x, w, b, stride, padding, dilation, 2), expected, 1e-10)


def test_function_form_rejects_other_padding():
    x, w = torch.randn(1, 1, 6, 6), torch.randn(1, 1, 3, 3)
    with pytest.raises(ValueError, match=r"padding must be an int >= 0 or a pair of them, got \(1, 0, 2, 1\)"):
        band_limited_conv2d(x, w, padding=(1, 0, 2, 1))
    with pytest.raises(ValueError, match="padding must be an int, a pair, 'valid' or 'same', got 'full'"):
        band_limited_conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        band_limited_conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        band_limited_conv2d(x, w, stride=0)


# --- autograd: double backward, gradient penalties, torch.func ---------------------------------------


def test_gradgradcheck_of_the_layer(device):
    conv = BandLimitedConv2d(2, 3, 3, padding=1, compress_rate=0.5).double().to(device)
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64, device=device, requires_grad=True)
    weight = conv.weight.detach().clone().requires_grad_()

    def fn(x, weight):
        return torch.func.functional_call(conv, {"weight": weight, "bias": conv.bias}, (x,))

    assert torch.autograd.gradcheck(fn, (x, weight))
    assert torch.autograd.gradgradcheck(fn, (x, weight))


def test_gradient_penalty_matches_nn_conv2d_at_rate_zero(device):
    # d/dw || dL/dx ||^2 needs the input gradient's own derivative (create_graph=True).
    reference, ours = _pair(BandLimitedConv2d, nn.Conv2d, CONV2D_CONFIGS[1], torch.float64)
    reference, ours = reference.to(device), ours.to(device)
    x = torch.randn(2, 4, 13, 17, dtype=torch.float64, device=device, requires_grad=True)
    probe = torch.randn(2, 6, 7, 13, dtype=torch.float64, device=device)

    def penalty_grads(layer):
        (grad_x,) = torch.autograd.grad((layer(x) * probe).sum(), x, create_graph=True)
        return torch.autograd.grad(grad_x.square().sum(), (layer.weight, layer.bias), allow_unused=True)

    expected = penalty_grads(reference)
    got = penalty_grads(ours)
    assert_close_relative(got[0], expected[0], 1e-10)
    assert got[1] is None and expected[1] is None  # the input gradient does not depend on the bias


def test_torch_func_per_sample_gradients_and_jacobian():
    conv = BandLimitedConv2d(3, 4, 3, padding=1, compress_rate=0.5).double()
    params = {name: p.detach() for name, p in conv.named_parameters()}
    x = torch.randn(3, 3, 6, 7, dtype=torch.float64)

    def loss(params, sample):
        return torch.func.functional_call(conv, params, (sample[None],)).square().sum()

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x)
    for i in range(3):
        conv.zero_grad()
        loss(dict(conv.named_parameters()), x[i]).backward()
        assert_close_relative(per_sample["weight"][i], conv.weight.grad, 1e-10)
        assert_close_relative(per_sample["bias"][i], conv.bias.grad, 1e-10)
    sample = x[:1]
    jacobian = torch.func.jacrev(lambda t: conv(t))(sample)
    expected = torch.autograd.functional.jacobian(lambda t: conv(t), sample)
    assert_close_relative(jacobian, expected, 1e-10)


# --- mixed precision, empty batches, export ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_training_step(dtype, device):
    conv = BandLimitedConv2d(4, 4, 3, padding=1, compress_rate=0.5).to(device)
    x = torch.randn(2, 4, 32, 32, device=device)
    expected = conv(x)
    with torch.autocast(device, dtype):
        out = conv(x)
        assert out.dtype == F.conv2d(x, conv.weight).dtype == dtype  # autocast's convention, as F.conv2d
    out.float().square().sum().backward()
    assert conv.weight.grad.dtype == torch.float32 and torch.isfinite(conv.weight.grad).all()
    # float32 inside: the only error is rounding the output to the half type
    assert_close_relative(out, expected, 1e-2 if dtype == torch.bfloat16 else 2e-3)


@pytest.mark.parametrize("module_cls,reference_cls,shape", [
    (BandLimitedConv2d, nn.Conv2d, (0, 3, 8, 8)),
    (BandLimitedConv1d, nn.Conv1d, (0, 3, 20)),
])
def test_empty_batch_as_nn_conv(module_cls, reference_cls, shape):
    reference = reference_cls(3, 5, 3, padding=1, stride=2)
    ours = module_cls(3, 5, 3, padding=1, stride=2, compress_rate=0.5)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(*shape, requires_grad=True)
    out, expected = ours(x), reference(x)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    out.sum().backward()
    assert torch.equal(ours.weight.grad, torch.zeros_like(ours.weight))


def test_torch_export_and_jit_trace_of_the_layer():
    conv = BandLimitedConv2d(4, 6, 3, stride=2, padding=1, compress_rate=0.5).eval()
    x = torch.randn(2, 4, 15, 16)
    exported = torch.export.export(conv, (x,))
    assert "freqnets" not in str(exported.graph)  # plain aten ops with the torch backend
    with pytest.warns(Warning):  # sizes become constants of the trace, which says so
        traced = torch.jit.trace(conv, x)
    other = torch.randn(2, 4, 15, 16)
    assert_close_relative(exported.module()(other), conv(other), 1e-6)
    assert_close_relative(traced(other), conv(other), 1e-6)
    assert conv(torch.randn(1, 4, 9, 9)).shape == (1, 6, 5, 5)  # eager use after tracing: the caches hold no fakes


@pytest.mark.slow
def test_bl_resnet18_cifar_under_bf16_autocast_and_export():
    import timm

    import freqnets  # noqa: F401  (registers the models)

    model = timm.create_model("bl_resnet18_cifar", compress_rate=0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.autocast("cpu", torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    out.float().logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    exported = torch.export.export(model, (x,))
    assert_close_relative(exported.module()(x), model(x), 1e-5)
