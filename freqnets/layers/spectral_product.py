"""The band-limited product over channels: its one torch specification, its custom op, its autograd.

Three products over the flat planar spectra of :func:`freqnets.layers.spectral_plan.analysis`
(layouts and operand views in :mod:`freqnets.kernels.operands`)::

    "forward"      Y  = X conj(W)^T     (x_spec, w_spec)       -> (2, K, B * O)
    "grad_input"   GX = GY W            (grad_y_spec, w_spec)  -> (2, K, B * C)
    "grad_weight"  GW = conj(GY)^T X    (grad_y_spec, x_spec)  -> (2, K, O * C/g)

per kept frequency and group. Three layers, each written once:

* :func:`reference_product`: the arithmetic in torch, the specification the CUDA kernels are tested against;
* ``freqnets::bl_product(product, first, second, batch, groups, gauss, backend)``: a ``torch.library``
  custom op that launches ``planar_cgemm_*`` through :mod:`freqnets.kernels.cupy_backend`
  (``backend="cupy"``: CUDA tensors only, no silent fallback) or runs :func:`reference_product`
  (``"torch"``, so the op can be checked anywhere). Its fake implementation lets ``torch.compile``
  and ``torch.export`` trace the kernel as one opaque node, and it differentiates by itself
  (``register_autograd``), for code that calls it directly;
* :class:`BandLimitedProduct`: the autograd function the layers use, and the one place that picks
  :func:`reference_product` (``"torch"``) or the op (``"cupy"``). The products are each other's
  real adjoints (:func:`adjoint_products`, shared by both), so the backward pass is products again and
  differentiates to any order; it has ``setup_context`` and a ``vmap`` rule, so ``torch.func`` transforms work.

The layer resolves ``backend="auto"`` before it calls in (:func:`freqnets.layers.band_limited_conv.resolve_backend`).
"""

from __future__ import annotations

import torch

from ..kernels import cupy_backend
from ..kernels.operands import product_operands

#: Backends the op accepts (already resolved: no ``"auto"`` here).
OP_BACKENDS = ("torch", "cupy")


def reference_product(
    product: str, first: torch.Tensor, second: torch.Tensor, batch: int, groups: int
) -> torch.Tensor:
    """One of the three products in torch: ``C = op(A) @ op(B)`` per kept frequency and group.

    ``product``, operands and result layouts as :func:`freqnets.kernels.operands.product_operands`.
    Gauss's trick: for ``(a + ib)(c + id)``, ``k1 = (a + b) c``, ``k2 = a (d - c)``,
    ``k3 = b (c + d)`` give ``k1 - k3 + i (k1 + k2)``: three real products instead of four
    (measured faster than four, or than complex ``bmm``, at every layer shape of
    ``freqnets bench conv``). Conjugated operands are folded into the signs, never materialised.
    """
    ops = product_operands(product, first, second, batch, groups)
    ar, ai, br, bi = ops.a[0], ops.a[1], ops.b[0], ops.b[1]
    k1 = (ar - ai if ops.conj_a else ar + ai) @ br
    k2 = ar @ (-(bi + br) if ops.conj_b else bi - br)
    k3 = ai @ (br - bi if ops.conj_b else br + bi)
    result = torch.stack([k1 + k3 if ops.conj_a else k1 - k3, k1 + k2])
    if ops.c.is_contiguous():  # the result's layout is the flat output's: no copy
        return result.view(ops.out.shape)
    ops.c.copy_(result)  # groups > 1: the groups interleave in the flat output
    return ops.out


def _fake_product(product: str, first: torch.Tensor, second: torch.Tensor, batch: int, groups: int) -> torch.Tensor:
    k = first.shape[1]
    if product == "forward":  # (2, K, B C), (2, K, O C/g) -> (2, K, B O)
        cg = first.shape[2] // batch // groups
        return first.new_empty(2, k, batch * (second.shape[2] // cg))
    o = first.shape[2] // batch
    if product == "grad_input":  # (2, K, B O), (2, K, O C/g) -> (2, K, B C)
        return first.new_empty(2, k, batch * groups * (second.shape[2] // o))
    return first.new_empty(2, k, o * (second.shape[2] // batch // groups))  # -> (2, K, O C/g)


@torch.library.custom_op("freqnets::bl_product", mutates_args=())
def bl_product(
    product: str,
    first: torch.Tensor,
    second: torch.Tensor,
    batch: int,
    groups: int,
    gauss: bool = False,
    backend: str = "torch",
) -> torch.Tensor:
    """One product; differentiable by itself (its autograd is :func:`adjoint_products` through the op again).

    ``gauss`` picks the kernel's three-multiplication form (``backend="cupy"`` only; the torch
    product always uses it).
    """
    if backend == "cupy":
        return cupy_backend.launch(product_operands(product, first, second, batch, groups), gauss)
    if backend != "torch":
        raise ValueError(f"backend of the product op must be one of {', '.join(OP_BACKENDS)}, got {backend!r}")
    return reference_product(product, first, second, batch, groups)


@bl_product.register_fake
def _(product, first, second, batch, groups, gauss=False, backend="torch"):
    return _fake_product(product, first, second, batch, groups)


def adjoint_products(product, first, second, grad, wanted, apply):
    """Gradients of ``product(first, second)`` for the output gradient ``grad``: products again.

    ``wanted`` is ``(first wanted, second wanted)``; ``apply(product, a, b)`` computes one product (the
    autograd function or the op, so each route differentiates with its own kind). The adjoints (real inner
    product on the planar spectra)::

        Y  = X conj(W)^T :  dX = G W (grad_input),            dW = conj(G)^T X (grad_weight)
        GX = GY W        :  dGY = G conj(W)^T (forward),       dW = conj(GY)^T G (grad_weight)
        GW = conj(GY)^T X:  dGY = X conj(G)^T (forward),       dX = GY G (grad_input)

    Returns:
        ``(d_first, d_second)``, ``None`` where not wanted.
    """
    if product == "forward":  # first = X, second = W
        pairs = (("grad_input", grad, second), ("grad_weight", grad, first))
    elif product == "grad_input":  # first = GY, second = W
        pairs = (("forward", grad, second), ("grad_weight", first, grad))
    else:  # grad_weight: first = GY, second = X
        pairs = (("forward", second, grad), ("grad_input", first, grad))
    d_first = apply(*pairs[0]) if wanted[0] else None
    d_second = apply(*pairs[1]) if wanted[1] else None
    return d_first, d_second


def _save_operands(ctx, inputs, output):
    product, first, second, *config = inputs
    ctx.save_for_backward(first, second)
    ctx.product, ctx.config = product, tuple(config)  # (batch, groups, gauss, backend)


def _op_backward(ctx, grad):
    first, second = ctx.saved_tensors

    def apply(product, a, b):
        return bl_product(product, a, b, *ctx.config)

    d_first, d_second = adjoint_products(ctx.product, first, second, grad, ctx.needs_input_grad[1:3], apply)
    return None, d_first, d_second, None, None, None, None


# The op differentiates by itself too (to any order: its backward is the op again), so code that calls it
# directly, torch.compile's and torch.export's traces of it, and torch.library.opcheck with inputs that
# require grad see the same adjoints as BandLimitedProduct.
bl_product.register_autograd(_op_backward, setup_context=_save_operands)


class BandLimitedProduct(torch.autograd.Function):
    """``BandLimitedProduct.apply(product, first, second, batch, groups, gauss, backend)``: a product, differentiable.

    Its backward is :func:`adjoint_products` through this function again, so it differentiates to any order.
    """

    @staticmethod
    def forward(product, first, second, batch, groups, gauss, backend):
        if backend == "torch":
            # The torch product directly: the op's dispatch costs about as much as the product itself on
            # small layers, and torch.compile / torch.export see plain aten ops (fusable, exportable).
            return reference_product(product, first, second, batch, groups)
        return bl_product(product, first, second, batch, groups, gauss, backend)

    setup_context = staticmethod(_save_operands)

    @staticmethod
    def backward(ctx, grad):
        first, second = ctx.saved_tensors

        def apply(product, a, b):
            return BandLimitedProduct.apply(product, a, b, *ctx.config)

        d_first, d_second = adjoint_products(ctx.product, first, second, grad, ctx.needs_input_grad[1:3], apply)
        return None, d_first, d_second, None, None, None, None

    @staticmethod
    def vmap(info, in_dims, product, first, second, batch, groups, gauss, backend):
        first_dim, second_dim = in_dims[1], in_dims[2]
        if second_dim is None and product != "grad_weight":
            # A mapped first operand is more batch: (V, 2, K, B * n) -> (2, K, V * B * n), one product.
            stacked = first.movedim(first_dim, 2).flatten(2)
            out = BandLimitedProduct.apply(product, stacked, second, info.batch_size * batch, groups, gauss, backend)
            return out.unflatten(2, (info.batch_size, -1)), 2
        # Otherwise one product per mapped slice (the weight gradient sums over the batch, so it cannot fold).
        outs = [
            BandLimitedProduct.apply(
                product,
                first if first_dim is None else first.select(first_dim, i),
                second if second_dim is None else second.select(second_dim, i),
                batch,
                groups,
                gauss,
                backend,
            )
            for i in range(info.batch_size)
        ]
        return torch.stack(outs), 0


def band_limited_product(
    product: str,
    first: torch.Tensor,
    second: torch.Tensor,
    batch: int,
    groups: int,
    gauss: bool = False,
    backend: str = "torch",
) -> torch.Tensor:
    """:class:`BandLimitedProduct` as a function: ``product`` of the planar spectra, differentiable to any order."""
    return BandLimitedProduct.apply(product, first, second, batch, groups, gauss, backend)
