"""The three band-limited products as strided planar GEMMs: operand views and kernel arguments (no CuPy).

The band-limited layer keeps spectra in the planar layout of
:func:`freqnets.layers.spectral_plan.analysis`: ``(2, K, L)`` real tensors, plane 0
the real parts, ``K`` kept frequencies, ``L`` signals with the batch outermost:

* input spectrum ``x_spec (2, K, B * C)``, signal ``b * C + c``, ``c = g * C/g + c'``;
* filter spectrum ``w_spec (2, K, O * C/g)``, signal ``o * C/g + c'``, ``o = g * O/g + o'``;
* output spectrum and its gradient ``(2, K, B * O)``, signal ``b * O + o``.

Each product is a batch (over frequency ``f`` and group ``g``) of complex matrix
products whose operands are *views* of these tensors, so the kernel reads them in
place. The formulas are those of the torch specification
(:func:`freqnets.layers.spectral_product.reference_product`, on these same views)::

    forward       Y[f, g]  = X[f, g] @ conj(W[f, g])^T          (B x C/g) @ (C/g x O/g)
    grad_input    GX[f, g] = GY[f, g] @ W[f, g]                 (B x O/g) @ (O/g x C/g)
    grad_weight   GW[f, g] = conj(GY[f, g])^T @ X[f, g]         (O/g x B) @ (B x C/g)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import sources

PRODUCTS = ("forward", "grad_input", "grad_weight")

#: Most blocks one launch asks for (CUDA's grid x limit); the kernel loops over the rest.
MAX_GRID = 2**31 - 1


@dataclass(frozen=True)
class ProductOperands:
    """A product as ``C = op(A) @ op(B)`` over ``(2, F, G, rows, cols)`` planar views.

    Attributes:
        a, b: ``(2, F, G, M, R)`` and ``(2, F, G, R, N)`` views of the input spectra.
        out: the flat ``(2, F, L_out)`` result tensor, allocated contiguous.
        c: ``(2, F, G, M, N)`` view of ``out``.
        conj_a, conj_b: whether the kernel conjugates ``a`` / ``b`` on load.
    """

    a: torch.Tensor
    b: torch.Tensor
    out: torch.Tensor
    c: torch.Tensor
    conj_a: bool
    conj_b: bool


def _check_planar(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 3 or t.shape[0] != 2:
        raise ValueError(f"{name} must be a planar spectrum (2, K, L), got shape {tuple(t.shape)}")
    return t.contiguous()


def _split(total: int, parts: int, what: str, name: str) -> int:
    if parts <= 0 or total % parts:
        raise ValueError(f"{name} has {total} signals, not a multiple of {what} = {parts}")
    return total // parts


def _checked(
    product: str, first: torch.Tensor, second: torch.Tensor, batch: int, groups: int
) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
    """The operands (contiguous) after the checks of :func:`product_operands`, with ``K``, ``C/G`` and ``O/G``."""
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {', '.join(PRODUCTS)}, got {product!r}")
    for value, name in ((batch, "batch"), (groups, "groups")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    first, second = _check_planar(first, "first operand"), _check_planar(second, "second operand")
    if first.shape[1] != second.shape[1]:
        raise ValueError(f"operands keep different frequency counts: {first.shape[1]} and {second.shape[1]}")
    if first.dtype != second.dtype or first.device != second.device:
        raise ValueError(
            f"operands differ in dtype/device: {first.dtype}/{first.device} and {second.dtype}/{second.device}"
        )
    g = groups
    if product == "forward":
        c = _split(first.shape[2], batch, "batch", "x_spec")
        cg = _split(c, g, "groups", "x_spec's channels")
        o = _split(second.shape[2], cg, "in_channels / groups", "w_spec")
        og = _split(o, g, "groups", "w_spec's out channels")
    else:
        o = _split(first.shape[2], batch, "batch", "grad_y_spec")
        og = _split(o, g, "groups", "grad_y_spec's channels")
        if product == "grad_input":
            cg = _split(second.shape[2], o, "out_channels", "w_spec")
        else:
            c = _split(second.shape[2], batch, "batch", "x_spec")
            cg = _split(c, g, "groups", "x_spec's channels")
    return first, second, first.shape[1], cg, og


def product_shape(
    product: str, first: torch.Tensor, second: torch.Tensor, batch: int, groups: int
) -> tuple[torch.Tensor, torch.Tensor, int, int, int, int]:
    """The checked operands and one product's matrix sizes: ``(first, second, K, M, R, N)``.

    Per kept frequency and group the product is ``(M x R) @ (R x N)``: ``forward`` ``(B x C/g) @ (C/g x O/g)``,
    ``grad_input`` ``(B x O/g) @ (O/g x C/g)``, ``grad_weight`` ``(O/g x B) @ (B x C/g)``. Raises as
    :func:`product_operands`; the operands are returned contiguous.
    """
    first, second, k, cg, og = _checked(product, first, second, batch, groups)
    m, r, n = {"forward": (batch, cg, og), "grad_input": (batch, og, cg), "grad_weight": (og, batch, cg)}[product]
    return first, second, k, m, r, n


def product_operands(
    product: str, first: torch.Tensor, second: torch.Tensor, batch: int, groups: int
) -> ProductOperands:
    """Views of one product's operands and its (uninitialised) output.

    Args:
        product: ``"forward"`` (``first = x_spec, second = w_spec``), ``"grad_input"``
            (``grad_y_spec, w_spec``) or ``"grad_weight"`` (``grad_y_spec, x_spec``).
        batch: ``B``; groups: the convolution's groups ``G``.

    Returns:
        :class:`ProductOperands`; ``out`` is ``(2, K, B * O)``, ``(2, K, B * C)`` or
        ``(2, K, O * C/G)`` for the three products.

    Raises:
        ValueError: unknown product, or shapes that do not divide into ``batch`` and ``groups``.
    """
    first, second, k, cg, og = _checked(product, first, second, batch, groups)
    g, o = groups, groups * og
    new = first.new_empty
    if product == "forward":
        a = first.view(2, k, batch, g, cg).transpose(2, 3)
        b = second.view(2, k, g, og, cg).transpose(3, 4)
        out = new(2, k, batch * o)
        return ProductOperands(a, b, out, out.view(2, k, batch, g, og).transpose(2, 3), False, True)
    grad_y = first.view(2, k, batch, g, og).transpose(2, 3)  # (2, K, G, B, O/g)
    if product == "grad_input":
        b = second.view(2, k, g, og, cg)
        out = new(2, k, batch * g * cg)
        return ProductOperands(grad_y, b, out, out.view(2, k, batch, g, cg).transpose(2, 3), False, False)
    b = second.view(2, k, batch, g, cg).transpose(2, 3)
    out = new(2, k, o * cg)
    return ProductOperands(grad_y.transpose(3, 4), b, out, out.view(2, k, g, og, cg), True, False)


@dataclass(frozen=True)
class KernelArguments:
    """The scalar arguments of ``planar_cgemm_*`` (see spectral_product.cu), element units, 64-bit.

    ``a_offset`` etc. are the operands' element offsets in their storage; the launcher adds
    them to the storage's base pointer, the NumPy emulation indexes flat storage with them.
    """

    name: str
    a_offset: int
    a_strides: tuple[int, int, int, int, int]  # plane, f, g, row, reduction
    b_offset: int
    b_strides: tuple[int, int, int, int, int]  # plane, f, g, reduction, col
    c_offset: int
    c_strides: tuple[int, int, int, int, int]  # plane, f, g, row, col
    num_freqs: int
    groups: int
    m: int
    n: int
    r: int
    conj_a: int
    conj_b: int
    grid: int
    block: int

    def scalars(self) -> tuple[int, ...]:
        """Everything after each pointer, in the kernel's parameter order (pointers excluded)."""
        return (
            *self.a_strides,
            *self.b_strides,
            *self.c_strides,
            self.num_freqs,
            self.groups,
            self.m,
            self.n,
            self.r,
            self.conj_a,
            self.conj_b,
        )


def kernel_arguments(ops: ProductOperands, gauss: bool, max_grid: int = MAX_GRID) -> KernelArguments:
    """Arguments and launch shape of the kernel computing ``ops``; one block per output tile, at most ``max_grid``."""
    dtype_name = str(ops.a.dtype).removeprefix("torch.")
    _, f, g, m, r = ops.a.shape
    n = ops.b.shape[-1]
    tiles = f * g * -(-m // sources.TILE_M) * -(-n // sources.TILE_N)
    return KernelArguments(
        name=sources.kernel_name(dtype_name, gauss),
        a_offset=ops.a.storage_offset(),
        a_strides=tuple(ops.a.stride()),
        b_offset=ops.b.storage_offset(),
        b_strides=tuple(ops.b.stride()),
        c_offset=ops.c.storage_offset(),
        c_strides=tuple(ops.c.stride()),
        num_freqs=f,
        groups=g,
        m=m,
        n=n,
        r=r,
        conj_a=int(ops.conj_a),
        conj_b=int(ops.conj_b),
        grid=max(1, min(tiles, max_grid)),
        block=sources.THREADS,
    )
