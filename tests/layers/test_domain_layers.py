"""SVD-separable, Winograd and DCT-compressed convolutions against F.conv2d, numpy and scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from freqnets import convert_model
from freqnets.layers import DCTConv2d, SVDConv2d, WinogradConv2d, dct_conv2d, svd_conv2d, winograd_conv2d
from freqnets.transforms import get_domain, winograd_filter_mask, winograd_filter_transform, winograd_matrices
from tests.conftest import assert_close_relative

CONFIGS = [
    # (C_in, C_out, kernel, stride, padding, dilation, groups, padding_mode, input H x W)
    (3, 8, 3, 1, 1, 1, 1, "zeros", (12, 12)),
    (4, 6, (3, 5), (2, 1), (1, 2), (1, 2), 2, "zeros", (13, 17)),
    (4, 4, 3, 1, "same", 1, 4, "reflect", (15, 9)),
    (2, 5, 5, 2, 2, 1, 1, "circular", (11, 20)),
]


def _grads(module, x):
    out = module(x)
    grad = torch.randn_like(out, generator=torch.Generator().manual_seed(1))
    return out, torch.autograd.grad(out, (x,), grad)[0]


@pytest.mark.parametrize("config", CONFIGS)
def test_svd_full_rank_reproduces_the_convolution(config):
    c_in, c_out, kernel, stride, padding, dilation, groups, mode, size = config
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, padding_mode=mode)
    svd = SVDConv2d.from_conv(conv)
    assert svd.rank == svd.full_rank and svd.compress_rate == 0.0
    x = torch.randn(2, c_in, *size, requires_grad=True)
    (out, gx), (expected, gx_ref) = _grads(svd, x), _grads(conv, x)
    assert_close_relative(out, expected, 1e-4)
    assert_close_relative(gx, gx_ref, 1e-4)


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
def test_svd_truncation_is_the_best_low_rank_filter_bank(rate):
    conv = nn.Conv2d(6, 4, 3, padding=1, groups=2).double()
    svd = SVDConv2d.from_conv(conv, compress_rate=rate)
    full = min(3 * 3, 2 * 3)
    assert svd.full_rank == full and svd.rank == round((1 - rate) * full)
    # numpy: per group, the rank-R SVD truncation of M[(c, i), (o, j)] = W[o, c, i, j].
    w = conv.weight.detach().numpy()
    expected = np.empty_like(w)
    for g in range(2):
        block = w[2 * g : 2 * g + 2]  # (O/g, C/g, kh, kw)
        m = block.transpose(1, 2, 0, 3).reshape(3 * 3, 2 * 3)
        u, s, vh = np.linalg.svd(m, full_matrices=False)
        approx = (u[:, : svd.rank] * s[: svd.rank]) @ vh[: svd.rank]
        expected[2 * g : 2 * g + 2] = approx.reshape(3, 3, 2, 3).transpose(2, 0, 1, 3)
    assert_close_relative(svd.weight, torch.from_numpy(expected), 1e-10)
    x = torch.randn(1, 6, 9, 9, dtype=torch.float64)
    assert_close_relative(svd(x), F.conv2d(x, torch.from_numpy(expected), conv.bias, padding=1, groups=2), 1e-10)


def test_svd_energy_rank_constructor_and_errors():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    assert SVDConv2d.from_conv(conv, energy=0.5).rank < SVDConv2d.from_conv(conv, energy=0.99).rank <= 24
    fresh = SVDConv2d(8, 16, 3, stride=2, padding=1, rank=5)
    assert fresh(torch.randn(2, 8, 10, 10)).shape == nn.Conv2d(8, 16, 3, 2, 1)(torch.randn(2, 8, 10, 10)).shape
    assert {name for name, _ in fresh.named_parameters()} == {"vertical", "horizontal", "bias"}
    with pytest.raises(ValueError, match="rank must be <= 24"):
        SVDConv2d.from_conv(conv, rank=25)
    with pytest.raises(ValueError, match="at most one"):
        SVDConv2d.from_conv(conv, rank=2, compress_rate=0.5)
    with pytest.raises(TypeError, match=r"nn\.Conv2d"):
        SVDConv2d.from_conv(nn.Conv1d(2, 2, 3))


def test_svd_gradcheck():
    svd = SVDConv2d.from_conv(nn.Conv2d(2, 3, 3, stride=2, padding=1).double(), rank=2)
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, v, h: F.conv2d(F.conv2d(F.pad(x, svd._padding_amounts), v, None, (2, 1)), h, svd.bias, (1, 2)),
        (x, svd.vertical, svd.horizontal),
    )
    assert torch.autograd.gradcheck(svd, (x,))


WINOGRAD_CONFIGS = [
    (3, 8, 3, 1, 1, "zeros", (12, 12)),
    (4, 6, 3, 2, 0, "zeros", (13, 17)),
    (4, 4, 3, 4, "same", "reflect", (9, 15)),
    (2, 3, 4, 1, "same", "zeros", (10, 11)),  # even kernel: asymmetric 'same' padding
    (2, 5, 5, 1, 2, "circular", (11, 8)),
]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("config", WINOGRAD_CONFIGS)
def test_winograd_rate_zero_matches_torch(config, m):
    c_in, c_out, kernel, groups, padding, mode, size = config
    conv = nn.Conv2d(c_in, c_out, kernel, padding=padding, groups=groups, padding_mode=mode)
    wino = WinogradConv2d.from_conv(conv, m=m)
    x = torch.randn(2, c_in, *size, requires_grad=True)
    (out, gx), (expected, gx_ref) = _grads(wino, x), _grads(conv, x)
    assert_close_relative(out, expected, 1e-4)
    assert_close_relative(gx, gx_ref, 1e-4)
    grad = torch.randn_like(out)
    gw = torch.autograd.grad(wino(x), wino.weight, grad)[0]
    assert_close_relative(gw, torch.autograd.grad(conv(x), conv.weight, grad)[0], 1e-4)


def numpy_winograd(x, filters, m, r):
    """Float64 loops over tiles: Y = AT [sum_c U[o, c] * (BT d BT^T)] AT^T, stride 1, no padding."""
    at, _, bt = (t.numpy() for t in winograd_matrices(m, r))
    alpha = m + r - 1
    n, c, h, w = x.shape
    out_h, out_w = h - r + 1, w - r + 1
    th, tw = -(-out_h // m), -(-out_w // m)
    xp = np.zeros((n, c, th * m + r - 1, tw * m + r - 1))
    xp[:, :, :h, :w] = x
    y = np.zeros((n, filters.shape[0], th * m, tw * m))
    for i in range(th):
        for j in range(tw):
            tile = xp[:, :, i * m : i * m + alpha, j * m : j * m + alpha]
            v = bt @ tile @ bt.T
            y[:, :, i * m : (i + 1) * m, j * m : (j + 1) * m] = at @ np.einsum("ncab,ocab->noab", v, filters) @ at.T
    return y[:, :, :out_h, :out_w]


@pytest.mark.parametrize("rate", [0.3, 0.6, 0.9])
def test_winograd_pruning_keeps_the_largest_coefficients_and_matches_a_loop(rate):
    wino = WinogradConv2d(3, 4, 3, m=2, compress_rate=rate).double()
    _, g, _ = winograd_matrices(2, 3)
    dense = (g @ wino.weight @ g.T).detach()
    kept = wino.winograd_mask
    assert kept.sum().item() == round((1 - rate) * kept.numel())
    assert dense[kept].abs().min() >= dense[~kept].abs().max()
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    expected = numpy_winograd(x.numpy(), (dense * kept).numpy(), 2, 3) + wino.bias.detach().numpy()[:, None, None]
    assert_close_relative(wino(x), torch.from_numpy(expected), 1e-10)


def test_winograd_pruned_coefficients_stay_zero_through_training():
    wino = WinogradConv2d(4, 4, 3, padding=1, compress_rate=0.5)
    optimizer = torch.optim.SGD(wino.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        optimizer.zero_grad()
        wino(torch.randn(2, 4, 8, 8)).square().mean().backward()
        optimizer.step()
    filters = wino.winograd_filters()
    assert torch.all(filters[~wino.winograd_mask] == 0) and filters[wino.winograd_mask].abs().min() > 0
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(wino.double(), (x,))


def test_winograd_state_dict_and_errors():
    conv = nn.Conv2d(3, 3, 3, padding=1)
    wino = WinogradConv2d(3, 3, 3, padding=1, compress_rate=0.25)
    wino.load_state_dict(conv.state_dict())  # no mask in a plain state_dict: derived from the weights
    assert wino.winograd_mask.float().mean().item() == pytest.approx(0.75, abs=0.01)
    restored = WinogradConv2d(3, 3, 3, padding=1)
    restored.load_state_dict(wino.state_dict())
    assert torch.equal(restored.winograd_mask, wino.winograd_mask)
    with pytest.raises(ValueError, match="stride 1 and dilation 1"):
        WinogradConv2d(3, 3, 3, stride=2)
    with pytest.raises(ValueError, match="square kernel"):
        WinogradConv2d(3, 3, (3, 1))


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.8])
def test_dct_conv_matches_scipy_band_limiting(rate):
    conv = DCTConv2d(3, 4, 3, padding=1, compress_rate=rate).double()
    x = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    domain = get_domain("dct")

    def band_limit(t: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return scipy.fft.idctn(scipy.fft.dctn(t, norm="ortho", axes=(-2, -1)) * mask, norm="ortho", axes=(-2, -1))

    xc = band_limit(x.numpy(), domain.kept_mask((10, 12), rate).numpy())
    wc = band_limit(conv.weight.detach().numpy(), domain.kept_mask((3, 3), rate).numpy())
    expected = F.conv2d(torch.from_numpy(xc), torch.from_numpy(wc), conv.bias, padding=1)
    assert_close_relative(conv(x), expected, 1e-10)
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(conv, (xg,))


def test_dct_conv_rate_zero_is_conv2d_and_state_dict_moves():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, padding_mode="replicate")
    dct_conv = DCTConv2d.from_conv(conv)
    assert conv.load_state_dict(dct_conv.state_dict(), strict=False).unexpected_keys == ["_extra_state"]
    x = torch.randn(2, 3, 11, 9, requires_grad=True)
    (out, gx), (expected, gx_ref) = _grads(dct_conv, x), _grads(conv, x)
    assert_close_relative(out, expected, 1e-4)
    assert_close_relative(gx, gx_ref, 1e-4)


def test_convert_model_in_every_domain_keeps_the_function_at_rate_zero():
    x = torch.randn(2, 3, 32, 32)
    reference = timm.create_model("resnet18", num_classes=10).eval()
    expected = reference(x)
    for domain, kind, converted in [("svd", SVDConv2d, 17), ("winograd", WinogradConv2d, 13), ("dct", DCTConv2d, 17)]:
        model = timm.create_model("resnet18", num_classes=10).eval()
        model.load_state_dict(reference.state_dict())
        convert_model(model, domain=domain, compress_rate=0.0)
        summary = model.freqnets_conversion
        assert summary.converted == converted and isinstance(model.layer1[0].conv1, kind)
        assert torch.allclose(model(x), expected, rtol=1e-3, atol=1e-3)
    wino = convert_model(timm.create_model("resnet18"), domain="winograd", compress_rate=0.5)
    notes = {row.name: row.note for row in wino.freqnets_conversion.rows}
    assert notes["layer2.0.conv1"].startswith("Winograd needs stride 1") and notes["conv1"].startswith("Winograd needs")
    with pytest.raises(ValueError, match="only the 'torch' backend"):
        convert_model(nn.Conv2d(2, 2, 3), domain="svd", backend="cupy")
    assert isinstance(convert_model(nn.Conv2d(2, 2, 3), domain="svd", backend="auto", compress_rate=0.0), SVDConv2d)


# The drop-in contract every domain conv shares: a weight of nn.Conv2d's shape, and a function form
# with F.conv2d's arguments (padding as int, pair, "valid" or "same").
FUNCTION_PADDINGS = [0, 1, (2, 0), "valid", "same"]


@pytest.mark.parametrize("padding", FUNCTION_PADDINGS)
@pytest.mark.parametrize("kernel", [3, (2, 4)])
def test_svd_function_form_is_conv2d_of_the_filters_the_factors_make(padding, kernel):
    conv = nn.Conv2d(4, 6, kernel, groups=2, bias=True).double()
    svd = SVDConv2d.from_conv(conv, compress_rate=0.4)
    assert svd.weight.shape == conv.weight.shape and svd.weight.dtype == conv.weight.dtype
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64)
    stride, dilation = (1, 1) if padding == "same" else ((2, 1), (1, 2))
    out = svd_conv2d(x, svd.vertical, svd.horizontal, svd.bias, stride, padding, dilation, groups=2)
    expected = F.conv2d(x, svd.weight.detach(), svd.bias, stride, padding, dilation, groups=2)
    assert_close_relative(out, expected, 1e-10)


def test_svd_weight_is_differentiable_and_a_conv2d_state_dict_loads_factorised():
    conv = nn.Conv2d(3, 5, 3, padding=1).double()
    svd = SVDConv2d(3, 5, 3, padding=1, compress_rate=0.0).double()
    svd.load_state_dict(conv.state_dict())  # timm's weights: a "weight" key, no factors
    assert set(svd.state_dict()) == {"vertical", "horizontal", "bias", "_extra_state"}
    assert_close_relative(svd.weight, conv.weight, 1e-10)
    x = torch.randn(1, 3, 7, 7, dtype=torch.float64)
    assert_close_relative(svd(x), conv(x), 1e-10)
    grad = torch.autograd.grad(svd.weight.square().sum(), svd.vertical)[0]
    assert grad.shape == svd.vertical.shape and grad.abs().sum() > 0
    truncated = SVDConv2d(3, 5, 3, padding=1, rank=2).double()
    truncated.load_state_dict(conv.state_dict())
    assert truncated.rank == 2 and torch.linalg.matrix_rank(truncated.weight.detach().permute(1, 2, 0, 3).reshape(9, 15)) == 2
    with pytest.raises(ValueError, match=r"weight: a \(O, C/g, kh, kw\)"):
        svd.load_state_dict({"weight": torch.randn(5, 3, 5, 5), "bias": conv.bias})


@pytest.mark.parametrize("padding", FUNCTION_PADDINGS)
@pytest.mark.parametrize("kernel", [3, 4])
def test_winograd_function_form_matches_conv2d_and_the_layer(padding, kernel):
    x = torch.randn(2, 4, 11, 9, dtype=torch.float64)
    layer = WinogradConv2d(4, 6, kernel, padding=padding, groups=2, m=2).double()
    expected = F.conv2d(x, layer.weight, layer.bias, 1, padding, 1, 2)
    out = winograd_conv2d(x, layer.weight, layer.bias, 1, padding, 1, 2, m=2)
    assert layer.weight.shape == (6, 2, kernel, kernel)
    assert_close_relative(out, expected, 1e-10)
    layer.prune(0.5)
    pruned = winograd_conv2d(x, layer.weight, layer.bias, padding=padding, groups=2, m=2, compress_rate=0.5)
    assert_close_relative(pruned, layer(x), 1e-12)
    assert (pruned - expected).abs().max() > 1e-3  # pruning changed the function


@pytest.mark.parametrize("values", ["random", "ties", "constant"])
def test_winograd_mask_keeps_exactly_the_largest_coefficients(values):
    n = 300_000  # above the size where the mask brackets its threshold from a sample
    if values == "random":
        filters = torch.randn(n)
    elif values == "ties":
        filters = torch.randint(-3, 4, (n,)).float()
    else:
        filters = torch.ones(n)
    for rate in (0.1, 0.5, 0.93):
        mask = winograd_filter_mask(filters, rate)
        kept = round((1 - rate) * n)
        assert mask.sum().item() == kept
        magnitude = filters.abs()
        assert magnitude[mask].min() >= magnitude[~mask].max()
        assert torch.equal(mask.sum(), torch.tensor(kept))
        reference = magnitude.double().numpy()
        threshold = np.sort(reference)[::-1][kept - 1]
        assert (reference[mask.numpy()] >= threshold).all() and (reference[~mask.numpy()] <= threshold).all()


@pytest.mark.parametrize("padding", FUNCTION_PADDINGS)
@pytest.mark.parametrize("rate", [0.0, 0.5])
def test_dct_function_form_matches_scipy_and_the_layer(padding, rate):
    x = torch.randn(2, 4, 10, 12, dtype=torch.float64)
    layer = DCTConv2d(4, 6, 3, padding=padding, groups=2, compress_rate=rate).double()
    domain = get_domain("dct")

    def band_limit(t: torch.Tensor) -> torch.Tensor:
        mask = domain.kept_mask(tuple(t.shape[-2:]), rate).numpy()
        coefficients = scipy.fft.dctn(t.detach().numpy(), norm="ortho", axes=(-2, -1)) * mask
        return torch.from_numpy(scipy.fft.idctn(coefficients, norm="ortho", axes=(-2, -1)))

    expected = F.conv2d(band_limit(x), band_limit(layer.weight), layer.bias, 1, padding, 1, 2)
    out = dct_conv2d(x, layer.weight, layer.bias, 1, padding, 1, 2, compress_rate=rate)
    assert_close_relative(out, expected, 1e-10)
    assert_close_relative(layer(x), out, 1e-12)


def test_every_domain_layer_has_a_conv2d_shaped_weight_and_is_listed_in_the_registry():
    from freqnets.layers import BandLimitedConv2d
    from freqnets.layers.registry import BUILT_IN_LAYERS

    conv = nn.Conv2d(4, 8, 3, padding=1)
    for domain, layer in BUILT_IN_LAYERS.items():
        converted = layer.converter(conv, 0.25, "torch")
        assert isinstance(converted, layer.layer_types), domain
        assert isinstance(converted.weight, torch.Tensor) and converted.weight.shape == conv.weight.shape, domain
    assert BUILT_IN_LAYERS["fft"].layer_types[-1] is BandLimitedConv2d


def test_function_forms_reject_bad_arguments():
    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    with pytest.raises(ValueError, match="needs stride 1"):
        dct_conv2d(x, w, padding="same", stride=2)
    with pytest.raises(ValueError, match="padding must be"):
        svd_conv2d(x, torch.randn(6, 4, 3, 1), torch.randn(4, 6, 1, 3), padding=-1)
    with pytest.raises(ValueError, match="factors do not agree"):
        svd_conv2d(x, torch.randn(6, 4, 3, 1), torch.randn(4, 5, 1, 3))
    with pytest.raises(TypeError, match="floating"):
        dct_conv2d(x.long(), w)


def test_svd_factorises_on_first_use_and_never_when_a_checkpoint_replaces_it(monkeypatch):
    import freqnets.layers.svd_conv as svd_conv

    calls = []
    factorise = svd_conv._factorise
    monkeypatch.setattr(svd_conv, "_factorise", lambda *args: calls.append(1) or factorise(*args))
    conv = nn.Conv2d(4, 6, 3, padding=1).double()
    layer = SVDConv2d.from_conv(conv, compress_rate=0.25)
    assert calls == [] and layer.rank == 9
    layer.double()  # moves the pending filters with the parameters
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    expected = F.conv2d(x, SVDConv2d.from_conv(conv, compress_rate=0.25).weight, conv.bias, padding=1)
    assert_close_relative(layer(x), expected, 1e-10)
    calls.clear()
    restored = SVDConv2d.from_conv(conv, compress_rate=0.25)
    restored.load_state_dict(layer.state_dict())
    assert calls == [] and torch.equal(restored(x), layer(x))
    # A re-rate before the first use only changes the rank the pending SVD will keep.
    lower = SVDConv2d.from_conv(conv, compress_rate=0.0)
    lower.compress_rate = 0.5
    assert calls == [] and lower.rank == 6
    assert_close_relative(lower.weight, SVDConv2d.from_conv(conv, rank=6).weight, 1e-10)
    # An init written through parameters() before the first use is kept, not overwritten.
    initialised = SVDConv2d.from_conv(conv)
    for parameter in initialised.parameters():
        nn.init.constant_(parameter, 0.5)
    assert torch.all(initialised.vertical == 0.5) and torch.all(initialised.horizontal == 0.5)


def test_winograd_mask_of_a_layer_with_structured_magnitudes_is_exact():
    # G w G^T of F(4, 3): the 36 positions of a tile differ in scale by 100x, a pattern a strided sample aliases.
    layer = WinogradConv2d(64, 64, 3, m=4)
    filters = winograd_filter_transform(layer.weight.detach(), 4)
    for rate in (0.3, 0.5, 0.8):
        mask = winograd_filter_mask(filters, rate)
        magnitude = filters.abs()
        assert mask.sum().item() == round((1 - rate) * mask.numel())
        assert magnitude[mask].min() >= magnitude[~mask].max()


def test_winograd_selects_its_mask_on_first_use_from_the_weights_it_was_pruned_at(monkeypatch):
    import freqnets.layers.winograd_conv as winograd_conv

    calls = []
    select = winograd_conv.winograd_filter_mask
    monkeypatch.setattr(winograd_conv, "winograd_filter_mask", lambda *args: calls.append(1) or select(*args))
    layer = WinogradConv2d(4, 4, 3, padding=1, m=2, compress_rate=0.5)
    expected = select(winograd_filter_transform(layer.weight.detach(), 2), 0.5)
    with torch.no_grad():
        layer.weight.mul_(-2.0).add_(1.0)  # written after pruning: the mask still comes from the pruned weights
    assert calls == []
    layer.double()
    assert torch.equal(layer.winograd_mask, expected) and calls == [1]
    restored = WinogradConv2d(4, 4, 3, padding=1, m=2, compress_rate=0.5)
    restored.load_state_dict(layer.state_dict())
    assert calls == [1] and torch.equal(restored.winograd_mask, expected)


@pytest.mark.parametrize(("in_channels", "out_channels", "rate"), [(16, 16, 0.5), (8, 24, 0.5), (24, 8, 0.3)])
def test_svd_factors_of_a_truncation_are_numpys_singular_triplets(in_channels, out_channels, rate):
    """The factors of a truncation (square, wide and tall filter matrices; the fast Gram route) are numpy's singular
    triplets up to each pair's sign: ``sqrt(s_r)`` times orthonormal singular vectors, not just any product that
    makes the filters (the balance matters: both factors are trained)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1).double()
    svd = SVDConv2d.from_conv(conv, compress_rate=rate)
    m = conv.weight.detach().numpy().transpose(1, 2, 0, 3).reshape(in_channels * 3, out_channels * 3)
    u, s, vh = np.linalg.svd(m, full_matrices=False)
    rank = svd.rank
    assert rank < min(m.shape)
    got_u = svd.vertical.detach().reshape(rank, in_channels * 3).T.numpy()  # sqrt(s_r) u_r as columns
    got_v = svd.horizontal.detach().permute(1, 0, 2, 3).reshape(rank, out_channels * 3).numpy()  # sqrt(s_r) v_r
    want_u, want_v = u[:, :rank] * np.sqrt(s[:rank]), vh[:rank] * np.sqrt(s[:rank])[:, None]
    signs = np.sign(np.sum(got_u * want_u, axis=0))
    np.testing.assert_allclose(got_u * signs, want_u, rtol=0, atol=1e-9 * np.abs(want_u).max())
    np.testing.assert_allclose(got_v * signs[:, None], want_v, rtol=0, atol=1e-9 * np.abs(want_v).max())


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_svd_truncation_of_a_rank_deficient_filter_bank_is_exact_and_finite(rate):
    """A truncation that keeps singular values far below the largest (here exact zeros: a filter bank of rank 2, and
    an all-zero one) takes the SVD, not the Gram route, whose eigenvalues cannot resolve them: finite factors, the
    filters reproduced."""
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, padding=1, bias=False).double()
    low = torch.randn(24, 2, dtype=torch.float64) @ torch.randn(2, 24, dtype=torch.float64)  # M of rank 2
    with torch.no_grad():
        conv.weight.copy_(low.reshape(8, 3, 8, 3).permute(2, 0, 1, 3))
    for weight in (conv.weight.detach().clone(), torch.zeros_like(conv.weight)):
        with torch.no_grad():
            conv.weight.copy_(weight)
        svd = SVDConv2d.from_conv(conv, compress_rate=rate)
        assert svd.rank > 2
        assert torch.isfinite(svd.vertical).all() and torch.isfinite(svd.horizontal).all()
        torch.testing.assert_close(svd.weight, weight, rtol=0, atol=1e-12 * max(1.0, weight.abs().max().item()))
