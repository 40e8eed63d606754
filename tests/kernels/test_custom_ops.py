"""The product custom ops on CPU (where they run the torch path): registration, fake tensors, autograd, compile."""

from __future__ import annotations

import pytest
import torch

from freqnets.layers.spectral_product import (
    bl_product,
    bl_product_grad_input,
    bl_product_grad_weight,
    reference_product,
)
from tests.conftest import assert_close_relative

B, C, OUT, G, K = 2, 4, 6, 2, 3


def _spectra(dtype=torch.float64, requires_grad=False):
    x = torch.randn(2, K, B * C, dtype=dtype, requires_grad=requires_grad)
    w = torch.randn(2, K, OUT * (C // G), dtype=dtype, requires_grad=requires_grad)
    gy = torch.randn(2, K, B * OUT, dtype=dtype, requires_grad=requires_grad)
    return x, w, gy


@pytest.mark.parametrize(
    "op,operands",
    [(bl_product, ("x", "w")), (bl_product_grad_input, ("gy", "w")), (bl_product_grad_weight, ("gy", "x"))],
    ids=["product", "grad_input", "grad_weight"],
)
def test_opcheck(op, operands):
    spectra = dict(zip(("x", "w", "gy"), _spectra(requires_grad=True), strict=True))
    args = (*(spectra[name] for name in operands), B, G, False)
    torch.library.opcheck(op, args)


def test_ops_are_the_torch_path_on_cpu():
    x, w, gy = _spectra()
    assert torch.equal(bl_product(x, w, B, G, False), reference_product("forward", x, w, B, G))
    assert torch.equal(bl_product_grad_input(gy, w, B, G, True), reference_product("grad_input", gy, w, B, G))
    assert torch.equal(bl_product_grad_weight(gy, x, B, G, False), reference_product("grad_weight", gy, x, B, G))


def test_fake_shapes_match_real_ones():
    from torch._subclasses.fake_tensor import FakeTensorMode

    real = _spectra()
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(t) for t in real]
        shapes = [
            bl_product(fake[0], fake[1], B, G, False).shape,
            bl_product_grad_input(fake[2], fake[1], B, G, False).shape,
            bl_product_grad_weight(fake[2], fake[0], B, G, False).shape,
        ]
    x, w, gy = real
    assert shapes == [gy.shape, x.shape, w.shape]


@pytest.mark.parametrize("op", [bl_product, bl_product_grad_input, bl_product_grad_weight])
def test_first_and_second_derivatives(op):
    x, w, gy = _spectra(requires_grad=True)
    operands = {bl_product: (x, w), bl_product_grad_input: (gy, w), bl_product_grad_weight: (gy, x)}[op]

    def fn(a, b):
        return op(a, b, B, G, False)

    assert torch.autograd.gradcheck(fn, operands)
    assert torch.autograd.gradgradcheck(fn, operands)


def test_under_torch_compile_full_graph():
    x, w, gy = _spectra(requires_grad=True)

    def fn(x, w):
        return (bl_product(x, w, B, G, False) * gy).sum()

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    loss = compiled(x, w)
    grads = torch.autograd.grad(loss, (x, w))
    expected = torch.autograd.grad(fn(x, w), (x, w))
    assert_close_relative(loss, fn(x, w), 1e-12)
    for got, want in zip(grads, expected, strict=True):
        assert_close_relative(got, want, 1e-12)
