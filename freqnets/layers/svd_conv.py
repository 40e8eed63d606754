"""SVD-separable convolution: a KxK convolution as ``rank`` pairs of Kx1 and 1xK convolutions.

For filters ``W (O, C, kh, kw)`` (per group), reshape to the matrix
``M[(c, i), (o, j)] = W[o, c, i, j]`` of shape ``(C kh, O kw)`` and take its SVD
``M = U S V^T``. Keeping ``R`` singular values gives

    vertical[r, c, i]   = sqrt(s_r) U[(c, i), r]      (a kh x 1 convolution, C -> R channels)
    horizontal[o, r, j] = sqrt(s_r) V[(o, j), r]      (a 1 x kw convolution, R -> O channels)

so the singular vectors act as ``R`` intermediate channels, and at full rank
``R = min(C kh, O kw)`` the pair reproduces the original convolution exactly
(Jaderberg, Vedaldi, Zisserman, "Speeding up Convolutional Neural Networks with
Low Rank Expansions", BMVC 2014, scheme 2). The cost per output pixel drops
from ``C O kh kw`` to ``R (C kh + O kw)`` multiply-adds.

Compression rate = fraction of the rank discarded.

The layer's :attr:`SVDConv2d.weight` is the ``(O, C/g, kh, kw)`` filter bank the
factors represent, so it reads like ``nn.Conv2d.weight``; its ``state_dict`` holds
the factors, and a plain ``nn.Conv2d`` state_dict (a ``weight`` key) loads by being
factorised at the layer's rank. :func:`svd_conv2d` is the function form.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_float_tensor, check_positive_int, check_rate
from ..transforms import conv2d_padding, kept_count, rank_for_energy
from .rates import CompressRateState


def _filter_matrices(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``(O, C/g, kh, kw)`` -> ``(g, C/g * kh, O/g * kw)``, the matrices whose SVD separates the filters."""
    o, cg, kh, kw = weight.shape
    w = weight.reshape(groups, o // groups, cg, kh, kw)
    return w.permute(0, 2, 3, 1, 4).reshape(groups, cg * kh, (o // groups) * kw)


# The Gram matrix's eigenvalues (the squared singular values) carry an absolute error of about n * eps * s_max**2
# in float64, so singular values down to this fraction of the largest come out of its eigendecomposition to about
# 1e-5 relative or better; a truncation that keeps smaller ones takes the SVD instead.
_GRAM_RESOLVES = 1e-4


def _top_singular_triplets(m: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``u (g, p, R)``, ``s (g, R)``, ``vh (g, R, q)``: the ``rank`` largest singular triplets of ``m (g, p, q)``.

    A truncation (``rank < min(p, q)``) takes the symmetric eigendecomposition of the smaller side's Gram matrix,
    about twice as fast as the SVD on a CPU (a ResNet-18's 512-channel layers are 1536 x 1536 matrices, seconds
    each), and the other side's vectors from one product; the full rank, and a kept singular value too small for
    the Gram matrix to resolve (:data:`_GRAM_RESOLVES`, also an all-zero filter bank), take the SVD.
    """
    p, q = m.shape[-2:]
    if rank < min(p, q):
        tall = p > q
        values, vectors = torch.linalg.eigh(m.mT @ m if tall else m @ m.mT)  # ascending eigenvalues
        s = values.flip(-1)[:, :rank].clamp_min(0).sqrt()
        vectors = vectors.flip(-1)[..., :rank]
        if bool((s[:, -1] > _GRAM_RESOLVES * s[:, 0]).all()):
            if tall:
                return (m @ vectors) / s[:, None, :], s, vectors.mT
            return vectors, s, (vectors.mT @ m) / s[..., None]
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return u[..., :rank], s[:, :rank], vh[:, :rank, :]


def _factorise(weight: torch.Tensor, groups: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rank-``rank`` factors ``vertical (g R, C/g, kh, 1)``, ``horizontal (O, R, 1, kw)`` of ``weight``.

    Computed in float64 and returned in ``weight``'s dtype and device.
    """
    o, cg, kh, kw = weight.shape
    u, s, vh = _top_singular_triplets(_filter_matrices(weight.detach().double(), groups), rank)
    root = s.sqrt()
    vertical = (u * root[:, None, :]).reshape(groups, cg, kh, rank).permute(0, 3, 1, 2)
    horizontal = (vh * root[..., None]).reshape(groups, rank, o // groups, kw).permute(0, 2, 1, 3)
    return (
        vertical.reshape(groups * rank, cg, kh, 1).to(weight.device, weight.dtype).contiguous(),
        horizontal.reshape(o, rank, 1, kw).to(weight.device, weight.dtype).contiguous(),
    )


def svd_filters(vertical: torch.Tensor, horizontal: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """The ``(O, C/g, kh, kw)`` filter bank of the factors ``vertical (g R, C/g, kh, 1)``, ``horizontal (O, R, 1, kw)``.

    ``W[o, c, i, j] = sum_r vertical[r, c, i] * horizontal[o, r, j]`` within each group; differentiable.
    """
    _, cg, kh, _ = vertical.shape
    o, rank, _, kw = horizontal.shape
    v = vertical.reshape(groups, rank, cg, kh)
    h = horizontal.reshape(groups, o // groups, rank, kw)
    return torch.einsum("grci,gorj->gocij", v, h).reshape(o, cg, kh, kw)


def svd_conv2d(
    input: torch.Tensor,
    vertical: torch.Tensor,
    horizontal: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d`` with the filter bank given as SVD factors: the function form of :class:`SVDConv2d`.

    Computes a ``kh x 1`` convolution to ``g R`` channels, then a ``1 x kw`` one to ``O``,
    which equals ``F.conv2d(input, svd_filters(vertical, horizontal, groups), bias, stride,
    padding, dilation, groups)`` at ``R (C/g kh + O/g kw)`` instead of ``C/g O kh kw`` multiply-adds
    per output pixel and group.

    Args:
        input: ``(B, C, H, W)``.
        vertical: ``(g R, C/g, kh, 1)``; ``horizontal``: ``(O, R, 1, kw)`` (``SVDConv2d``'s parameters).
        bias: ``(O,)`` or ``None``.
        stride, padding, dilation, groups: as ``F.conv2d`` (zero ``padding``: int, pair,
            ``"valid"`` or ``"same"``).

    Returns:
        ``(B, O, H_out, W_out)`` as ``F.conv2d``.
    """
    check_float_tensor(input, "input", min_dims=4)
    groups = check_positive_int(groups, "groups")
    if vertical.dim() != 4 or horizontal.dim() != 4 or vertical.shape[-1] != 1 or horizontal.shape[-2] != 1:
        raise ValueError(
            "vertical must be (g R, C/g, kh, 1) and horizontal (O, R, 1, kw), got "
            f"{tuple(vertical.shape)} and {tuple(horizontal.shape)}"
        )
    if vertical.shape[0] != groups * horizontal.shape[1] or horizontal.shape[0] % groups:
        raise ValueError(
            f"factors do not agree with groups={groups}: vertical {tuple(vertical.shape)}, "
            f"horizontal {tuple(horizontal.shape)} (vertical has g * R rows, horizontal R columns)"
        )
    (sh, sw), (dh, dw) = (_pair(stride), _pair(dilation))
    kernel = (vertical.shape[2], horizontal.shape[3])
    left, right, top, bottom = conv2d_padding(padding, kernel, (dh, dw), (sh, sw))
    x = F.pad(input, (left, right, top, bottom)) if any((left, right, top, bottom)) else input
    x = F.conv2d(x, vertical, None, (sh, 1), 0, (dh, 1), groups)
    return F.conv2d(x, horizontal, bias, (1, sw), 0, (1, dw), groups)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class SVDConv2d(CompressRateState, nn.Module):
    """A KxK convolution factorised into ``rank`` (Kx1, 1xK) convolution pairs per group.

    Constructor arguments as ``nn.Conv2d`` (``in_channels, out_channels, kernel_size,
    stride, padding, dilation, groups, bias, padding_mode``), plus ``rank`` or
    ``compress_rate`` (fraction of the full rank ``min(C/g * kh, O/g * kw)``
    discarded). A new layer factorises a freshly initialised ``nn.Conv2d``;
    :meth:`from_conv` factorises a trained one. The factors are the parameters
    (``vertical (g R, C/g, kh, 1)``, ``horizontal (O, R, 1, kw)``, ``bias``):
    the rank is fixed, the factors learn. :attr:`weight` is the ``(O, C/g, kh, kw)``
    filter bank they represent, as ``nn.Conv2d.weight``.

    Shape:
        input ``(B, C, H, W)``; output as ``nn.Conv2d`` with the same arguments.

    Example:
        >>> conv = torch.nn.Conv2d(16, 32, 3, padding=1)
        >>> svd = SVDConv2d.from_conv(conv, compress_rate=0.5)
        >>> svd.rank, svd.weight.shape, svd(torch.randn(1, 16, 8, 8)).shape
        (24, torch.Size([32, 16, 3, 3]), torch.Size([1, 32, 8, 8]))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        rank: int | None = None,
        compress_rate: float | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        template = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
            device=device, dtype=dtype,
        )  # fmt: skip
        self._setup(template, rank, compress_rate, None)

    @classmethod
    def from_conv(
        cls,
        conv: nn.Conv2d,
        rank: int | None = None,
        compress_rate: float | None = None,
        energy: float | None = None,
    ) -> SVDConv2d:
        """Factorise a trained ``nn.Conv2d``; give at most one of ``rank``, ``compress_rate``, ``energy``."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"from_conv needs an nn.Conv2d, got {type(conv).__name__}")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._setup(conv, rank, compress_rate, energy)
        return layer

    def _setup(self, conv: nn.Conv2d, rank, compress_rate, energy) -> None:
        given = [n for n, v in (("rank", rank), ("compress_rate", compress_rate), ("energy", energy)) if v is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of rank, compress_rate or energy; got {given}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.dilation = conv.kernel_size, conv.stride, conv.dilation
        self.groups, self.padding_mode, self.padding = conv.groups, conv.padding_mode, conv.padding
        self._padding_amounts = tuple(conv._reversed_padding_repeated_twice)  # (left, right, top, bottom)
        cg, kh, kw = conv.weight.shape[1:]
        self.full_rank = min(cg * kh, (conv.out_channels // conv.groups) * kw)
        if rank is not None:
            rank = check_positive_int(rank, "rank")
            if rank > self.full_rank:
                raise ValueError(f"rank must be <= {self.full_rank} (min(C/g * kh, O/g * kw)), got {rank}")
        elif energy is not None:
            rank = rank_for_energy(_filter_matrices(conv.weight.detach(), conv.groups), energy)
        else:
            rank = kept_count(self.full_rank, check_rate(compress_rate or 0.0))
        self._init_rate_state(0.0)
        self._set_factors(*self._empty_factors(rank, conv.weight))
        # The SVD waits for the first use of the factors (see _factorise_pending): building a model
        # should not cost an SVD per layer, and loading a checkpoint right after makes it moot.
        # A buffer, so that .to() and DDP's broadcast of buffers carry it with the parameters.
        self.register_buffer("_pending_filters", conv.weight.detach().clone(), persistent=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())

    def _empty_factors(self, rank: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cg, (kh, kw) = self.in_channels // self.groups, self.kernel_size
        shapes = ((self.groups * rank, cg, kh, 1), (self.out_channels, rank, 1, kw))
        return tuple(torch.zeros(shape, dtype=like.dtype, device=like.device) for shape in shapes)

    def _set_factors(self, vertical: torch.Tensor, horizontal: torch.Tensor) -> None:
        """New factor parameters (their rank may differ from the current one)."""
        self.rank = horizontal.shape[1]
        self._compress_rate = 1.0 - self.rank / self.full_rank
        # Straight into _parameters: nn.Module's setattr would read the old factors (and factorise them).
        self._parameters["vertical"] = nn.Parameter(vertical)
        self._parameters["horizontal"] = nn.Parameter(horizontal)
        # What the factors held when set: a later in-place write (an init, a load) is the user's.
        self._factor_versions = self._versions()

    def _versions(self) -> tuple[int, int]:
        return self._parameters["vertical"]._version, self._parameters["horizontal"]._version

    def _has_pending_filters(self) -> bool:
        return "_pending_filters" in self.__dict__.get("_buffers", {})

    @torch.no_grad()
    def _factorise_pending(self) -> None:
        """Compute the factors of the filters the layer was built from, unless they were written since."""
        pending = self._buffers.pop("_pending_filters")
        if self._factor_versions == self._versions():  # else written in place since (an init): keep that
            vertical, horizontal = _factorise(pending, self.groups, self.rank)
            self._parameters["vertical"].copy_(vertical)
            self._parameters["horizontal"].copy_(horizontal)

    def __getattr__(self, name: str):
        # Every read of the factors (forward, weight, an optimizer's first look, a user) computes them first.
        if name in ("vertical", "horizontal") and self._has_pending_filters():
            self._factorise_pending()
        return super().__getattr__(name)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        if self._has_pending_filters():
            self._factorise_pending()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    @torch.no_grad()
    def _apply_compress_rate(self, rate: float) -> None:
        # The rate counts whole ranks; a smaller rank truncates the current filters' SVD.
        rank = kept_count(self.full_rank, rate)
        if rank > self.rank:
            raise ValueError(
                f"compress_rate={rate} needs rank {rank}, but this layer keeps rank {self.rank}: the singular "
                "vectors it discarded are gone; convert the original nn.Conv2d again for a larger rank"
            )
        if rank < self.rank:
            if self._has_pending_filters():  # not factorised yet: the pending SVD will use the new rank
                self._set_factors(*self._empty_factors(rank, self._parameters["vertical"]))
            else:
                self._set_factors(*_factorise(self.weight, self.groups, rank))

    def _prepare_loading(self, state_dict, prefix: str) -> None:
        vertical_key, horizontal_key, weight_key = prefix + "vertical", prefix + "horizontal", prefix + "weight"
        if weight_key in state_dict and vertical_key not in state_dict and horizontal_key not in state_dict:
            # A plain nn.Conv2d state_dict (timm's weights) has the filter bank, not the factors:
            # factorise it at this layer's rank so that it loads as into the convolution it replaced.
            weight = state_dict.pop(weight_key)
            expected = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
            if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != expected:
                shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
                raise ValueError(f"{weight_key}: a (O, C/g, kh, kw) = {expected} filter bank is needed, got {shape}")
            state_dict[vertical_key], state_dict[horizontal_key] = _factorise(weight, self.groups, self.rank)
        if vertical_key in state_dict and self._has_pending_filters():
            del self._buffers["_pending_filters"]  # the loaded factors replace the pending SVD
        vertical, horizontal = state_dict.get(vertical_key), state_dict.get(horizontal_key)
        if isinstance(vertical, torch.Tensor) and isinstance(horizontal, torch.Tensor) and vertical.dim() == 4:
            rank = horizontal.shape[1] if horizontal.dim() == 4 else -1
            fits = (
                vertical.shape == (self.groups * rank, self.in_channels // self.groups, self.kernel_size[0], 1)
                and horizontal.shape == (self.out_channels, rank, 1, self.kernel_size[1])
                and 1 <= rank <= self.full_rank
            )
            if fits and rank != self.rank:  # the file's rank wins, as its rate does
                self._set_factors(*self._empty_factors(rank, self._parameters["vertical"]))

    @property
    def weight(self) -> torch.Tensor:
        """The ``(O, C/g, kh, kw)`` filter bank the factors represent (differentiable; not a parameter)."""
        return svd_filters(self.vertical, self.horizontal, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        x = F.pad(x, self._padding_amounts, mode=mode)
        return svd_conv2d(x, self.vertical, self.horizontal, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"rank={self.rank}/{self.full_rank}, compress_rate={self.compress_rate:.3f}"
        )


def convert_conv(conv: nn.Module, compress_rate: float, backend: str) -> nn.Module:
    """Registry converter: ``nn.Conv2d`` -> :class:`SVDConv2d` at ``compress_rate`` (of the rank)."""
    from .registry import require_plain_conv2d, require_torch_backend

    require_torch_backend(backend, "svd")
    require_plain_conv2d(conv, "SVD-separable")
    return SVDConv2d.from_conv(conv, compress_rate=compress_rate)
