"""Partial DFTs for band-limited convolution: real samples at given positions <-> kept frequencies.

A band-limited convolution only ever needs the *kept* frequencies of its input,
filter and gradients, and only the output positions its stride selects. This
module computes exactly those, separably over the two spatial dims (a 1D
signal is a 2D one with a single row):

* the column dim uses the one-sided (real-input) spectrum, columns ``0 .. F-1``;
* the row dim uses the full complex spectrum, only the kept rows.

Each dim has two routes that give the same numbers: ``"matmul"``, products
with small DFT matrices restricted to the kept frequencies and the wanted
positions (fast for short dims: it skips discarded rows/columns and unneeded
outputs), and ``"fft"``, ``torch.fft`` on the zero-filled grid (fast for long
dims). The FFT size ``N`` of a dim is the padded input length for the matmul
route (the smallest size without wrap-around, for forward and backward) and
the next 7-smooth length for the FFT route.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import _disable_current_modes

from .. import _autograd
from ..transforms import rfft_kept_mask

#: Dims of at most this FFT length use the matrix route under ``route="auto"``
#: (measured crossover: ``freqnets bench conv`` and docs/benchmarks.md).
MATMUL_MAX_LENGTH = 64
_ROUTES = ("auto", "matmul", "fft")


def next_fast_length(n: int) -> int:
    """Smallest integer >= ``n`` whose prime factors are 2, 3, 5 and 7 (fast for pocketfft and cuFFT)."""
    m = n
    while True:
        rest = m
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


#: Storages of the cached plans and DFT matrices, ``(device type, data_ptr) -> count``: every call shares
#: them and they stay allocated between steps, so memory accounting can tell them from per-step tensors.
_CONSTANT_STORAGES: dict[tuple[str, int], int] = {}


def _storage_keys(value) -> list[tuple[str, int]]:
    """Storage keys of the tensors in a cached value: a tensor, a tuple of them, or a plan's fields."""
    if isinstance(value, torch.Tensor):
        try:
            return [(value.device.type, value.untyped_storage().data_ptr())]
        except (NotImplementedError, RuntimeError):  # a functorch wrapper or fake tensor has no storage
            return []
    parts = value if isinstance(value, (tuple, list)) else getattr(value, "__dict__", {}).values()
    return [key for part in parts for key in _storage_keys(part)]


def is_cached_constant(t: torch.Tensor) -> bool:
    """Whether ``t`` lives in the storage of a cached plan or DFT matrix (shared by every call, not per step)."""
    keys = _storage_keys(t)
    return bool(keys) and keys[0] in _CONSTANT_STORAGES


def _constant(maxsize: int):
    """A cache for plans and DFT matrices that always builds real tensors, also while a caller is traced.

    ``torch.export``, ``torch.jit.trace`` and ``torch.func`` run the layer under tensor modes (fake
    tensors, tracers); built there, a plan would hit data-dependent ``nonzero`` and the cache would
    keep a fake tensor for every later eager call. The builders depend on ints only, so they run
    outside those modes (private torch helpers, the ones ``torch.export`` itself uses) and the
    trace sees plain constants.
    """

    def decorate(build):
        cache: dict = {}

        @torch.compiler.disable(recursive=True)
        def build_outside_tracing(*args):
            tracing = torch._C._get_tracing_state()  # torch.jit.trace records ops through this, not through modes
            torch._C._set_tracing_state(None)
            try:
                with _disable_current_modes(), torch._C.DisableTorchFunction(), torch.no_grad():
                    value = build(*args)
            finally:
                torch._C._set_tracing_state(tracing)
            if len(cache) >= maxsize:
                for key in _storage_keys(cache.pop(next(iter(cache)))):  # the oldest entry
                    _CONSTANT_STORAGES[key] -= 1
                    if not _CONSTANT_STORAGES[key]:
                        del _CONSTANT_STORAGES[key]
            cache[args] = value
            for key in _storage_keys(value):
                _CONSTANT_STORAGES[key] = _CONSTANT_STORAGES.get(key, 0) + 1
            return value

        @functools.wraps(build)
        def constant(*args):
            value = cache.get(args)  # the hot path: one dict lookup, no mode switching
            return build_outside_tracing(*args) if value is None else value

        def cache_clear() -> None:
            while cache:
                for key in _storage_keys(cache.pop(next(iter(cache)))):
                    _CONSTANT_STORAGES[key] -= 1
                    if not _CONSTANT_STORAGES[key]:
                        del _CONSTANT_STORAGES[key]

        constant.cache_clear = cache_clear
        return constant

    return decorate


@dataclass(frozen=True)
class Positions:
    """Sample positions ``start, start + step, ..., start + step * (count - 1)`` along one dim."""

    start: int
    step: int
    count: int

    @property
    def stop(self) -> int:
        return self.start + self.step * (self.count - 1) + 1

    def as_slice(self) -> slice:
        return slice(self.start, self.stop, self.step)

    def indices(self) -> torch.Tensor:
        return torch.arange(self.count, dtype=torch.float64) * self.step + self.start


@dataclass(frozen=True, eq=False)
class SpectralPlan:
    """The kept frequencies of one FFT grid, and how each dim is transformed.

    Attributes:
        fft_size: ``(N_h, N_w)``; ``N_h == 1`` for 1D signals.
        rate: the compress rate the kept set was made for.
        row_freqs: ``(R,)`` kept row frequency indices in ``[0, N_h)``.
        num_cols: kept one-sided columns are ``0 .. num_cols - 1``.
        kept_index: ``(K,)`` flat indices of the kept set within the ``R x num_cols`` rectangle.
        routes: ``("matmul" | "fft", "matmul" | "fft")`` for rows and columns.
        num_kept: ``K``, as an int (so a traced caller sees no tensor-valued size).
    """

    fft_size: tuple[int, int]
    rate: float
    row_freqs: torch.Tensor
    num_cols: int
    kept_index: torch.Tensor
    routes: tuple[str, str]
    num_kept: int

    @property
    def kept_fraction(self) -> float:
        return self.num_kept / (self.fft_size[0] * (self.fft_size[1] // 2 + 1))


def _route_for(length: int, route: str) -> str:
    if route not in _ROUTES:
        raise ValueError(f"route must be one of {', '.join(_ROUTES)}, got {route!r}")
    if route != "auto":
        return route
    return "matmul" if length <= MATMUL_MAX_LENGTH else "fft"


@_constant(maxsize=1024)
def make_plan(padded_size: tuple[int, int], rate: float, route: str = "auto") -> SpectralPlan:
    """Plan for signals of padded spatial size ``(H, W)`` (``H == 1`` for 1D) at ``rate``."""
    routes = (_route_for(padded_size[0], route), _route_for(padded_size[1], route))
    fft_size = tuple(
        1 if n == 1 else (n if r == "matmul" else next_fast_length(n)) for n, r in zip(padded_size, routes, strict=True)
    )
    mask = rfft_kept_mask(fft_size, rate)
    row_freqs = torch.nonzero(mask.any(dim=1)).flatten()
    num_cols = int(torch.nonzero(mask.any(dim=0)).max()) + 1
    kept_index = torch.nonzero(mask[row_freqs, :num_cols].flatten()).flatten()
    return SpectralPlan(fft_size, rate, row_freqs, num_cols, kept_index, routes, kept_index.numel())


class _OneSidedFFT(torch.autograd.Function):
    """``torch.fft.rfft`` along the last dim whose backward keeps nothing of the input.

    torch's own ``rfft`` saves its (zero-filled, padded) input for backward, which would undo the
    band-limited layer's memory saving on the FFT route. The map is linear: the gradient of a real
    signal ``x`` (length ``n``) from the one-sided spectrum's gradient ``g`` is
    ``Re(sum_k g_k e^{2 pi i k p / n})``, an unnormalised inverse FFT of ``g`` zero-filled to ``n``.
    The backward is written in differentiable torch ops, so higher derivatives exist.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x, dim=-1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.length = inputs[0].shape[-1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        full = torch.nn.functional.pad(grad, (0, ctx.length - grad.shape[-1]))
        return torch.fft.ifft(full, dim=-1, norm="forward").real


def one_sided_fft(x: torch.Tensor) -> torch.Tensor:
    """``torch.fft.rfft(x, dim=-1)``: real ``(..., n)`` -> complex ``(..., n // 2 + 1)``; nothing saved for backward."""
    return _OneSidedFFT.apply(x)


# --- DFT matrices, computed in float64 and cached per device and dtype -------------------------


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


@_constant(maxsize=512)
def _column_forward(n: int, cols: int, pos: Positions, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(P, 2F)`` real: ``x @ M`` gives interleaved (re, im) of ``sum_p x[p] e^{-2 pi i l p / n}``."""
    angle = 2 * math.pi * pos.indices()[:, None] * torch.arange(cols, dtype=torch.float64)[None, :] / n
    return torch.stack([angle.cos(), -angle.sin()], dim=-1).flatten(-2).to(device, dtype)


@_constant(maxsize=512)
def _column_inverse(n: int, cols: int, pos: Positions, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(2F, P)`` real: interleaved (re, im) of a one-sided spectrum @ M = the real signal at ``pos``."""
    freqs = torch.arange(cols, dtype=torch.float64)
    weight = torch.full((cols,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n % 2 == 0 and cols == n // 2 + 1:
        weight[-1] = 1.0  # the Nyquist column stands for itself only
    angle = 2 * math.pi * freqs[:, None] * pos.indices()[None, :] / n
    scale = (weight / n)[:, None]
    return torch.stack([angle.cos() * scale, -angle.sin() * scale], dim=1).flatten(0, 1).to(device, dtype)


@_constant(maxsize=512)
def _row_forward(n: int, rows: tuple[int, ...], pos: Positions, device: torch.device, dtype: torch.dtype):
    """``(R, P)`` complex: ``e^{-2 pi i k p / n}`` for kept rows ``k``."""
    angle = 2 * math.pi * torch.tensor(rows, dtype=torch.float64)[:, None] * pos.indices()[None, :] / n
    return torch.polar(torch.ones_like(angle), -angle).to(device, _complex_dtype(dtype))


@_constant(maxsize=512)
def _row_inverse(n: int, rows: tuple[int, ...], pos: Positions, device: torch.device, dtype: torch.dtype):
    """``(P, R)`` complex: ``e^{2 pi i k p / n} / n``."""
    return _row_forward(n, rows, pos, device, dtype).conj().T.contiguous() / n


@_constant(maxsize=512)
def _plan_indices(plan: SpectralPlan, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """The plan's kept indices and kept rows on ``device``, and the kept rows as a tuple (a cache key)."""
    return plan.kept_index.to(device), plan.row_freqs.to(device), tuple(plan.row_freqs.tolist())


# --- the two directions -------------------------------------------------------------------------


def spectrum(t: torch.Tensor, plan: SpectralPlan, rows: Positions, cols: Positions) -> torch.Tensor:
    """Kept spectrum of real samples ``t (L, P_r, P_c)`` placed at ``rows x cols`` on the FFT grid.

    Returns:
        ``(L, K)`` complex: ``sum_{p,q} t[p, q] e^{-2 pi i (k p / N_h + l q / N_w)}`` for the kept ``(k, l)``.
    """
    n_h, n_w = plan.fft_size
    f = plan.num_cols
    kept_index, row_freqs, row_key = _plan_indices(plan, t.device)
    if plan.routes[1] == "matmul":
        z = torch.view_as_complex((t @ _column_forward(n_w, f, cols, t.device, t.dtype)).unflatten(-1, (f, 2)))
    else:
        grid = t.new_zeros(*t.shape[:-1], n_w)
        grid[..., cols.as_slice()] = t
        z = one_sided_fft(grid)[..., :f]
    if n_h > 1:
        if plan.routes[0] == "matmul":
            z = _row_forward(n_h, row_key, rows, t.device, t.dtype) @ z
        else:
            grid = z.new_zeros(*z.shape[:-2], n_h, f)
            grid[..., rows.as_slice(), :] = z
            z = torch.fft.fft(grid, dim=-2)[..., row_freqs, :]
    return z.flatten(-2)[..., kept_index]


def inverse(y: torch.Tensor, plan: SpectralPlan, rows: Positions, cols: Positions) -> torch.Tensor:
    """Real signal at ``rows x cols`` whose kept spectrum is ``y (L, K)`` (zero elsewhere).

    Returns:
        ``(L, rows.count, cols.count)`` real; the adjoint pairing of :func:`spectrum` used by
        circular convolution: ``inverse(spectrum(x)) == x`` at rate 0 on the full grid.
    """
    n_h, n_w = plan.fft_size
    f = plan.num_cols
    real_dtype = y.real.dtype
    kept_index, row_freqs, row_key = _plan_indices(plan, y.device)
    rect = y.new_zeros(*y.shape[:-1], len(row_key) * f)
    rect[..., kept_index] = y
    z = rect.unflatten(-1, (len(row_key), f))
    if n_h > 1:
        if plan.routes[0] == "matmul":
            z = _row_inverse(n_h, row_key, rows, y.device, real_dtype) @ z
        else:
            grid = z.new_zeros(*z.shape[:-2], n_h, f)
            grid[..., row_freqs, :] = z
            z = torch.fft.ifft(grid, dim=-2)[..., rows.as_slice(), :]
    if plan.routes[1] == "matmul":
        return torch.view_as_real(z).flatten(-2) @ _column_inverse(n_w, f, cols, y.device, real_dtype)
    grid = z.new_zeros(*z.shape[:-1], n_w // 2 + 1)
    grid[..., :f] = z
    return torch.fft.irfft(grid, n=n_w, dim=-1)[..., cols.as_slice()]


# --- planar spectra: (2, K, L) real tensors, real and imaginary planes ---------------------------
#
# The convolution's products run on real (K, ., .) batches of matrices, so the spectra live in a
# planar layout: plane 0 the real parts, plane 1 the imaginary parts, one row per kept frequency,
# the batch (B * C) last. Small grids use one GEMM with the 2D DFT matrix of the kept set (rows:
# kept frequencies, columns: sample positions); it writes the planar layout directly and needs no
# gather. Larger grids use the separable transforms above and one transposing copy.

#: Use the 2D-DFT matrix when its cost (positions x 2K) is at most this many times the separable
#: transforms' cost; one large GEMM runs several times faster than many small ones.
KRONECKER_ADVANTAGE = 8.0


def _separable_cost(plan: SpectralPlan, rows: Positions, cols: Positions) -> float:
    """Rough multiply count of the separable route (per signal), by each dim's route."""
    n_h, n_w = plan.fft_size
    f, r = plan.num_cols, plan.row_freqs.numel()
    cost = rows.count * (cols.count * 2 * f if plan.routes[1] == "matmul" else 2.5 * n_w * math.log2(max(n_w, 2)))
    if n_h > 1:
        cost += 4 * r * f * rows.count if plan.routes[0] == "matmul" else 5 * f * n_h * math.log2(n_h)
    return cost


def uses_kronecker(plan: SpectralPlan, rows: Positions, cols: Positions) -> bool:
    """Whether :func:`analysis`/:func:`synthesis` use one 2D-DFT matrix for these positions.

    Only for grids small enough for the matrix route in every dim; long dims go through the FFT.
    """
    if any(route == "fft" for n, route in zip(plan.fft_size, plan.routes, strict=True) if n > 1):
        return False
    kron_cost = rows.count * cols.count * 2 * plan.num_kept
    return kron_cost <= KRONECKER_ADVANTAGE * _separable_cost(plan, rows, cols)


@_constant(maxsize=512)
def _kept_frequencies(plan: SpectralPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K,)`` row and column frequency indices of the kept set, in plan order."""
    f = plan.num_cols
    return plan.row_freqs[plan.kept_index // f].double(), (plan.kept_index % f).double()


def _kron_angles(plan: SpectralPlan, rows: Positions, cols: Positions) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, P)`` phases ``2 pi (k p / N_h + l q / N_w)`` and the ``(K,)`` column frequencies ``l``."""
    row_freq, col_freq = _kept_frequencies(plan)
    n_h, n_w = plan.fft_size
    p = rows.indices()[:, None].expand(rows.count, cols.count).flatten()
    q = cols.indices()[None, :].expand(rows.count, cols.count).flatten()
    return 2 * math.pi * (row_freq[:, None] * p[None, :] / n_h + col_freq[:, None] * q[None, :] / n_w), col_freq


@_constant(maxsize=512)
def _kron_analysis(plan: SpectralPlan, rows: Positions, cols: Positions, device: torch.device, dtype: torch.dtype):
    """``(2K, P)``: cos and -sin of the phases, so ``matrix @ samples`` is the planar kept spectrum."""
    angle, _ = _kron_angles(plan, rows, cols)
    return torch.cat([angle.cos(), -angle.sin()]).to(device, dtype)


@_constant(maxsize=512)
def _kron_synthesis(plan: SpectralPlan, rows: Positions, cols: Positions, device: torch.device, dtype: torch.dtype):
    """``(2K, P)``: planar kept spectrum -> real samples, with the one-sided Hermitian weights."""
    angle, col_freq = _kron_angles(plan, rows, cols)
    n_h, n_w = plan.fft_size
    weight = torch.full_like(col_freq, 2.0)
    weight[col_freq == 0] = 1.0
    if n_w % 2 == 0:
        weight[col_freq == n_w // 2] = 1.0
    weight = (weight / (n_h * n_w))[:, None]
    return torch.cat([angle.cos() * weight, -angle.sin() * weight]).to(device, dtype)


def analysis_matrix(plan: SpectralPlan, rows: Positions, cols: Positions, device, dtype) -> torch.Tensor | None:
    """The ``(2K, P)`` matrix :func:`analysis` multiplies by at these positions, or ``None`` if it uses none."""
    return _kron_analysis(plan, rows, cols, device, dtype) if uses_kronecker(plan, rows, cols) else None


def synthesis_matrix(plan: SpectralPlan, rows: Positions, cols: Positions, device, dtype) -> torch.Tensor | None:
    """The ``(2K, P)`` matrix :func:`synthesis` multiplies by at these positions, or ``None`` if it uses none."""
    return _kron_synthesis(plan, rows, cols, device, dtype) if uses_kronecker(plan, rows, cols) else None


def _flat(t: torch.Tensor, rows: int) -> torch.Tensor:
    return t.view(rows, -1) if t.is_contiguous() else t.reshape(rows, -1)


class _Kronecker(torch.autograd.Function):
    """The small-grid transforms as one autograd node each (a layer's backward then has a few nodes, not ~15).

    ``"analysis"``: ``t (L, ...) -> matrix @ t^T``, viewed ``(2, K, L)``; ``"synthesis"``:
    ``planar (2, K, L) -> planar^T @ matrix``, viewed ``shape``; ``matrix (2K, P)`` a constant. For one
    matrix each direction is the other's adjoint, so the backward is the other direction (through
    :func:`_kronecker` again: differentiable to any order).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(t, matrix, direction, shape):
        if direction == "analysis":
            return torch.mm(matrix, _flat(t, shape[-1]).t()).view(shape)
        return torch.mm(_flat(t, matrix.shape[0]).t(), matrix).view(shape)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        t, matrix, direction, _ = inputs
        ctx.save_for_backward(matrix)
        ctx.direction, ctx.input_shape = direction, tuple(int(n) for n in t.shape)

    @staticmethod
    def backward(ctx, grad):
        (matrix,) = ctx.saved_tensors
        adjoint = "synthesis" if ctx.direction == "analysis" else "analysis"
        return _kronecker(grad, matrix, adjoint, ctx.input_shape), None, None, None


_KroneckerEager = _autograd.eager_twin(_Kronecker)


def _kronecker(t, matrix, direction, shape):
    return _autograd.apply(_Kronecker, _KroneckerEager, t, matrix, direction, shape)


def kronecker_analysis(t: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Planar kept spectrum ``(2, K, L)`` of ``t``, ``L`` signals of ``P`` samples (e.g. ``(L, P_r, P_c)`` or
    ``(B, C, P_r, P_c)`` with ``L = B C``), by the ``(2K, P)`` :func:`analysis_matrix`; one autograd node,
    whose backward keeps nothing but the (cached) matrix."""
    rows, positions = (int(n) for n in matrix.shape)  # ints also under torch.jit.trace, whose sizes are tensors
    return _kronecker(t, matrix, "analysis", (2, rows // 2, int(t.numel()) // positions))


def kronecker_synthesis(planar: torch.Tensor, matrix: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Real samples of the planar spectrum ``(2, K, L)`` by the ``(2K, P)`` :func:`synthesis_matrix`, as
    ``shape`` (``L * P`` elements, e.g. ``(L, P_r, P_c)`` or ``(B, O, P_r, P_c)``); one autograd node."""
    return _kronecker(planar, matrix, "synthesis", tuple(int(n) for n in shape))


def _is_long_1d(plan: SpectralPlan) -> bool:
    # One row and an FFT column route: the kept set is the prefix 0 .. K-1 of the one-sided spectrum.
    return plan.fft_size[0] == 1 and plan.routes[1] == "fft"


def analysis(t: torch.Tensor, plan: SpectralPlan, rows: Positions, cols: Positions) -> torch.Tensor:
    """Planar kept spectrum ``(2, K, L)`` of real samples ``t (L, P_r, P_c)`` at ``rows x cols``."""
    if uses_kronecker(plan, rows, cols):
        return kronecker_analysis(t, _kron_analysis(plan, rows, cols, t.device, t.dtype))
    if _is_long_1d(plan):
        grid = t.new_zeros(t.shape[0], plan.fft_size[1])
        grid[:, cols.as_slice()] = t.reshape(t.shape[0], -1)
        kept = one_sided_fft(grid)[:, : plan.num_kept]
        return torch.view_as_real(kept).permute(2, 1, 0).contiguous()
    return torch.view_as_real(spectrum(t, plan, rows, cols)).permute(2, 1, 0).contiguous()


def synthesis(planar: torch.Tensor, plan: SpectralPlan, rows: Positions, cols: Positions) -> torch.Tensor:
    """Real samples ``(L, P_r, P_c)`` at ``rows x cols`` of the planar kept spectrum ``(2, K, L)``."""
    if uses_kronecker(plan, rows, cols):
        matrix = _kron_synthesis(plan, rows, cols, planar.device, planar.dtype)
        return kronecker_synthesis(planar, matrix, (planar.shape[-1], rows.count, cols.count))
    if _is_long_1d(plan):
        n_w = plan.fft_size[1]
        grid = torch.zeros(planar.shape[-1], n_w // 2 + 1, dtype=_complex_dtype(planar.dtype), device=planar.device)
        torch.view_as_real(grid)[:, : plan.num_kept] = planar.permute(2, 1, 0)
        return torch.fft.irfft(grid, n=n_w, dim=-1)[:, cols.as_slice()].unsqueeze(1)
    complex_spectrum = torch.view_as_complex(planar.permute(2, 1, 0).contiguous())
    return inverse(complex_spectrum, plan, rows, cols)
