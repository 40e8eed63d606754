"""The Winograd domain: minimal-filtering matrices, tiled Winograd convolution, tile transforms.

Winograd's minimal filtering algorithm ``F(m, r)`` computes ``m`` outputs of an
``r``-tap correlation from ``alpha = m + r - 1`` inputs with ``alpha``
multiplications. In Lavin & Gray's notation (CVPR 2016), for a 2D tile ``d``
``(alpha x alpha)`` and filter ``g`` ``(r x r)``::

    Y = AT [(G g G^T) * (BT d BT^T)] AT^T          (Y is m x m)

:func:`winograd_matrices` builds ``AT``, ``G`` and ``BT`` exactly (rational
arithmetic) from ``alpha - 1`` interpolation points plus the point at infinity,
by the Toom-Cook construction; :func:`winograd_conv2d` tiles a convolution with
them.

The *domain* (:class:`WinogradDomain`) is the input-tile transform
``BT d BT^T`` applied to non-overlapping ``alpha x alpha`` tiles: ``BT`` is
square and invertible, so the domain has an exact inverse, and pruning its
smallest-magnitude coefficients is the same operation as the Winograd-domain
sparsity of Liu et al. (ICLR 2018). (The filter transform ``G g G^T`` maps
``r x r`` into the larger ``alpha x alpha`` space and has no inverse;
Winograd-domain filter pruning lives in the Winograd convolution layer.)
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from itertools import count as _naturals

import torch
import torch.nn.functional as F

from .._checks import check_float_tensor, check_positive_int, check_rate, compute_dtype
from ._blocks import from_blocks, to_blocks
from ._conv_args import conv2d_padding
from ._frequency_order import count_for_energy, kept_count, rate_for_count
from .base import TransformDomain, register_domain


def winograd_points(n: int) -> list[Fraction]:
    """The first ``n`` of the usual interpolation points ``0, 1, -1, 2, -2, 1/2, -1/2, 3, -3, 1/3, ...``.

    Small integers and their reciprocals keep the matrices' entries small,
    which keeps the float error of ``F(4,3)`` and ``F(6,3)`` low.
    """
    points = [Fraction(0)]
    for k in _naturals(1):
        for p in (Fraction(k), Fraction(-k), Fraction(1, k), Fraction(-1, k)):
            if len(points) == n:
                return points
            if p not in points:
                points.append(p)
    raise AssertionError("unreachable")


def _poly_mul_linear(poly: list[Fraction], root: Fraction) -> list[Fraction]:
    """Coefficients (lowest degree first) of ``poly(x) * (x - root)``."""
    out = [Fraction(0)] * (len(poly) + 1)
    for i, c in enumerate(poly):
        out[i] -= c * root
        out[i + 1] += c
    return out


@lru_cache(maxsize=64)
def _exact_matrices(m: int, r: int, points: tuple[Fraction, ...]):
    alpha = m + r - 1
    at = [[Fraction(0)] * alpha for _ in range(m)]
    g = [[Fraction(0)] * r for _ in range(alpha)]
    bt = [[Fraction(0)] * alpha for _ in range(alpha)]
    for j, p in enumerate(points):
        others = [q for q in points if q != p]
        scale = Fraction(1)
        poly = [Fraction(1)]
        for q in others:
            scale *= p - q
            poly = _poly_mul_linear(poly, q)
        sign = -1 if scale < 0 else 1  # keep G's denominators positive, as in Lavin & Gray
        for i in range(m):
            at[i][j] = p**i
        for k in range(r):
            g[j][k] = sign * p**k / scale
        bt[j][: len(poly)] = [sign * c for c in poly]
    # The point at infinity: leading coefficients, and the product of all (x - p).
    at[m - 1][alpha - 1] = Fraction(1)
    g[alpha - 1][r - 1] = Fraction(1)
    poly = [Fraction(1)]
    for q in points:
        poly = _poly_mul_linear(poly, q)
    bt[alpha - 1] = poly
    return at, g, bt


def winograd_matrices(
    m: int,
    r: int,
    points: list[float] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Transform matrices ``(AT, G, BT)`` of Winograd's ``F(m, r)``.

    Args:
        m: outputs per tile (per dim), e.g. 2, 4, 6.
        r: filter taps (per dim), e.g. 3.
        points: ``m + r - 2`` distinct finite interpolation points; default
            :func:`winograd_points`. The point at infinity is always added.
        dtype, device: of the returned tensors (computed exactly, then rounded once).

    Returns:
        ``AT (m, alpha)``, ``G (alpha, r)``, ``BT (alpha, alpha)`` with ``alpha = m + r - 1``,
        such that ``AT @ ((G @ g) * (BT @ d)) == correlate(d, g)`` for 1D ``d`` of length ``alpha``.

    Example:
        >>> AT, G, BT = winograd_matrices(2, 3)
        >>> BT
        tensor([[ 1.,  0., -1.,  0.],
                [ 0.,  1.,  1.,  0.],
                [ 0., -1.,  1.,  0.],
                [ 0., -1.,  0.,  1.]], dtype=torch.float64)
    """
    m = check_positive_int(m, "m")
    r = check_positive_int(r, "r")
    alpha = m + r - 1
    if points is None:
        exact = tuple(winograd_points(alpha - 1))
    else:
        exact = tuple(Fraction(p).limit_denominator(1 << 20) for p in points)
        if len(exact) != alpha - 1 or len(set(exact)) != len(exact):
            raise ValueError(f"points must be {alpha - 1} distinct numbers for F({m},{r}), got {list(points)}")
    at, g, bt = _exact_matrices(m, r, exact)

    def to_tensor(rows: list[list[Fraction]]) -> torch.Tensor:
        return torch.tensor([[float(v) for v in row] for row in rows], dtype=dtype, device=device)

    return to_tensor(at), to_tensor(g), to_tensor(bt)


def _check_conv_arguments(x, weight, groups, padding, r):
    check_float_tensor(x, "x", min_dims=4)
    check_float_tensor(weight, "weight", min_dims=4)
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"x must be (N, C, H, W) and weight (O, C/groups, r, r); got {tuple(x.shape)}, {tuple(weight.shape)}"
        )
    groups = check_positive_int(groups, "groups")
    if x.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
        raise ValueError(
            f"channels do not match: x has {x.shape[1]}, weight {tuple(weight.shape)} with groups={groups}"
        )
    left, right, top, bottom = conv2d_padding(padding, (r, r))
    if left != right or top != bottom:
        raise ValueError(f"the tiled product pads symmetrically; pad x with F.pad first (padding {padding!r})")
    return groups, (top, left)


def winograd_filter_transform(weight: torch.Tensor, m: int) -> torch.Tensor:
    """``G w G^T`` of ``F(m, r)`` for every filter: ``(..., r, r)`` -> ``(..., alpha, alpha)``.

    Computed as one matrix product with ``kron(G, G)`` on the flattened filters (many tiny
    ``alpha x r`` products are an order of magnitude slower for a layer of filters).
    """
    r = weight.shape[-1]
    if weight.shape[-2] != r:
        raise ValueError(f"Winograd convolution needs square filters, got {tuple(weight.shape[-2:])}")
    _, g, _ = winograd_matrices(m, r, dtype=weight.dtype, device=weight.device)
    alpha = g.shape[0]
    return (weight.reshape(-1, r * r) @ torch.kron(g, g).T).reshape(*weight.shape[:-2], alpha, alpha)


def _largest_mask(values: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of the ``count`` largest of the 1D ``values``; ties at the threshold go to the lowest indices.

    The threshold (the ``count``-th largest value) is selected among the values that fall
    between two quantiles of a seeded random sample, which brackets it with overwhelming odds for
    any data; a full selection runs when it does not. Both give the same mask; the bracket
    makes pruning a large layer a few passes over its values instead of a full top-k.
    """
    n = values.numel()
    if count >= n:
        return torch.ones_like(values, dtype=torch.bool)
    if count <= 0:
        return torch.zeros_like(values, dtype=torch.bool)
    threshold = None
    if n > 1 << 18:
        # Seeded random positions: a stride could alias with the filters' alpha x alpha layout.
        picks = torch.randint(n, (1 << 16,), generator=torch.Generator().manual_seed(0))
        sample = values[picks.to(values.device)].double()
        share = 1.0 - count / n  # the threshold's quantile
        margin = 6.0 * (share * (1.0 - share) / sample.numel()) ** 0.5 + 4.0 / sample.numel()
        low, high = (
            sample.kthvalue(max(1, min(sample.numel(), round(q * sample.numel())))).values.to(values.dtype)
            for q in (share - margin, share + margin)
        )
        above = int(torch.count_nonzero(values > high))
        candidates = values[(values >= low) & (values <= high)]
        needed = count - above
        if 0 < needed <= candidates.numel():
            threshold = candidates.kthvalue(candidates.numel() - needed + 1).values
    if threshold is None:
        threshold = values.kthvalue(n - count + 1).values
    mask = values >= threshold
    excess = int(torch.count_nonzero(mask)) - count
    if excess > 0:  # ties at the threshold: keep the ones with the lowest indices
        tied = (values == threshold).nonzero().flatten()
        mask[tied[tied.numel() - excess :]] = False
    return mask


def winograd_filter_mask(filters: torch.Tensor, compress_rate: float) -> torch.Tensor:
    """Boolean mask keeping the largest ``1 - compress_rate`` of ``|filters|`` over the whole tensor.

    The Winograd-domain pruning rule of Liu, Pool, Han, Dally ("Efficient Sparse-Winograd
    Convolutional Neural Networks", ICLR 2018): ``filters`` are a layer's ``G w G^T``
    ``(O, C/g, alpha, alpha)``; ``round((1 - rate) * numel)`` coefficients are kept.
    """
    rate = check_rate(compress_rate)
    magnitude = filters.detach().abs().flatten()
    return _largest_mask(magnitude, kept_count(magnitude.numel(), rate)).view(filters.shape)


def winograd_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    m: int = 4,
    compress_rate: float = 0.0,
) -> torch.Tensor:
    """2D convolution (cross-correlation, as ``F.conv2d``) by tiled Winograd ``F(m, r)``, with filter pruning.

    Arguments in ``F.conv2d``'s order and meaning; Winograd's algorithm needs stride 1 and dilation 1.

    Args:
        x: ``(N, C, H, W)``.
        weight: ``(O, C / groups, r, r)``, square filters.
        bias: ``(O,)`` or ``None``.
        stride, dilation: must be 1 (``ValueError`` otherwise).
        padding: zero padding as ``F.conv2d``: int, pair, ``"valid"`` or ``"same"``.
        groups: as in ``F.conv2d``.
        m: output tile size; ``alpha = m + r - 1`` input tiles overlap by ``r - 1``.
        compress_rate: fraction of the Winograd-domain filter coefficients ``G w G^T`` zeroed,
            the smallest in magnitude over all filters (:func:`winograd_filter_mask`); the
            forward pass of :class:`freqnets.layers.WinogradConv2d` right after ``prune(rate)``.

    Returns:
        ``(N, O, H_out, W_out)`` as ``F.conv2d``; at rate 0 equal to it up to rounding
        (float32: ~1e-6 relative for ``F(2,3)``, ~1e-5 for ``F(4,3)``; larger ``m`` loses accuracy).
    """
    check_float_tensor(weight, "weight", min_dims=4)
    r = weight.shape[-1]
    if weight.shape[-2] != r:
        raise ValueError(f"Winograd convolution needs square filters, got {tuple(weight.shape[-2:])}")
    if _as_pair(stride) != (1, 1) or _as_pair(dilation) != (1, 1):
        raise ValueError(f"Winograd convolution needs stride 1 and dilation 1, got {stride=}, {dilation=}")
    left, right, top, bottom = conv2d_padding(padding, (r, r))
    if left != right or top != bottom:  # "same" with an even filter: F.conv2d pads one more after
        check_float_tensor(x, "x", min_dims=4)
        x, padding = F.pad(x, (left, right, top, bottom)), 0
    _check_conv_arguments(x, weight, groups, padding, r)
    m = check_positive_int(m, "m")
    dtype = compute_dtype(torch.promote_types(x.dtype, weight.dtype))
    u = winograd_filter_transform(weight.to(dtype), m)
    if check_rate(compress_rate) > 0:
        u = u * winograd_filter_mask(u, compress_rate)
    return winograd_conv2d_transformed(x, u, bias, padding, groups, m, r)


def _as_pair(value) -> tuple:
    return (value, value) if isinstance(value, int) else tuple(value)


def winograd_conv2d_transformed(
    x: torch.Tensor,
    filters: torch.Tensor,
    bias: torch.Tensor | None,
    padding: int | tuple[int, int] | str,
    groups: int,
    m: int,
    r: int,
) -> torch.Tensor:
    """Tiled Winograd convolution with filters already in the Winograd domain.

    Args:
        x: ``(N, C, H, W)``.
        filters: ``(O, C / groups, alpha, alpha)``, e.g. ``G g G^T`` or a pruned version of it.
        bias, padding, groups: as :func:`winograd_conv2d`.
        m, r: the algorithm ``F(m, r)``; ``alpha = m + r - 1``.
    """
    alpha = m + r - 1
    if filters.dim() != 4 or tuple(filters.shape[-2:]) != (alpha, alpha):
        raise ValueError(f"filters must be (O, C/groups, {alpha}, {alpha}) for F({m},{r}), got {tuple(filters.shape)}")
    groups, (ph, pw) = _check_conv_arguments(x, filters, groups, padding, r)
    out_dtype = x.dtype
    dtype = compute_dtype(torch.promote_types(x.dtype, filters.dtype))
    at, _, bt = winograd_matrices(m, r, dtype=dtype, device=x.device)

    n, c, h, w = x.shape
    out_h, out_w = h + 2 * ph - r + 1, w + 2 * pw - r + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"input {h}x{w} with padding {ph, pw} is smaller than the {r}x{r} filter")
    tiles_h, tiles_w = -(-out_h // m), -(-out_w // m)
    # Zero padding, plus what the last partial tile needs at the bottom/right.
    extra_h = tiles_h * m + r - 1 - (h + 2 * ph)
    extra_w = tiles_w * m + r - 1 - (w + 2 * pw)
    xp = F.pad(x.to(dtype), (pw, pw + extra_w, ph, ph + extra_h))
    tiles = xp.unfold(2, alpha, m).unfold(3, alpha, m)  # (N, C, th, tw, alpha, alpha)
    # Each 2D transform X -> L X R^T is one GEMM with kron(L, R) on the flattened tile: far
    # faster than batches of tiny matrix products (see benchmarks/bench_transforms.py).
    o, cg, area = filters.shape[0], c // groups, alpha * alpha
    positions = n * tiles_h * tiles_w
    v = tiles.permute(0, 2, 3, 1, 4, 5).reshape(positions, c, area) @ torch.kron(bt, bt).T
    u = filters.to(dtype).reshape(o, cg, area)
    # One (positions x C/groups) @ (C/groups x O/groups) product per Winograd coefficient and group.
    v = v.reshape(positions, groups, cg, area).permute(3, 1, 0, 2).reshape(area * groups, positions, cg)
    u = u.reshape(groups, o // groups, cg, area).permute(3, 0, 2, 1).reshape(area * groups, cg, o // groups)
    product = torch.bmm(v, u).reshape(area, groups, positions, o // groups).permute(2, 1, 3, 0)
    y = product.reshape(positions, o, area) @ torch.kron(at, at).T  # (positions, O, m^2)
    y = y.reshape(n, tiles_h, tiles_w, o, m, m).permute(0, 3, 1, 4, 2, 5)
    y = y.reshape(n, o, tiles_h * m, tiles_w * m)[..., :out_h, :out_w]
    if bias is not None:
        y = y + bias.to(dtype).view(1, -1, 1, 1)
    return y.to(out_dtype)


@register_domain
class WinogradDomain(TransformDomain):
    """Winograd input-tile domain of ``F(m, r)``: ``BT d BT^T`` on non-overlapping tiles.

    Layout: ``(..., H, W)`` -> ``(..., ceil(H/alpha), ceil(W/alpha), alpha, alpha)``
    (edge-replicated padding). Compression keeps, in every ``(H, W)`` plane, the
    ``round((1 - rate) * N)`` of its ``N`` Winograd coefficients that matter most:
    ``BT`` is not orthogonal, so a coefficient ``c`` counts as ``|c|`` times the
    norm of the pixel pattern it stands for (its column of ``BT^-1`` in each
    dim), which is exactly the pixel error its removal alone causes. Energy
    for :meth:`rate_for_energy` is measured in the same weighted coefficients.

    Args:
        m: output tile size of ``F(m, r)`` (default 4).
        r: filter size of ``F(m, r)`` (default 3).

    Example:
        >>> wino = WinogradDomain(m=2, r=3)
        >>> wino.forward(torch.rand(1, 8, 12)).shape
        torch.Size([1, 2, 3, 4, 4])
    """

    name = "winograd"
    fixed_grid = False

    def __init__(self, m: int = 4, r: int = 3) -> None:
        self.m = check_positive_int(m, "m")
        self.r = check_positive_int(r, "r")
        self.alpha = self.m + self.r - 1
        _, _, bt = winograd_matrices(self.m, self.r)
        self._bt = bt
        self._bt_inv = torch.linalg.inv(bt)
        # Dropping coefficient (a, b) changes the tile by c_ab * outer(inv[:, a], inv[:, b]); rank by
        # that change's norm, not by |c_ab| alone, because BT is not orthogonal.
        column_norms = self._bt_inv.norm(dim=0)
        self._importance = torch.outer(column_norms, column_norms)

    def _matrices(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._bt.to(like.device, like.dtype), self._bt_inv.to(like.device, like.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., H, W)`` -> ``(..., nh, nw, alpha, alpha)``."""
        check_float_tensor(x)
        tiles = to_blocks(x.to(compute_dtype(x.dtype)), self.alpha)
        bt, _ = self._matrices(tiles)
        return bt @ tiles @ bt.T

    def inverse(self, coeffs: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``(..., nh, nw, alpha, alpha)`` -> ``(..., H, W)`` cropped to ``size``."""
        check_float_tensor(coeffs, "coeffs", min_dims=4)
        if tuple(coeffs.shape[-2:]) != (self.alpha, self.alpha):
            raise ValueError(
                f"coefficients must have shape (..., nh, nw, {self.alpha}, {self.alpha}), got {tuple(coeffs.shape)}"
            )
        _, bt_inv = self._matrices(coeffs)
        return from_blocks(bt_inv @ coeffs @ bt_inv.T, size)

    def kept_mask_of(self, coeffs: torch.Tensor, rate: float) -> torch.Tensor:
        """Boolean mask of the coefficients :meth:`prune` keeps, shaped like ``coeffs``.

        Each leading index (one ``(H, W)`` plane) keeps its own
        ``round((1 - rate) * nh * nw * alpha**2)`` coefficients.
        """
        check_float_tensor(coeffs, "coeffs", min_dims=4)
        rate = check_rate(rate, "rate")
        importance = coeffs.detach().abs() * self._importance.to(coeffs.device, coeffs.dtype)
        flat = importance.reshape(*coeffs.shape[:-4], -1)
        index = flat.topk(kept_count(flat.shape[-1], rate), dim=-1).indices
        return torch.zeros_like(flat, dtype=torch.bool).scatter_(-1, index, True).reshape(coeffs.shape)

    def prune(self, coeffs: torch.Tensor, rate: float) -> torch.Tensor:
        """Zero the fraction ``rate`` of ``coeffs`` ``(..., nh, nw, alpha, alpha)`` that matters least."""
        return coeffs * self.kept_mask_of(coeffs, rate)

    def _compress(self, x: torch.Tensor, rate: float) -> torch.Tensor:
        return self.inverse(self.prune(self.forward(x), rate), tuple(x.shape[-2:]))

    def _rate_for_energy(self, x: torch.Tensor, energy: float) -> float:
        planes = x[..., 0, 0].numel()
        power = (self.forward(x.double()) * self._importance.to(x.device)).square().reshape(planes, -1)
        # One rate for the batch: add up the planes' energy profiles, largest first.
        profile = power.sort(dim=-1, descending=True).values.sum(0)
        return rate_for_count(count_for_energy(profile, energy), profile.numel())

    def __repr__(self) -> str:
        return f"WinogradDomain(m={self.m}, r={self.r})"
