"""The product op on CPU (the torch product) and its autograd: registration, fake tensors, derivatives, torch.func."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, jacrev, vmap

from freqnets.layers.spectral_product import band_limited_product, bl_product, reference_product
from tests.conftest import assert_close_relative

B, C, OUT, G, K = 2, 4, 6, 2, 3
PRODUCTS = ("forward", "grad_input", "grad_weight")
OPERANDS = {"forward": ("x", "w"), "grad_input": ("gy", "w"), "grad_weight": ("gy", "x")}


def _spectra(dtype=torch.float64, requires_grad=False, device="cpu"):
    x = torch.randn(2, K, B * C, dtype=dtype, device=device, requires_grad=requires_grad)
    w = torch.randn(2, K, OUT * (C // G), dtype=dtype, device=device, requires_grad=requires_grad)
    gy = torch.randn(2, K, B * OUT, dtype=dtype, device=device, requires_grad=requires_grad)
    return dict(zip(("x", "w", "gy"), (x, w, gy), strict=True))


def _as_complex(planar: torch.Tensor) -> torch.Tensor:
    return torch.complex(planar[0], planar[1])


def einsum_product(product, first, second):
    """The three products written with complex einsum on grouped (K, G, ...) views: an independent reference."""
    a, b = _as_complex(first), _as_complex(second)
    if product == "forward":  # x (K, B, G, C/g), w (K, G, O/g, C/g) -> y (K, B, G, O/g)
        y = torch.einsum("kbgc,kgoc->kbgo", a.view(K, B, G, -1), b.view(K, G, OUT // G, -1).conj())
    elif product == "grad_input":  # gy (K, B, G, O/g), w (K, G, O/g, C/g) -> gx (K, B, G, C/g)
        y = torch.einsum("kbgo,kgoc->kbgc", a.view(K, B, G, -1), b.view(K, G, OUT // G, -1))
    else:  # gy (K, B, G, O/g), x (K, B, G, C/g) -> gw (K, G, O/g, C/g)
        y = torch.einsum("kbgo,kbgc->kgoc", a.view(K, B, G, -1).conj(), b.view(K, B, G, -1))
    y = y.reshape(K, -1)
    return torch.stack([y.real, y.imag])


@pytest.mark.parametrize("product", PRODUCTS)
def test_reference_product_is_the_definition(product, device):
    spectra = _spectra(device=device)
    first, second = (spectra[name] for name in OPERANDS[product])
    expected = einsum_product(product, first, second)
    assert_close_relative(reference_product(product, first, second, B, G), expected, 1e-12)
    assert torch.equal(bl_product(product, first, second, B, G), reference_product(product, first, second, B, G))


@pytest.mark.parametrize("requires_grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("product", PRODUCTS)
def test_opcheck(product, requires_grad):
    # With inputs that require grad opcheck also backpropagates through the op's own autograd under
    # AOT dispatch (the GPU run of 2026-12-04 failed there before the op had one).
    spectra = _spectra(requires_grad=requires_grad)
    torch.library.opcheck(bl_product, (product, *(spectra[name] for name in OPERANDS[product]), B, G, False, "torch"))


@pytest.mark.parametrize("product", PRODUCTS)
def test_op_differentiates_by_itself_to_second_order(product):
    spectra = _spectra(requires_grad=True)
    first, second = (spectra[name] for name in OPERANDS[product])

    def op(a, b):
        return bl_product(product, a, b, B, G, False, "torch")

    assert torch.autograd.gradcheck(op, (first, second))
    assert torch.autograd.gradgradcheck(op, (first, second))
    # the op's gradients are the autograd function's
    g = torch.randn_like(op(first, second))
    via_op = torch.autograd.grad(op(first, second), (first, second), g)
    via_function = torch.autograd.grad(band_limited_product(product, first, second, B, G), (first, second), g)
    for a, b in zip(via_op, via_function, strict=True):
        assert_close_relative(a, b, 1e-12)


def test_fake_shapes_match_real_ones():
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = _spectra()
    with FakeTensorMode() as mode:
        fake = {name: mode.from_tensor(t) for name, t in real.items()}
        shapes = [bl_product(p, *(fake[n] for n in OPERANDS[p]), B, G).shape for p in PRODUCTS]
    assert shapes == [real["gy"].shape, real["x"].shape, real["w"].shape]


def test_unknown_backend_raises():
    spectra = _spectra()
    with pytest.raises(ValueError, match="backend of the product op must be one of torch, cupy, got 'auto'"):
        bl_product("forward", spectra["x"], spectra["w"], B, G, False, "auto")


@pytest.mark.parametrize("product", PRODUCTS)
def test_first_and_second_derivatives(product, device):
    spectra = _spectra(requires_grad=True, device=device)

    def fn(a, b):
        return band_limited_product(product, a, b, B, G)

    operands = tuple(spectra[name] for name in OPERANDS[product])
    assert torch.autograd.gradcheck(fn, operands)
    assert torch.autograd.gradgradcheck(fn, operands)


@pytest.mark.parametrize("product", PRODUCTS)
def test_torch_func_grad_jacrev_and_vmap(product):
    spectra = _spectra()
    first, second = (spectra[name] for name in OPERANDS[product])
    probe = torch.randn_like(band_limited_product(product, first, second, B, G))

    def loss(a, b):
        return (band_limited_product(product, a, b, B, G) * probe).sum()

    def einsum_loss(a, b):
        return (einsum_product(product, a, b) * probe).sum()

    ours, reference = grad(loss, argnums=(0, 1))(first, second), grad(einsum_loss, argnums=(0, 1))(first, second)
    for got, want in zip(ours, reference, strict=True):
        assert_close_relative(got, want, 1e-12)
    assert_close_relative(
        jacrev(lambda a: band_limited_product(product, a, second, B, G))(first),
        jacrev(lambda a: einsum_product(product, a, second))(first),
        1e-12,
    )
    firsts, seconds = torch.stack([first, 2 * first, -first]), torch.stack([second, second.flip(-1), 3 * second])
    for first_mapped, second_mapped in ((True, False), (False, True), (True, True)):
        in_dims = (0 if first_mapped else None, 0 if second_mapped else None)
        mapped = vmap(lambda a, b: band_limited_product(product, a, b, B, G), in_dims=in_dims)
        got = mapped(firsts if first_mapped else first, seconds if second_mapped else second)
        slices = [(firsts[i] if first_mapped else first, seconds[i] if second_mapped else second) for i in range(3)]
        expected = torch.stack([einsum_product(product, a, b) for a, b in slices])
        assert_close_relative(got, expected, 1e-12)


def test_under_torch_compile_full_graph():
    spectra = _spectra(requires_grad=True)
    x, w, gy = spectra["x"], spectra["w"], spectra["gy"].detach()

    def fn(x, w):
        return (band_limited_product("forward", x, w, B, G) * gy).sum()

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    loss = compiled(x, w)
    grads = torch.autograd.grad(loss, (x, w))
    expected = torch.autograd.grad(fn(x, w), (x, w))
    assert_close_relative(loss, fn(x, w), 1e-12)
    for got, want in zip(grads, expected, strict=True):
        assert_close_relative(got, want, 1e-12)
