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

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .._checks import check_rate, compute_dtype
from ..kernels import cupy_backend
from ..kernels.cupy_backend import BackendUnavailable
from .rates import CompressRateState
from .spectral_plan import Positions, SpectralPlan, analysis, make_plan, synthesis
from .spectral_product import bl_product, bl_product_grad_input, bl_product_grad_weight, complex_matmul

#: ``"torch"``: the pure-PyTorch specification; ``"cupy"``: the CUDA kernels of :mod:`freqnets.kernels`
#: for the product over channels (CUDA tensors only); ``"auto"``: ``"cupy"`` for CUDA tensors when
#: CuPy and a GPU are present, ``"torch"`` otherwise.
BACKENDS = ("torch", "cupy", "auto")

#: Whether the CuPy backend uses Gauss's three-multiplication product in its kernels.
CUPY_GAUSS = False


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


def _split_groups(planar: torch.Tensor, batch: int, groups: int) -> torch.Tensor:
    """Planar ``(2, K, batch * groups * n)`` -> ``(2, K * groups, batch, n)``: one matrix per frequency and group."""
    two, k, total = planar.shape
    n = total // (batch * groups)
    if groups == 1:
        return planar.view(two, k, batch, n)
    grouped = planar.view(two, k, batch, groups, n).transpose(2, 3)
    return grouped.reshape(two, k * groups, batch, n)


def _merge_groups(planar: torch.Tensor, groups: int) -> torch.Tensor:
    """Inverse of :func:`_split_groups`: ``(2, K * groups, batch, n)`` -> ``(2, K, batch * groups * n)``."""
    two, kg, batch, n = planar.shape
    k = kg // groups
    if groups == 1:
        return planar.reshape(two, k, batch * n)
    return planar.view(two, k, groups, batch, n).transpose(2, 3).reshape(two, k, batch * groups * n)


class _BandLimitedConv(torch.autograd.Function):
    """Forward and backward of the band-limited correlation on the kept spectrum (4D tensors).

    Spectra are planar ``(2, K * groups, rows, cols)`` real tensors (see
    :func:`freqnets.layers.spectral_plan.analysis`); products use :func:`complex_matmul`.
    """

    @staticmethod
    def forward(ctx, x, weight, plan: SpectralPlan, geometry: ConvGeometry, groups: int, backend: str = "torch"):
        if backend == "cupy":
            return _cupy_forward(ctx, x, weight, plan, geometry, groups)
        ctx.backend = "torch"
        b, c = x.shape[:2]
        o, cg = weight.shape[:2]
        x_spec = _split_groups(analysis(x.reshape(b * c, *x.shape[-2:]), plan, *geometry.input), b, groups)
        w_spec = analysis(weight.reshape(o * cg, *weight.shape[-2:]), plan, *geometry.kernel)
        w_spec = w_spec.view(2, -1, o // groups, cg)  # (2, K g, O/g, C/g): groups are already outermost
        y_spec = complex_matmul(x_spec, w_spec.transpose(-1, -2), conj_right=True)  # (2, K g, B, O/g)
        y = synthesis(_merge_groups(y_spec, groups), plan, *geometry.output)
        ctx.save_for_backward(x_spec, w_spec)
        ctx.plan, ctx.geometry, ctx.groups = plan, geometry, groups
        ctx.shapes = (tuple(x.shape), tuple(weight.shape))
        return y.reshape(b, o, *y.shape[-2:])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        if ctx.backend == "cupy":
            return _cupy_backward(ctx, grad_y)
        x_spec, w_spec = ctx.saved_tensors
        plan, geometry, groups = ctx.plan, ctx.geometry, ctx.groups
        x_shape, w_shape = ctx.shapes
        b, o = grad_y.shape[:2]
        grad_y = grad_y.to(x_spec.dtype).reshape(b * o, *grad_y.shape[-2:])
        gy_spec = _split_groups(analysis(grad_y, plan, *geometry.output), b, groups)  # (2, K g, B, O/g)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            gx_spec = _merge_groups(complex_matmul(gy_spec, w_spec), groups)
            grad_x = synthesis(gx_spec, plan, *geometry.input).reshape(x_shape)
        if ctx.needs_input_grad[1]:
            gw_spec = complex_matmul(gy_spec.transpose(-1, -2), x_spec, conj_left=True)  # (2, K g, O/g, C/g)
            grad_w = synthesis(gw_spec.reshape(2, plan.num_kept, -1), plan, *geometry.kernel).reshape(w_shape)
        return grad_x, grad_w, None, None, None, None


def _cupy_forward(ctx, x, weight, plan: SpectralPlan, geometry: ConvGeometry, groups: int) -> torch.Tensor:
    """The forward pass with the product over channels in one kernel on the flat planar spectra.

    Same transforms and saved tensors as the torch path; the group split is a strided view
    inside the kernel, so the spectra are neither copied nor transposed.
    """
    b, c = x.shape[:2]
    o, cg = weight.shape[:2]
    x_spec = analysis(x.reshape(b * c, *x.shape[-2:]), plan, *geometry.input)  # (2, K, B C)
    w_spec = analysis(weight.reshape(o * cg, *weight.shape[-2:]), plan, *geometry.kernel)  # (2, K, O C/g)
    y_spec = bl_product(x_spec, w_spec, b, groups, CUPY_GAUSS)  # (2, K, B O)
    y = synthesis(y_spec, plan, *geometry.output)
    ctx.save_for_backward(x_spec, w_spec)
    ctx.plan, ctx.geometry, ctx.groups, ctx.backend = plan, geometry, groups, "cupy"
    ctx.shapes = (tuple(x.shape), tuple(weight.shape))
    return y.reshape(b, o, *y.shape[-2:])


def _cupy_backward(ctx, grad_y):
    x_spec, w_spec = ctx.saved_tensors
    plan, geometry, groups = ctx.plan, ctx.geometry, ctx.groups
    x_shape, w_shape = ctx.shapes
    b, o = grad_y.shape[:2]
    grad_y = grad_y.to(x_spec.dtype).reshape(b * o, *grad_y.shape[-2:])
    gy_spec = analysis(grad_y, plan, *geometry.output)  # (2, K, B O)
    grad_x = grad_w = None
    if ctx.needs_input_grad[0]:
        gx_spec = bl_product_grad_input(gy_spec, w_spec, b, groups, CUPY_GAUSS)
        grad_x = synthesis(gx_spec, plan, *geometry.input).reshape(x_shape)
    if ctx.needs_input_grad[1]:
        gw_spec = bl_product_grad_weight(gy_spec, x_spec, b, groups, CUPY_GAUSS)
        grad_w = synthesis(gw_spec, plan, *geometry.kernel).reshape(w_shape)
    return grad_x, grad_w, None, None, None, None


def band_limited_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    compress_rate: float = 0.0,
    route: str = "auto",
    backend: str = "torch",
) -> torch.Tensor:
    """Band-limited 2D correlation of ``x (B, C, H, W)`` with ``weight (O, C / groups, kh, kw)``.

    Args:
        padding: zero padding ``(top, bottom, left, right)``; other modes pad with ``F.pad`` first.
        compress_rate: fraction of the one-sided spectrum discarded, ``0 <= rate < 1``.
        route: how spectra are computed (``"auto"``, ``"matmul"``, ``"fft"``); all give the same result.
        backend: ``"torch"``, ``"cupy"`` or ``"auto"`` (see :data:`BACKENDS`); the product over
            channels runs in the CuPy kernels for ``"cupy"``. A backend that cannot run raises
            :class:`~freqnets.kernels.BackendUnavailable`.

    Returns:
        ``(B, O, H_out, W_out)`` as ``F.conv2d`` with the same arguments.
    """
    rate = check_rate(compress_rate)
    runs = resolve_backend(check_backend(backend), x.device)
    geometry = conv_geometry(tuple(x.shape[-2:]), tuple(weight.shape[-2:]), stride, dilation, padding)
    plan = make_plan(geometry.padded_size, rate, route)
    dtype = compute_dtype(torch.promote_types(x.dtype, weight.dtype))
    y = _BandLimitedConv.apply(x.to(dtype), weight.to(dtype), plan, geometry, groups, runs)
    if bias is not None:
        y = y + bias.to(dtype).view(1, -1, 1, 1)
    return y.to(x.dtype)


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
        y = band_limited_conv2d(
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
        y = band_limited_conv2d(
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
