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
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_positive_int, check_rate
from ..transforms import rank_for_energy
from ..transforms._frequency_order import kept_count


def _filter_matrices(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``(O, C/g, kh, kw)`` -> ``(g, C/g * kh, O/g * kw)``, the matrices whose SVD separates the filters."""
    o, cg, kh, kw = weight.shape
    w = weight.reshape(groups, o // groups, cg, kh, kw)
    return w.permute(0, 2, 3, 1, 4).reshape(groups, cg * kh, (o // groups) * kw)


class SVDConv2d(nn.Module):
    """A KxK convolution factorised into ``rank`` (Kx1, 1xK) convolution pairs per group.

    Constructor arguments as ``nn.Conv2d`` (``in_channels, out_channels, kernel_size,
    stride, padding, dilation, groups, bias, padding_mode``), plus ``rank`` or
    ``compress_rate`` (fraction of the full rank ``min(C/g * kh, O/g * kw)``
    discarded). A new layer factorises a freshly initialised ``nn.Conv2d``;
    :meth:`from_conv` factorises a trained one. The factors are the parameters
    (``vertical (g R, C/g, kh, 1)``, ``horizontal (O, R, 1, kw)``, ``bias``):
    the rank is fixed, the factors learn.

    Shape:
        input ``(B, C, H, W)``; output as ``nn.Conv2d`` with the same arguments.

    Example:
        >>> conv = torch.nn.Conv2d(16, 32, 3, padding=1)
        >>> svd = SVDConv2d.from_conv(conv, compress_rate=0.5)
        >>> svd.rank, svd(torch.randn(1, 16, 8, 8)).shape
        (24, torch.Size([1, 32, 8, 8]))
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
        matrices = _filter_matrices(conv.weight.detach(), conv.groups)
        self.full_rank = min(matrices.shape[-2:])
        if rank is not None:
            rank = check_positive_int(rank, "rank")
            if rank > self.full_rank:
                raise ValueError(f"rank must be <= {self.full_rank} (min(C/g * kh, O/g * kw)), got {rank}")
        elif energy is not None:
            rank = rank_for_energy(matrices, energy)
        else:
            rank = kept_count(self.full_rank, check_rate(compress_rate or 0.0))
        self.rank = rank
        self.compress_rate = 1.0 - rank / self.full_rank
        u, s, vh = torch.linalg.svd(matrices.double(), full_matrices=False)
        root = s[:, :rank].sqrt()
        g, (cg, kh, kw), o = conv.groups, conv.weight.shape[1:], conv.out_channels
        vertical = (u[..., :rank] * root[:, None, :]).reshape(g, cg, kh, rank).permute(0, 3, 1, 2)
        horizontal = (vh[:, :rank, :] * root[..., None]).reshape(g, rank, o // g, kw).permute(0, 2, 1, 3)
        dtype, device = conv.weight.dtype, conv.weight.device
        self.vertical = nn.Parameter(vertical.reshape(g * rank, cg, kh, 1).to(device, dtype).contiguous())
        self.horizontal = nn.Parameter(horizontal.reshape(o, rank, 1, kw).to(device, dtype).contiguous())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        x = F.pad(x, self._padding_amounts, mode=mode)
        (sh, sw), (dh, dw) = self.stride, self.dilation
        x = F.conv2d(x, self.vertical, None, (sh, 1), 0, (dh, 1), self.groups)
        return F.conv2d(x, self.horizontal, self.bias, (1, sw), 0, (1, dw), self.groups)

    def weight(self) -> torch.Tensor:
        """The ``(O, C/g, kh, kw)`` filters the factors represent (for inspection and tests)."""
        g, r = self.groups, self.rank
        o, cg = self.out_channels, self.in_channels // g
        kh, kw = self.kernel_size
        v = self.vertical.reshape(g, r, cg, kh)
        h = self.horizontal.reshape(g, o // g, r, kw)
        return torch.einsum("grci,gorj->gocij", v, h).reshape(o, cg, kh, kw)

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
