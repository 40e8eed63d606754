"""Winograd convolution with training-time pruning in the Winograd domain.

``WinogradConv2d`` computes a stride-1 convolution by tiled Winograd ``F(m, r)``
(:func:`freqnets.transforms.winograd_conv2d_transformed`). Its filters stay
``nn.Conv2d``-shaped parameters ``weight (O, C/g, r, r)``; their Winograd-domain
form ``U = G w G^T`` (``alpha x alpha`` per filter) is multiplied by a fixed
boolean mask (buffer ``winograd_mask``). ``compress_rate`` sets the mask to
zero the smallest-magnitude fraction of the layer's Winograd coefficients
(Liu, Pool, Han, Dally, "Efficient Sparse-Winograd Convolutional Neural
Networks", ICLR 2018). The mask is applied in every forward pass, so the pruned
coefficients stay zero and receive no gradient during training. At rate 0 the
layer equals ``F.conv2d``, forward and backward.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .._checks import check_positive_int
from ..transforms import winograd_conv2d, winograd_conv2d_transformed, winograd_filter_mask, winograd_filter_transform
from .rates import CompressRateState

#: The function form of :class:`WinogradConv2d` (``F.conv2d``'s arguments, plus ``m`` and ``compress_rate``).
__all__ = ["WinogradConv2d", "convert_conv", "winograd_conv2d"]


class WinogradConv2d(CompressRateState, nn.Conv2d):
    """Drop-in ``nn.Conv2d`` for square kernels, stride 1, dilation 1, computed by Winograd ``F(m, r)``.

    ``weight (O, C/g, r, r)`` and ``bias`` are ``nn.Conv2d``'s parameters, so a plain
    ``nn.Conv2d`` state_dict loads (the mask is then derived from the loaded weights at
    this layer's rate). The function form is :func:`winograd_conv2d`: right after
    ``prune(rate)``, ``layer(x) == winograd_conv2d(x, layer.weight, layer.bias, padding=...,
    groups=..., m=layer.m, compress_rate=rate)`` for zero padding.

    Args:
        m: output tile size (2 or 4 are accurate in float32; 6 loses digits).
        compress_rate: fraction of Winograd-domain filter coefficients pruned, ``0 <= rate < 1``;
            saved in the ``state_dict`` with ``rate_frozen`` (:mod:`freqnets.layers.rates`) and the mask.
        Other arguments as ``nn.Conv2d``; strides, dilations and non-square kernels raise ``ValueError``.

    Example:
        >>> conv = WinogradConv2d(8, 8, 3, padding=1, m=4, compress_rate=0.5)
        >>> conv(torch.randn(2, 8, 16, 16)).shape, conv.winograd_mask.float().mean().item()
        (torch.Size([2, 8, 16, 16]), 0.5)
    """

    def __init__(self, *args, m: int = 4, compress_rate: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        kh, kw = self.kernel_size
        if kh != kw:
            raise ValueError(f"WinogradConv2d needs a square kernel, got kernel_size={self.kernel_size}")
        if self.stride != (1, 1) or self.dilation != (1, 1):
            raise ValueError(
                f"WinogradConv2d needs stride 1 and dilation 1, got stride={self.stride}, dilation={self.dilation}"
            )
        self.m = check_positive_int(m, "m")
        self.r = kh
        self.alpha = self.m + self.r - 1
        shape = (self.out_channels, self.in_channels // self.groups, self.alpha, self.alpha)
        self.register_buffer("winograd_mask", torch.ones(shape, dtype=torch.bool, device=self.weight.device))
        self._init_rate_state(0.0)
        self.prune(compress_rate)

    def winograd_filters(self) -> torch.Tensor:
        """``(O, C/g, alpha, alpha)``: the masked Winograd-domain filters the forward pass uses."""
        return winograd_filter_transform(self.weight, self.m) * self.winograd_mask

    def prune(self, compress_rate: float) -> None:
        """Set the mask to keep the largest ``1 - compress_rate`` of ``|G w G^T|`` over the whole layer.

        The same as setting :attr:`compress_rate` (which re-prunes from the current weights); raises
        when the rate is frozen.
        """
        self.compress_rate = compress_rate

    @torch.no_grad()
    def _apply_compress_rate(self, rate: float) -> None:
        self._buffers.pop("_pending_weight", None)
        if rate == 0.0:  # everything kept: no need to look at the weights
            self._buffers["winograd_mask"].fill_(True)
        else:
            # The mask is selected on its first use (_select_pending_mask) from a copy of the weights
            # as they are now: building a model then costs no selection per layer, and loading a
            # checkpoint's mask right after makes it moot. A buffer, so that .to() carries it.
            self.register_buffer("_pending_weight", self._parameters["weight"].detach().clone(), persistent=False)
        self._compress_rate = rate

    @torch.no_grad()
    def _select_pending_mask(self) -> None:
        weight = self._buffers.pop("_pending_weight")
        mask = winograd_filter_mask(winograd_filter_transform(weight, self.m), self._compress_rate)
        self._buffers["winograd_mask"].copy_(mask)

    def __getattr__(self, name: str):
        # Every read of the mask (forward, winograd_filters, a user) selects a pending one first.
        if name == "winograd_mask" and "_pending_weight" in self.__dict__.get("_buffers", {}):
            self._select_pending_mask()
        return super().__getattr__(name)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        if "_pending_weight" in self._buffers:
            self._select_pending_mask()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _finish_loading(self, state_dict, prefix: str, missing_keys: list[str]) -> None:
        key = prefix + "winograd_mask"
        if key in state_dict:  # the file's mask replaces a pending selection
            self._buffers.pop("_pending_weight", None)
        else:  # a plain nn.Conv2d state_dict has no mask: derive it from the loaded weights at this rate
            self._apply_compress_rate(self._compress_rate)
            if key in missing_keys:
                missing_keys.remove(key)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, m: int = 4, compress_rate: float = 0.0) -> WinogradConv2d:
        """A Winograd copy of ``conv`` (same weights), pruned at ``compress_rate``."""
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode,
            device=conv.weight.device, dtype=conv.weight.dtype, m=m,
        )  # fmt: skip
        new.load_state_dict(conv.state_dict(), strict=False)
        new.prune(compress_rate)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            x = nn.functional.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        else:
            left, right, top, bottom = self._reversed_padding_repeated_twice
            if left != right or top != bottom:
                x = nn.functional.pad(x, (left, right, top, bottom))
                padding = 0
            else:
                padding = (top, left)
        device_type = x.device.type
        if not torch.is_autocast_enabled(device_type):
            filters = self.winograd_filters()
            return winograd_conv2d_transformed(x, filters, self.bias, padding, self.groups, self.m, self.r)
        # Winograd's transforms amplify rounding (F(4, 3)'s points reach 2): they stay in float32 under
        # autocast, and the output takes the autocast dtype as F.conv2d's does.
        with torch.autocast(device_type, enabled=False):
            filters = self.winograd_filters().float()
            bias = None if self.bias is None else self.bias.float()
            y = winograd_conv2d_transformed(x.float(), filters, bias, padding, self.groups, self.m, self.r)
        return y.to(torch.get_autocast_dtype(device_type))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", m={self.m}, compress_rate={self.compress_rate}"


def convert_conv(conv: nn.Module, compress_rate: float, backend: str) -> nn.Module:
    """Registry converter: stride-1, undilated, square ``nn.Conv2d`` -> :class:`WinogradConv2d`."""
    from .registry import Unconvertible, require_plain_conv2d, require_torch_backend

    require_torch_backend(backend, "winograd")
    require_plain_conv2d(conv, "Winograd")
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.kernel_size[0] != conv.kernel_size[1]:
        raise Unconvertible(
            f"Winograd needs stride 1, dilation 1 and a square kernel (stride={conv.stride}, "
            f"dilation={conv.dilation}, kernel={conv.kernel_size})"
        )
    return WinogradConv2d.from_conv(conv, compress_rate=compress_rate)
