"""The band-limited product as ``torch.library`` custom ops: CuPy kernels on CUDA, the torch path elsewhere.

Three ops over the flat planar spectra of :func:`freqnets.layers.spectral_plan.analysis`
(layouts in :mod:`freqnets.kernels.operands`)::

    freqnets::bl_product(x_spec, w_spec, batch, groups, gauss)                -> y_spec   (2, K, B * O)
    freqnets::bl_product_grad_input(grad_y_spec, w_spec, batch, groups, gauss) -> (2, K, B * C)
    freqnets::bl_product_grad_weight(grad_y_spec, x_spec, batch, groups, gauss) -> (2, K, O * C/g)

On CUDA tensors they launch ``planar_cgemm_*`` through :mod:`freqnets.kernels.cupy_backend`
(and raise if CuPy cannot run: there is no silent fallback). On every other device they run the
torch path's :func:`complex_matmul` on the same operand views, which is the specification the
kernels are tested against. Each op has a fake (meta) implementation, so they trace under
``torch.compile``, and an autograd formula: the three products are each other's real adjoints,
so first and second derivatives are products again.
"""

from __future__ import annotations

import torch

from ..kernels import cupy_backend
from ..kernels.operands import product_operands


def complex_matmul(
    left: torch.Tensor, right: torch.Tensor, conj_left: bool = False, conj_right: bool = False
) -> torch.Tensor:
    """Batched complex product of planar operands ``(2, ..., m, n) @ (2, ..., n, p)`` -> ``(2, ..., m, p)``.

    Gauss's trick: for ``(a + ib)(c + id)``, ``k1 = (a + b) c``, ``k2 = a (d - c)``,
    ``k3 = b (c + d)`` give ``k1 - k3 + i (k1 + k2)``: three real products instead
    of four (measured faster than four, or than complex ``bmm``, at every layer shape
    of ``freqnets bench conv``). ``conj_*`` conjugates an operand without materialising it.
    """
    ar, ai = left[0], left[1]
    br, bi = right[0], right[1]
    k1 = (ar - ai if conj_left else ar + ai) @ br
    k2 = ar @ (-(bi + br) if conj_right else bi - br)
    k3 = ai @ (br - bi if conj_right else br + bi)
    out = k1.new_empty(2, *k1.shape)
    torch.add(k1, k3, alpha=1.0 if conj_left else -1.0, out=out[0])
    torch.add(k1, k2, out=out[1])
    return out


def reference_product(
    product: str, first: torch.Tensor, second: torch.Tensor, batch: int, groups: int
) -> torch.Tensor:
    """One of the three products computed by the torch path (:func:`complex_matmul`) on any device."""
    ops = product_operands(product, first, second, batch, groups)
    ops.c.copy_(complex_matmul(ops.a, ops.b, conj_left=ops.conj_a, conj_right=ops.conj_b))
    return ops.out


def _run(product: str, first, second, batch: int, groups: int, gauss: bool) -> torch.Tensor:
    if first.device.type == "cuda":
        return cupy_backend.launch(product_operands(product, first, second, batch, groups), gauss)
    return reference_product(product, first, second, batch, groups)


def _fake(product: str, first, second, batch: int, groups: int) -> torch.Tensor:
    k = first.shape[1]
    if product == "forward":  # (2, K, B C), (2, K, O C/g) -> (2, K, B O)
        cg = first.shape[2] // batch // groups
        return first.new_empty(2, k, batch * (second.shape[2] // cg))
    o = first.shape[2] // batch
    if product == "grad_input":  # (2, K, B O), (2, K, O C/g) -> (2, K, B C)
        return first.new_empty(2, k, batch * groups * (second.shape[2] // o))
    return first.new_empty(2, k, o * (second.shape[2] // batch // groups))  # -> (2, K, O C/g)


@torch.library.custom_op("freqnets::bl_product", mutates_args=())
def bl_product(x_spec: torch.Tensor, w_spec: torch.Tensor, batch: int, groups: int, gauss: bool) -> torch.Tensor:
    """``Y[f, g] = X[f, g] @ conj(W[f, g])^T`` for every kept frequency ``f`` and group ``g``."""
    return _run("forward", x_spec, w_spec, batch, groups, gauss)


@torch.library.custom_op("freqnets::bl_product_grad_input", mutates_args=())
def bl_product_grad_input(
    grad_y_spec: torch.Tensor, w_spec: torch.Tensor, batch: int, groups: int, gauss: bool
) -> torch.Tensor:
    """``GX[f, g] = GY[f, g] @ W[f, g]``: the input spectrum's gradient."""
    return _run("grad_input", grad_y_spec, w_spec, batch, groups, gauss)


@torch.library.custom_op("freqnets::bl_product_grad_weight", mutates_args=())
def bl_product_grad_weight(
    grad_y_spec: torch.Tensor, x_spec: torch.Tensor, batch: int, groups: int, gauss: bool
) -> torch.Tensor:
    """``GW[f, g] = conj(GY[f, g])^T @ X[f, g]``: the filter spectrum's gradient (sum over the batch)."""
    return _run("grad_weight", grad_y_spec, x_spec, batch, groups, gauss)


@bl_product.register_fake
def _(x_spec, w_spec, batch, groups, gauss):
    return _fake("forward", x_spec, w_spec, batch, groups)


@bl_product_grad_input.register_fake
def _(grad_y_spec, w_spec, batch, groups, gauss):
    return _fake("grad_input", grad_y_spec, w_spec, batch, groups)


@bl_product_grad_weight.register_fake
def _(grad_y_spec, x_spec, batch, groups, gauss):
    return _fake("grad_weight", grad_y_spec, x_spec, batch, groups)


def _save_operands(ctx, inputs, output) -> None:
    first, second, batch, groups, gauss = inputs
    ctx.save_for_backward(first, second)
    ctx.config = (batch, groups, gauss)


def _product_backward(ctx, grad):
    # y = X conj(W)^T: dX = G W (grad_input), dW = conj(G)^T X (grad_weight).
    x_spec, w_spec = ctx.saved_tensors
    grad_x = bl_product_grad_input(grad, w_spec, *ctx.config) if ctx.needs_input_grad[0] else None
    grad_w = bl_product_grad_weight(grad, x_spec, *ctx.config) if ctx.needs_input_grad[1] else None
    return grad_x, grad_w, None, None, None


def _grad_input_backward(ctx, grad):
    # gx = GY W: dGY = G conj(W)^T (the forward product), dW = conj(GY)^T G (grad_weight).
    grad_y_spec, w_spec = ctx.saved_tensors
    d_grad_y = bl_product(grad, w_spec, *ctx.config) if ctx.needs_input_grad[0] else None
    d_w = bl_product_grad_weight(grad_y_spec, grad, *ctx.config) if ctx.needs_input_grad[1] else None
    return d_grad_y, d_w, None, None, None


def _grad_weight_backward(ctx, grad):
    # gw = conj(GY)^T X: dGY = X conj(G)^T (the forward product of X with G), dX = GY G (grad_input).
    grad_y_spec, x_spec = ctx.saved_tensors
    d_grad_y = bl_product(x_spec, grad, *ctx.config) if ctx.needs_input_grad[0] else None
    d_x = bl_product_grad_input(grad_y_spec, grad, *ctx.config) if ctx.needs_input_grad[1] else None
    return d_grad_y, d_x, None, None, None


bl_product.register_autograd(_product_backward, setup_context=_save_operands)
bl_product_grad_input.register_autograd(_grad_input_backward, setup_context=_save_operands)
bl_product_grad_weight.register_autograd(_grad_weight_backward, setup_context=_save_operands)
