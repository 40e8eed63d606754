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
  :func:`reference_product` (``"torch"``) or the kernel (``"cupy"``: launched directly in eager calls, through
  the op while traced, so compiled and exported graphs hold the op). The products are each other's real
  adjoints (:func:`adjoint_products`, shared by both), so the backward pass is products again and
  differentiates to any order; it has ``setup_context`` and a ``vmap`` rule, so ``torch.func`` transforms
  work, and an eager twin without ``setup_context`` (:mod:`freqnets._autograd`), which eager calls take.

The layer resolves ``backend="auto"`` before it calls in (:func:`freqnets.layers.band_limited_conv.resolve_backend`).
"""

from __future__ import annotations

import torch

from .. import _autograd
from .._autograd import runs_eagerly
from ..kernels import cupy_backend
from ..kernels.operands import product_operands, product_shape
from .spectral_plan import _constant

#: Backends the op accepts (already resolved: no ``"auto"`` here).
OP_BACKENDS = ("torch", "cupy")


def reference_product(
    product: str, first: torch.Tensor, second: torch.Tensor, batch: int, groups: int
) -> torch.Tensor:
    """One of the three products in torch: ``C = op(A) @ op(B)`` per kept frequency and group.

    ``product``, operands and result layouts as :func:`freqnets.kernels.operands.product_operands`.
    Gauss's trick: for ``(a + ib)(c + id)``, ``k1 = (a - b) d``, ``k2 = a (c - d)``, ``k3 = b (c + d)``
    give ``k1 + k2 + i (k1 + k3)``: three real products instead of four (measured faster than four, or
    than complex ``bmm``, at every layer shape of ``freqnets bench conv``). Written so that ``k2`` and
    ``k3`` are one batched product of both planes of ``A`` with ``[c - d, c + d]``, and conjugated
    operands are folded into the signs, never materialised::

        A  B     a_sum     right factors     result          (flat planar operands, per frequency)
        .  .     ar - ai   [br - bi, br + bi]  k1 + [k2, k3]   (grad_input)
        .  conj  ar - ai   [br + bi, br - bi]  [k2, k3] - k1   (forward: d -> -d)
        conj .   ar + ai   [bi - br, bi + br]  k1 - [k2, k3]   (grad_weight: b -> -b)

    with ``k1 = a_sum @ bi`` and ``[k2, k3] = [ar, ai] @ right``.
    """
    conj_a, conj_b = product == "grad_weight", product == "forward"
    if groups == 1:  # plain batches of matrices: 3D views of the flat operands, no copies
        first, second, k, m, r, n = product_shape(product, first, second, batch, groups)
        a_re, a_im = first[0], first[1]
        a_planes = first.view(2 * k, r, m).mT if conj_a else first.view(2 * k, m, r)
        b_im = second[1]
    else:  # the groups interleave in the flat layouts: (2, K, G, rows, cols) views, matmul copies them
        ops = product_operands(product, first, second, batch, groups)
        a_re, a_im, a_planes, b_im = ops.a[0], ops.a[1], ops.a, ops.b[1]
        second = ops.b
    a_sum = a_re + a_im if conj_a else a_re - a_im
    signs = _signs(second, (1.0, -1.0) if conj_b else (-1.0, 1.0))
    # [bi - br, bi + br] or [br -+ bi, br +- bi]
    right = torch.addcmul(second[1:], signs, second[:1]) if conj_a else torch.addcmul(second[:1], signs, second[1:])
    if groups == 1:
        a_sum = a_sum.view(k, r, m).mT if conj_a else a_sum.view(k, m, r)
        if conj_b:  # B is stored transposed, (N x R) per frequency
            b_im, right = b_im.view(k, n, r).mT, right.view(2 * k, n, r).mT
        else:
            b_im, right = b_im.view(k, r, n), right.view(2 * k, r, n)
        k1 = torch.bmm(a_sum, b_im)
        k23 = torch.bmm(a_planes, right).view(2, k, m, n)
    else:
        k1, k23 = a_sum @ b_im, a_planes @ right
    result = k1 - k23 if conj_a else (k23 - k1 if conj_b else k1 + k23)
    if groups == 1:
        return result.view(2, k, m * n)
    if ops.c.is_contiguous():  # the result's layout is the flat output's: no copy
        return result.view(ops.out.shape)
    ops.c.copy_(result)  # the groups interleave in the flat output
    return ops.out


@_constant(maxsize=64)
def _sign_planes(signs: tuple[float, float], dims: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(signs, dtype=dtype, device=device).view(2, *(1,) * (dims - 1))


def _signs(like: torch.Tensor, signs: tuple[float, float]) -> torch.Tensor:
    """Per-plane signs ``(2, 1, ...)`` to broadcast against ``like``, in its dtype and device (cached)."""
    return _sign_planes(signs, like.dim(), like.device, like.dtype)


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


def _op_backward(ctx, grad):  # the op's own: its adjoints through the op
    first, second = ctx.saved_tensors

    def apply(product, a, b):
        return bl_product(product, a, b, *ctx.config)

    d_first, d_second = adjoint_products(ctx.product, first, second, grad, ctx.needs_input_grad[1:3], apply)
    return None, d_first, d_second, None, None, None, None


# The op differentiates by itself too (to any order: its backward is the op again), so code that calls it
# directly, torch.compile's and torch.export's traces of it, and torch.library.opcheck with inputs that
# require grad see the same adjoints as BandLimitedProduct.
bl_product.register_autograd(_op_backward, setup_context=_save_operands)


def _forward(product, first, second, batch, groups, gauss, backend):
    if backend == "torch":
        # The torch product directly: the op's dispatch costs about as much as the product itself on
        # small layers, and torch.compile / torch.export see plain aten ops (fusable, exportable).
        return reference_product(product, first, second, batch, groups)
    if backend == "cupy" and runs_eagerly():
        # The kernel directly: the op's dispatch (torch.library, its autograd key, then the implementation)
        # is host time on every call; traces still record the op (the branch below).
        return cupy_backend.launch(product_operands(product, first, second, batch, groups), gauss)
    return bl_product(product, first, second, batch, groups, gauss, backend)


def _backward(ctx, grad):
    first, second = ctx.saved_tensors

    def apply(product, a, b):
        return band_limited_product(product, a, b, *ctx.config)

    d_first, d_second = adjoint_products(ctx.product, first, second, grad, ctx.needs_input_grad[1:3], apply)
    return None, d_first, d_second, None, None, None, None


class BandLimitedProduct(torch.autograd.Function):
    """``BandLimitedProduct.apply(product, first, second, batch, groups, gauss, backend)``: a product, differentiable.

    Its backward is :func:`adjoint_products` through :func:`band_limited_product` again, so it differentiates
    to any order. It has ``setup_context`` and a ``vmap`` rule, so ``torch.func`` transforms work; eager calls
    go through its twin without ``setup_context`` (see :func:`band_limited_product`).
    """

    forward = staticmethod(_forward)
    setup_context = staticmethod(_save_operands)
    backward = staticmethod(_backward)

    @staticmethod
    def vmap(info, in_dims, product, first, second, batch, groups, gauss, backend):
        first_dim, second_dim = in_dims[1], in_dims[2]
        if second_dim is None and product != "grad_weight":
            # A mapped first operand is more batch: (V, 2, K, B * n) -> (2, K, V * B * n), one product.
            stacked = first.movedim(first_dim, 2).flatten(2)
            out = band_limited_product(product, stacked, second, info.batch_size * batch, groups, gauss, backend)
            return out.unflatten(2, (info.batch_size, -1)), 2
        # Otherwise one product per mapped slice (the weight gradient sums over the batch, so it cannot fold).
        outs = [
            band_limited_product(
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


#: :class:`BandLimitedProduct` for eager calls: ``Function.apply`` without ``setup_context``'s argument binding.
_EagerProduct = _autograd.eager_twin(BandLimitedProduct)


def band_limited_product(
    product: str,
    first: torch.Tensor,
    second: torch.Tensor,
    batch: int,
    groups: int,
    gauss: bool = False,
    backend: str = "torch",
) -> torch.Tensor:
    """``product`` of the planar spectra, differentiable to any order: :class:`BandLimitedProduct`, or in eager
    calls its twin of the same forward, saved tensors and backward (:mod:`freqnets._autograd`)."""
    return _autograd.apply(BandLimitedProduct, _EagerProduct, product, first, second, batch, groups, gauss, backend)
