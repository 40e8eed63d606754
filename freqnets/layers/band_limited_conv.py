"""Band-limited convolution: FFT convolution that discards the high-frequency spectrum.

For an input ``x`` and filter ``w``, with ``M`` the FFT domain's kept set at the
compress rate (:func:`freqnets.transforms.rfft_kept_mask` on the layer's FFT
grid), the layer computes the cross-correlation (as ``F.conv2d``)::

    y = subsample_stride( IDFT( M * DFT(x) * conj(DFT(w)) ) )

so the input and the filter are band-limited before they meet. The backward
pass is the exact gradient of that map, which is the paper's recipe: the
gradients of the input and the filter are the ordinary ones projected onto the
same band. The forward pass keeps only the compressed spectra of input and
filter (``K`` kept frequencies, not the input itself) and the backward pass
reuses them, so neither is transformed twice. At rate 0 the layer equals
``F.conv1d`` / ``F.conv2d``.

Reference: A. Dziedzic, J. Paparrizos, S. Krishnan, A. Elmore, M. Franklin,
"Band-limited Training and Inference for Convolutional Neural Networks", ICML 2019.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._autograd import runs_eagerly
from .._checks import check_rate, compute_dtype
from ..kernels import cupy_backend
from ..kernels.cupy_backend import BackendUnavailable
from ..transforms import conv2d_padding, int_pair
from . import spectral_plan, spectral_product
from .rates import CompressRateState
from .spectral_plan import (
    Positions,
    _constant,
    _kron_analysis,
    _kron_synthesis,
    analysis,
    analysis_matrix,
    kronecker_analysis,
    kronecker_synthesis,
    make_plan,
    synthesis,
    synthesis_matrix,
)
from .spectral_product import band_limited_product

#: ``"torch"``: the pure-PyTorch specification; ``"cupy"``: the CUDA kernels of :mod:`freqnets.kernels`
#: for the product over channels (CUDA tensors only); ``"auto"``: ``"cupy"`` for CUDA tensors when
#: CuPy and a GPU are present, ``"torch"`` otherwise.
BACKENDS = ("torch", "cupy", "auto")

def check_backend(backend: str) -> str:
    """Return ``backend`` after checking it is a name of :data:`BACKENDS` that can run on this machine.

    Raises:
        ValueError: unknown name.
        BackendUnavailable: ``"cupy"`` requested where CuPy or a CUDA GPU is missing.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "cupy":
        reason = cupy_backend.unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(f"{reason}; use backend='torch' or 'auto'")
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that runs for tensors on ``device``: ``"torch"`` or ``"cupy"``.

    Raises:
        BackendUnavailable: ``"cupy"`` requested for tensors that are not on a CUDA device.
    """
    if backend == "cupy":
        if device.type != "cuda":
            raise BackendUnavailable(
                f"backend='cupy' runs on CUDA tensors, got tensors on {device}; move the layer to a GPU "
                "or use backend='torch' or 'auto'"
            )
        return "cupy"
    if backend == "auto":
        return "cupy" if device.type == "cuda" and cupy_backend.is_available() else "torch"
    return "torch"


@dataclass(frozen=True)
class ConvGeometry:
    """Where input, filter and output samples sit on the FFT grid, per dim (rows, cols)."""

    input: tuple[Positions, Positions]
    kernel: tuple[Positions, Positions]
    output: tuple[Positions, Positions]
    padded_size: tuple[int, int]


def conv_geometry(
    size: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    padding: tuple[int, int, int, int],
) -> ConvGeometry:
    """Geometry of a convolution of a ``size`` input with zero padding ``(top, bottom, left, right)``.

    Zero padding costs nothing here: the input simply starts at ``top, left`` on
    the FFT grid. Raises ``ValueError`` when the dilated filter is larger than the
    padded input.
    """
    inputs, kernels, outputs, padded = [], [], [], []
    for dim in range(2):
        before, after = padding[2 * dim], padding[2 * dim + 1]
        length = before + size[dim] + after
        span = dilation[dim] * (kernel_size[dim] - 1) + 1
        if span > length:
            raise ValueError(
                f"input of size {tuple(size)} (padded to {length} in dim {dim}) is smaller than the "
                f"dilated kernel ({span})"
            )
        inputs.append(Positions(before, 1, size[dim]))
        kernels.append(Positions(0, dilation[dim], kernel_size[dim]))
        outputs.append(Positions(0, stride[dim], (length - span) // stride[dim] + 1))
        padded.append(length)
    return ConvGeometry(tuple(inputs), tuple(kernels), tuple(outputs), tuple(padded))


def conv_padding(
    padding: int | tuple[int, int] | str,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """``F.conv2d``'s ``padding`` (an int, ``(ph, pw)``, ``"valid"`` or ``"same"``) as ``(top, bottom, left, right)``.

    One rule for every domain: :func:`freqnets.transforms.conv2d_padding` (``"same"`` puts the odd
    pixel of an even total at the end, as ``nn.Conv2d`` does, and needs stride 1).
    """
    left, right, top, bottom = conv2d_padding(padding, kernel_size, dilation, stride)
    return top, bottom, left, right


def band_limited_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    compress_rate: float = 0.0,
    route: str = "auto",
    backend: str = "torch",
    gauss: bool = False,
    product_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Band-limited 2D correlation of ``x (B, C, H, W)`` with ``weight (O, C / groups, kh, kw)``.

    ``stride``, ``padding`` (zeros; an int, ``(ph, pw)``, ``"valid"`` or ``"same"``), ``dilation``
    and ``groups`` mean what they mean for ``F.conv2d``; other padding modes pad with ``F.pad`` first.

    Args:
        compress_rate: fraction of the one-sided spectrum discarded, ``0 <= rate < 1``.
        route: how spectra are computed (``"auto"``, ``"matmul"``, ``"fft"``); all give the same result.
        backend: ``"torch"``, ``"cupy"`` or ``"auto"`` (see :data:`BACKENDS`); the product over
            channels runs in the CuPy kernels for ``"cupy"``. A backend that cannot run raises
            :class:`~freqnets.kernels.BackendUnavailable`.
        gauss: the CuPy kernels' three-multiplication product (the torch product always uses it).
        product_dtype: dtype of the product over channels (default: the compute dtype, float32 for
            half inputs); ``torch.bfloat16``/``torch.float16`` trade accuracy for speed
            (docs/benchmarks.md measures both).

    Returns:
        ``(B, O, H_out, W_out)`` as ``F.conv2d`` with the same arguments, in ``x``'s dtype, or in
        autocast's dtype when autocast is on for ``x``'s device (as ``F.conv2d``).
    """
    stride, dilation = int_pair(stride, "stride", 1), int_pair(dilation, "dilation", 1)
    edges = conv_padding(padding, tuple(weight.shape[-2:]), stride, dilation)
    return _band_limited_conv2d(
        x, weight, bias, stride, edges, dilation, groups, compress_rate, route, backend, gauss, product_dtype
    )


def _band_limited_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    compress_rate: float,
    route: str = "auto",
    backend: str = "torch",
    gauss: bool = False,
    product_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """:func:`band_limited_conv2d` with zero padding ``(top, bottom, left, right)`` (the layers pad unevenly).

    Forward only: the backward pass is autograd's, through the transforms (linear torch ops, or on small
    grids one autograd function per transform whose backward is the adjoint transform) and the products
    (whose derivatives are products again), so it is exact to any order. Eager calls with grad on whose three
    transforms are 2D-DFT-matrix GEMMs run as one node of the same arithmetic (:class:`_FusedKroneckerConv`;
    with one group and the torch product, in :class:`GaussFolded`'s GEMMs); with grad mode off such calls
    (one group, torch product) run the same GEMMs without a node.
    """
    rate = check_rate(compress_rate)
    runs = resolve_backend(check_backend(backend), x.device)
    device = x.device
    autocast = torch.is_autocast_enabled(device.type)
    out_dtype = torch.get_autocast_dtype(device.type) if autocast else x.dtype
    dtype = compute_dtype(x.dtype if x.dtype == weight.dtype else torch.promote_types(x.dtype, weight.dtype))
    # Plans are made from static int sizes (torch.jit.trace hands out sizes as tensors).
    b, c, height, width = (int(n) for n in x.shape)
    o, cg, kh, kw = (int(n) for n in weight.shape)
    if b == 0:  # as nn.Conv2d: an empty output that still depends on the parameters
        top, bottom, left, right = padding
        padded = F.pad(x.to(dtype), (left, right, top, bottom))
        bias = None if bias is None else bias.to(dtype)
        return F.conv2d(padded, weight.to(dtype), bias, stride, 0, dilation, groups).to(out_dtype)
    kronecker = spectral_plan.KRONECKER_ADVANTAGE
    setup = _conv_setup((height, width), (kh, kw), stride, dilation, padding, rate, route, device, dtype, kronecker)
    geometry, plan = setup.geometry, setup.plan
    # The transforms compute in float32 at least (see compute_dtype); autocast must not recast their GEMMs.
    with torch.autocast(device.type, enabled=False) if autocast else nullcontext():
        x, weight = _as_dtype(x, dtype), _as_dtype(weight, dtype)
        fused = setup.fusable and product_dtype is None and FUSE_EAGER and runs_eagerly()
        if fused and torch.is_grad_enabled():
            bias = None if bias is None else _as_dtype(bias, dtype)
            y = _FusedKroneckerConv.apply(x, weight, bias, setup, b, groups, gauss, runs)[0]
            return _as_dtype(y, out_dtype)
        if fused and groups == 1 and runs == "torch":  # grad mode off (inference): the fused forward, no node
            y = _gauss_forward(x, weight, setup, b)[0]
            if bias is not None:
                y = y.add_(_as_dtype(bias, dtype).view(-1, 1, 1))
            return _as_dtype(y, out_dtype)
        if setup.x_matrix is not None:  # small grids: one GEMM with the kept set's 2D-DFT matrix
            x_spec = kronecker_analysis(x, setup.x_matrix)  # (2, K, B C)
        else:
            x_spec = analysis(x.reshape(b * c, height, width), plan, *geometry.input)
        if setup.w_matrix is not None:
            w_spec = kronecker_analysis(weight, setup.w_matrix)  # (2, K, O C/g)
        else:
            w_spec = analysis(weight.reshape(o * cg, kh, kw), plan, *geometry.kernel)
        if product_dtype is not None:
            x_spec, w_spec = _as_dtype(x_spec, product_dtype), _as_dtype(w_spec, product_dtype)
        y_spec = _as_dtype(band_limited_product("forward", x_spec, w_spec, b, groups, gauss, runs), dtype)
        out_rows, out_cols = geometry.output[0].count, geometry.output[1].count
        if setup.y_matrix is not None:
            y = kronecker_synthesis(y_spec, setup.y_matrix, (b, o, out_rows, out_cols))
        else:
            y = synthesis(y_spec, plan, *geometry.output).view(b, o, out_rows, out_cols)
        if bias is not None:
            y = y + _as_dtype(bias, dtype).view(1, -1, 1, 1)
    return _as_dtype(y, out_dtype)


def _as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)`` without the call (an op and, with grad, an autograd node) when it is a no-op."""
    return t if t.dtype == dtype else t.to(dtype)


class _ConvSetup:
    """What a call needs that depends only on sizes, rate, route, device and dtype: geometry, plan, and the
    2D-DFT matrices of input, filter and output positions (``None`` where the transform uses none).

    Where all three are 2D-DFT matrices (``fusable``), also the :class:`GaussFolded` matrices of the fused node.
    """

    def __init__(self, geometry: ConvGeometry, plan, x_matrix, w_matrix, y_matrix, folded=None) -> None:
        self.geometry, self.plan = geometry, plan
        self.x_matrix, self.w_matrix, self.y_matrix = x_matrix, w_matrix, y_matrix
        #: All three transforms are 2D-DFT-matrix GEMMs: eager calls can run as one :class:`_FusedKroneckerConv`.
        self.fusable = x_matrix is not None and w_matrix is not None and y_matrix is not None
        self.folded = folded
        if self.fusable:
            self.kept = int(x_matrix.shape[0]) // 2
            self.x_positions, self.w_positions = int(x_matrix.shape[1]), int(w_matrix.shape[1])
            self.y_positions = int(y_matrix.shape[1])
            self.out_size = (geometry.output[0].count, geometry.output[1].count)


class GaussFolded:
    """The matrices of the fused node's products as one batch of ``3K`` real GEMMs each, Gauss's sums folded in.

    Per kept frequency the three complex products of a layer call (``Y = X conj(W)^T``, ``GX = G W``,
    ``GW = conj(G)^T X``, see :mod:`~freqnets.layers.spectral_product`) are each three real products
    (Gauss's trick), run as one ``bmm`` over ``3K`` matrices: stacks of three real combinations of each
    operand's planes (``r``, ``i``: real and imaginary parts), and three result blocks ``p0, p1, p2``::

        product      first operand            second operand          result planes (re, im)
        forward      X: r - i, i, r           W: i, i - r, i + r      p2 - p0, -p1 - p0
        grad_input   G: r - i, r, i           W: i, i - r, i + r      p0 - p1, p0 + p2
        grad_weight  G: r - i, r, i  (^T)     X: r, r - i, r + i      p0 + p2, p0 - p1

    The stack of ``G`` (kept by no one) and each result's combination into planes are folded into the
    transforms' matrices. ``X`` and ``W`` are kept as their two planes (the spectra the layer saves,
    ``(2, K L)``): ``W``'s and the grad_weight's ``X`` stacks are one ``addcmul`` of them (``i + m r`` or
    ``r + m i`` for ``m = (0, -1, 1)``), the forward's ``X`` stack one small GEMM. Built in float64 from the
    :class:`_ConvSetup`'s 2D-DFT matrices ``x (2K, P_x)``, ``w (2K, P_w)``, ``y (2K, P_y)``.

    Attributes:
        y_forward: ``(3K, P_y)``: the forward product's ``(3K, B O)`` result -> ``y``.
        y_adjoint: ``(3K, P_y)``: ``grad_y`` -> the stack of ``G``.
        x_adjoint: ``(3K, P_x)``: the grad_input product's ``(3K, B C)`` -> ``grad_x``.
        w_adjoint_t: ``(P_w, 3K)``: the grad_weight product's ``(3K, O C)`` -> ``grad_w^T`` (this orientation
            of the GEMM ran about 3x faster on the CPU at 64 channels).
        x_mix: ``(3, 2)``: ``X``'s planes -> its forward stack.
        multipliers: ``(3, 1)``: ``m`` of the ``addcmul`` stacks.
    """

    def __init__(self, x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, device, dtype) -> None:
        (xr, xi), (wr, wi), (yr, yi) = x.chunk(2), w.chunk(2), y.chunk(2)

        def stack(*blocks):
            return torch.cat(blocks).to(device, dtype)

        self.y_forward = stack(-(yr + yi), -yi, yr)
        self.y_adjoint = stack(yr - yi, yr, yi)
        self.x_adjoint = stack(xr + xi, -xr, xi)
        self.w_adjoint_t = stack(wr + wi, -wi, wr).t().contiguous()
        self.x_mix = torch.tensor([[1.0, -1.0], [0.0, 1.0], [1.0, 0.0]], dtype=dtype, device=device)
        self.multipliers = torch.tensor([[0.0], [-1.0], [1.0]], dtype=dtype, device=device)


#: Eager calls with grad on the small-grid route run as one :class:`_FusedKroneckerConv` (tests switch it off
#: to compare with the path of separate nodes that traces take).
FUSE_EAGER = True


class _FusedKroneckerConv(torch.autograd.Function):
    """A whole small-grid layer call (analysis of ``x`` and ``w``, product, synthesis, bias) as one autograd node.

    ``apply(x (B, C, H, W), w (O, C/g, kh, kw), bias (O,) or None, setup, B, groups, gauss, backend)`` returns
    ``(y (B, O, H_out, W_out), x_spec, w_spec)``. With one group and ``backend="torch"``: six GEMMs
    (:func:`_gauss_forward`, Gauss's sums folded into :class:`GaussFolded`'s matrices), the spectra as planes
    ``(2, K B C)``, ``(2, K O C)``; otherwise the same GEMMs and product as the separate nodes
    (:func:`kronecker_analysis`, :func:`band_limited_product`, :func:`kronecker_synthesis`), the spectra
    ``(2, K, B C)``, ``(2, K, O C/g)``. Only the compressed spectra are saved. They are outputs too, so that a
    backward that builds a graph (double backward) reaches ``x`` and ``w`` through them: this node's backward
    then adds their gradients' adjoint transforms. The backward is written with differentiable ops, so it
    differentiates to any order. Eager calls only (the ``forward(ctx, ...)`` form): traces and ``torch.func``
    keep the separate nodes.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, setup, b, groups, gauss, backend):
        ctx.setup, ctx.config = setup, (b, groups, gauss, backend)
        ctx.x_shape, ctx.w_shape = x.shape, weight.shape
        ctx.set_materialize_grads(False)  # the spectra's gradients are None unless a double backward uses them
        if groups == 1 and backend == "torch":
            y, x_spec, w_spec = _gauss_forward(x, weight, setup, b)
            if bias is not None:
                y = y.add_(bias.view(-1, 1, 1))
            ctx.save_for_backward(x_spec, w_spec)
            return y, x_spec, w_spec
        k = setup.kept
        x_spec = torch.mm(setup.x_matrix, _flat(x, b * int(x.shape[1]), setup.x_positions).t()).view(2, k, -1)
        o = int(weight.shape[0])
        w_spec = torch.mm(setup.w_matrix, _flat(weight, o * int(weight.shape[1]), setup.w_positions).t())
        w_spec = w_spec.view(2, k, -1)
        y_spec = spectral_product._forward("forward", x_spec, w_spec, b, groups, gauss, backend)
        y = torch.mm(y_spec.view(2 * k, -1).t(), setup.y_matrix).view(b, o, *setup.out_size)
        if bias is not None:
            y = y.add_(bias.view(1, -1, 1, 1))
        ctx.save_for_backward(x_spec, w_spec)
        return y, x_spec, w_spec

    @staticmethod
    def backward(ctx, grad_y, grad_x_spec, grad_w_spec):
        device = ctx.saved_tensors[0].device.type
        if torch.is_autocast_enabled(device):  # a backward called under autocast: the transforms stay float32
            with torch.autocast(device, enabled=False):
                return _FusedKroneckerConv._backward(ctx, grad_y, grad_x_spec, grad_w_spec)
        return _FusedKroneckerConv._backward(ctx, grad_y, grad_x_spec, grad_w_spec)

    @staticmethod
    def _backward(ctx, grad_y, grad_x_spec, grad_w_spec):
        x_spec, w_spec = ctx.saved_tensors
        setup, (b, groups, gauss, backend) = ctx.setup, ctx.config
        want_x, want_w, want_bias = ctx.needs_input_grad[:3]
        if groups == 1 and backend == "torch":
            grad_x, grad_w = _gauss_backward(grad_y, x_spec, w_spec, setup, b, ctx.x_shape, ctx.w_shape, want_x, want_w)
            if want_x and grad_x_spec is not None:  # a double backward: the spectrum output's own gradient
                extra = torch.mm(grad_x_spec.view(2 * setup.kept, -1).t(), setup.x_matrix).view(ctx.x_shape)
                grad_x = extra if grad_x is None else grad_x + extra
            if want_w and grad_w_spec is not None:
                extra = torch.mm(grad_w_spec.view(2 * setup.kept, -1).t(), setup.w_matrix).view(ctx.w_shape)
                grad_w = extra if grad_w is None else grad_w + extra
            grad_bias = grad_y.sum((0, 2, 3)) if want_bias and grad_y is not None else None
            return grad_x, grad_w, grad_bias, None, None, None, None, None
        grad_x = grad_w = grad_bias = None
        if grad_y is not None and (want_x or want_w):
            g_spec = kronecker_analysis(grad_y, setup.y_matrix)  # (2, K, B O)
            if want_x:
                d_spec = band_limited_product("grad_input", g_spec, w_spec, b, groups, gauss, backend)
                grad_x_spec = d_spec if grad_x_spec is None else d_spec + grad_x_spec
            if want_w:
                d_spec = band_limited_product("grad_weight", g_spec, x_spec, b, groups, gauss, backend)
                grad_w_spec = d_spec if grad_w_spec is None else d_spec + grad_w_spec
        if want_x and grad_x_spec is not None:
            grad_x = kronecker_synthesis(grad_x_spec, setup.x_matrix, ctx.x_shape)
        if want_w and grad_w_spec is not None:
            grad_w = kronecker_synthesis(grad_w_spec, setup.w_matrix, ctx.w_shape)
        if want_bias and grad_y is not None:
            grad_bias = grad_y.sum((0, 2, 3))
        return grad_x, grad_w, grad_bias, None, None, None, None, None


def _gauss_forward(
    x: torch.Tensor, weight: torch.Tensor, setup: _ConvSetup, b: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused node's forward with one group and the torch product: :class:`GaussFolded`'s six GEMMs.

    Returns ``y (B, O, H_out, W_out)`` (no bias) and the spectra ``x_spec (2, K B C)``, ``w_spec (2, K O C)``
    (real and imaginary planes of ``(K, B, C)`` and ``(K, O, C)``), the two tensors the backward keeps.
    """
    k, folded = setup.kept, setup.folded
    c, o = int(x.shape[1]), int(weight.shape[0])
    x_spec = F.linear(setup.x_matrix, _flat(x, b * c, setup.x_positions)).view(2, -1)  # (2K, B C) as 2 planes
    w_spec = F.linear(setup.w_matrix, _flat(weight, o * c, setup.w_positions)).view(2, -1)
    x_stack = torch.mm(folded.x_mix, x_spec).view(3 * k, b, c)
    w_real, w_imag = w_spec.unbind()
    w_stack = torch.addcmul(w_imag, folded.multipliers, w_real).view(3 * k, o, c)
    products = torch.bmm(x_stack, w_stack.mT)  # (3K, B, O)
    y = torch.mm(products.view(3 * k, -1).t(), folded.y_forward)  # (B O, P_y)
    return y.view(b, o, *setup.out_size), x_spec, w_spec


def _gauss_backward(grad_y, x_spec, w_spec, setup, b, x_shape, w_shape, want_x, want_w):
    """``(grad_x, grad_w)`` (``None`` where not wanted) of :func:`_gauss_forward` for ``grad_y``: two GEMM
    batches of :class:`GaussFolded` sharing one transform of ``grad_y``, in plain differentiable ops (a double
    backward reaches ``x_spec`` and ``w_spec``). ``grad_w`` comes transposed in memory (a view of ``w_shape``)."""
    if grad_y is None:
        return None, None
    k, folded = setup.kept, setup.folded
    c, o = int(x_shape[1]), int(w_shape[0])
    g_stack = F.linear(folded.y_adjoint, _flat(grad_y, b * o, setup.y_positions)).view(3 * k, b, o)
    grad_x = grad_w = None
    if want_x:
        w_real, w_imag = w_spec.unbind()
        w_stack = torch.addcmul(w_imag, folded.multipliers, w_real).view(3 * k, o, c)
        products = torch.bmm(g_stack, w_stack)  # (3K, B, C)
        grad_x = torch.mm(products.view(3 * k, -1).t(), folded.x_adjoint).view(x_shape)
    if want_w:
        x_real, x_imag = x_spec.unbind()
        x_stack = torch.addcmul(x_real, folded.multipliers, x_imag).view(3 * k, b, c)
        products = torch.bmm(g_stack.mT, x_stack)  # (3K, O, C)
        grad_w = torch.mm(folded.w_adjoint_t, products.view(3 * k, -1)).t().view(w_shape)
    return grad_x, grad_w


def _flat(t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``t`` as ``(rows, cols)``: a view when contiguous (channels_last inputs are copied)."""
    return t.view(rows, cols) if t.is_contiguous() else t.reshape(rows, cols)


@_constant(maxsize=1024)
def _conv_setup(size, kernel_size, stride, dilation, padding, rate, route, device, dtype, kronecker) -> _ConvSetup:
    """The :class:`_ConvSetup` of one call, built once per combination (then one dict lookup per call).

    ``kronecker`` is :data:`~freqnets.layers.spectral_plan.KRONECKER_ADVANTAGE`, which decides the matrices:
    part of the key, so that a changed setting takes effect.
    """
    geometry = conv_geometry(size, kernel_size, stride, dilation, padding)
    plan = make_plan(geometry.padded_size, rate, route)
    matrices = (
        analysis_matrix(plan, *geometry.input, device, dtype),
        analysis_matrix(plan, *geometry.kernel, device, dtype),
        synthesis_matrix(plan, *geometry.output, device, dtype),
    )
    folded = None
    if all(m is not None for m in matrices):  # the fused node's matrices, combined in float64
        cpu, f64 = torch.device("cpu"), torch.float64
        exact = (_kron_analysis(plan, *geometry.input, cpu, f64), _kron_analysis(plan, *geometry.kernel, cpu, f64))
        folded = GaussFolded(*exact, _kron_synthesis(plan, *geometry.output, cpu, f64), device, dtype)
    return _ConvSetup(geometry, plan, *matrices, folded)


class _BandLimitedMixin(CompressRateState):
    """What BandLimitedConv1d and BandLimitedConv2d share: rate (saved in the state_dict), backend, checks."""

    backend: str
    _spatial_dims: int

    def _init_band_limited(self, compress_rate: float, backend: str) -> None:
        # compress_rate and rate_frozen (set by calibrate_rates) are state: see freqnets.layers.rates.
        self._init_rate_state(compress_rate)
        #: The requested backend (``"torch"``, ``"cupy"`` or ``"auto"``); :attr:`resolved_backend` is what runs.
        self.backend = check_backend(backend)

    @property
    def resolved_backend(self) -> str:
        """The backend that runs for this layer's parameters' device: ``"torch"`` or ``"cupy"``.

        ``"auto"`` resolves by the device; ``"cupy"`` stays ``"cupy"`` (a forward pass on CPU tensors raises).
        """
        if self.backend == "auto":
            return resolve_backend("auto", self.weight.device)
        return self.backend

    def _batched(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` and return it with a batch dim."""
        self._check_input(x, self._spatial_dims)
        return x.unsqueeze(0) if x.dim() == self._spatial_dims + 1 else x

    def _check_input(self, x: torch.Tensor, spatial_dims: int) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in (spatial_dims + 1, spatial_dims + 2):
            raise ValueError(
                f"{type(self).__name__} expects input of {spatial_dims + 2} dims (batched) or "
                f"{spatial_dims + 1} (unbatched), got shape {tuple(x.shape)}"
            )
        if x.shape[-spatial_dims - 1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects {self.in_channels} input channels, got {x.shape[-spatial_dims - 1]} "
                f"(input shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise TypeError(f"input must have a floating dtype, got {x.dtype}")

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Apply non-zero padding modes with ``F.pad``; return the zero padding left to the FFT grid."""
        pad = self._reversed_padding_repeated_twice  # (left, right, top, bottom) for 2D
        if self.padding_mode != "zeros":
            return F.pad(x, pad, mode=self.padding_mode), (0,) * len(pad)
        return x, tuple(pad)

    def extra_repr(self) -> str:
        backend = f"{self.backend!r}" + (f" ({self.resolved_backend})" if self.backend == "auto" else "")
        return super().extra_repr() + f", compress_rate={self.compress_rate}, backend={backend}"


class BandLimitedConv2d(_BandLimitedMixin, nn.Conv2d):
    """Drop-in ``nn.Conv2d`` that computes in the FFT domain and discards high frequencies.

    Same arguments, parameter names and shapes as ``nn.Conv2d`` (so ``state_dict``
    moves both ways), plus:

    Args:
        compress_rate: fraction of the spectrum of input and filter discarded, ``0 <= rate < 1``.
        backend: ``"torch"`` (the pure-PyTorch specification), ``"cupy"`` (the product over channels
            in CUDA kernels; CUDA tensors only) or ``"auto"`` (``"cupy"`` on CUDA tensors when CuPy and
            a GPU are present, else ``"torch"``). :attr:`resolved_backend` says which one runs.

    Shape:
        input ``(B, C_in, H, W)`` or ``(C_in, H, W)``; output as ``nn.Conv2d``.

    Example:
        >>> conv = BandLimitedConv2d(3, 8, 3, padding=1, compress_rate=0.5)
        >>> conv(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 8, 32, 32])
    """

    _spatial_dims = 2

    def __init__(self, *args, compress_rate: float = 0.0, backend: str = "torch", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_band_limited(compress_rate, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unbatched = x.dim() == 3
        x, (left, right, top, bottom) = self._padded(self._batched(x))
        y = _band_limited_conv2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            (top, bottom, left, right),
            self.dilation,
            self.groups,
            self.compress_rate,
            backend=self.backend,
        )
        return y.squeeze(0) if unbatched else y


class BandLimitedConv1d(_BandLimitedMixin, nn.Conv1d):
    """Drop-in ``nn.Conv1d`` that computes in the FFT domain and discards high frequencies.

    Same arguments, parameter names and shapes as ``nn.Conv1d``, plus
    ``compress_rate`` and ``backend`` as in :class:`BandLimitedConv2d`. A signal of
    length ``L`` is computed as a ``1 x L`` image.

    Shape:
        input ``(B, C_in, L)`` or ``(C_in, L)``; output as ``nn.Conv1d``.

    Example:
        >>> conv = BandLimitedConv1d(4, 4, 129, padding=64, compress_rate=0.25)
        >>> conv(torch.randn(2, 4, 1000)).shape
        torch.Size([2, 4, 1000])
    """

    _spatial_dims = 1

    def __init__(self, *args, compress_rate: float = 0.0, backend: str = "torch", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_band_limited(compress_rate, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unbatched = x.dim() == 2
        x, (left, right) = self._padded(self._batched(x))
        y = _band_limited_conv2d(
            x.unsqueeze(-2),
            self.weight.unsqueeze(-2),
            self.bias,
            (1, self.stride[0]),
            (0, 0, left, right),
            (1, self.dilation[0]),
            self.groups,
            self.compress_rate,
            backend=self.backend,
        ).squeeze(-2)
        return y.squeeze(0) if unbatched else y


def convert_conv(conv: nn.Module, compress_rate: float, backend: str) -> nn.Module:
    """Band-limited copy of an ``nn.Conv1d``/``nn.Conv2d`` with the same weights."""
    from .registry import Unconvertible

    kinds = {nn.Conv1d: BandLimitedConv1d, nn.Conv2d: BandLimitedConv2d}
    target = kinds.get(type(conv))
    if target is None:
        if isinstance(conv, _BandLimitedMixin):
            raise Unconvertible("already band-limited")
        raise Unconvertible(f"{type(conv).__name__} has no band-limited form (Conv1d and Conv2d do)")
    new = target(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
        compress_rate=compress_rate,
        backend=backend,
    )
    new.load_state_dict(conv.state_dict())
    new.train(conv.training)
    return new
