"""The one registry of convolution layers per domain, read by :func:`convert_model`.

Each entry names the domain's layer classes and says how to turn an existing
``nn.Conv1d``/``nn.Conv2d`` into that layer, or why it cannot. The built-in
layers are listed in :data:`BUILT_IN_LAYERS` below, each converter beside its
class; :func:`register_layer` adds a user's own. Nothing else branches on the
domain name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from . import band_limited_conv, dct_conv, svd_conv, winograd_conv

#: ``converter(conv, compress_rate, backend) -> new module``, or raise ``Unconvertible(reason)``.
Converter = Callable[[nn.Module, float, str], nn.Module]


class Unconvertible(Exception):
    """Raised by a converter for a convolution its domain cannot represent; the message says why."""


@dataclass(frozen=True)
class DomainLayer:
    """A domain's convolution layer: its classes (a converted model holds these) and its converter."""

    domain: str
    layer_types: tuple[type[nn.Module], ...]
    converter: Converter
    description: str


#: The layer of each built-in domain (each converter is defined beside its layer class).
BUILT_IN_LAYERS: dict[str, DomainLayer] = {
    layer.domain: layer
    for layer in (
        DomainLayer(
            "fft",
            (band_limited_conv.BandLimitedConv1d, band_limited_conv.BandLimitedConv2d),
            band_limited_conv.convert_conv,
            "band-limited FFT convolution (BandLimitedConv1d/2d)",
        ),
        DomainLayer("svd", (svd_conv.SVDConv2d,), svd_conv.convert_conv, "SVD-separable convolution (SVDConv2d)"),
        DomainLayer(
            "winograd",
            (winograd_conv.WinogradConv2d,),
            winograd_conv.convert_conv,
            "Winograd convolution with pruning (WinogradConv2d)",
        ),
        DomainLayer("dct", (dct_conv.DCTConv2d,), dct_conv.convert_conv, "DCT-compressed convolution (DCTConv2d)"),
    )
}

_LAYERS: dict[str, DomainLayer] = dict(BUILT_IN_LAYERS)


def register_layer(
    domain: str, converter: Converter, description: str, layer_types: tuple[type[nn.Module], ...] = ()
) -> None:
    """Register (or replace) the convolution layer of ``domain`` (a name of :func:`freqnets.available_domains`).

    Args:
        converter: ``converter(conv, compress_rate, backend) -> module``; raises :class:`Unconvertible`
            with the reason for convolutions it cannot represent.
        description: one line for listings.
        layer_types: the classes ``converter`` returns; :func:`convert_model` re-rates modules of
            these types instead of converting them again (they need a settable ``compress_rate``).
    """
    _LAYERS[domain] = DomainLayer(domain, tuple(layer_types), converter, description)


def layer_for(domain: str) -> DomainLayer:
    """The registered layer of ``domain``; ``ValueError`` naming what exists otherwise."""
    from ..transforms import available_domains

    if domain not in available_domains():
        raise ValueError(f"unknown domain {domain!r}; available domains: {', '.join(available_domains())}")
    if domain not in _LAYERS:
        raise ValueError(
            f"domain {domain!r} has no convolution layer yet; convert_model supports: {', '.join(sorted(_LAYERS))}"
        )
    return _LAYERS[domain]


def domains_with_layers() -> list[str]:
    """The domains :func:`convert_model` can convert to, sorted."""
    return sorted(_LAYERS)


def domain_layer_types() -> tuple[type[nn.Module], ...]:
    """Every registered domain layer class (a module of one of them is already converted)."""
    return tuple(t for layer in _LAYERS.values() for t in layer.layer_types)


def require_plain_conv2d(conv: nn.Module, domain: str) -> None:
    """Raise :class:`Unconvertible` unless ``conv`` is exactly an ``nn.Conv2d``."""
    if type(conv) is not nn.Conv2d:
        raise Unconvertible(f"{type(conv).__name__} has no {domain} form (nn.Conv2d does)")


def require_torch_backend(backend: str, domain: str) -> None:
    """Accept ``"torch"`` and ``"auto"`` (which resolves to torch here); refuse any other backend by name."""
    if backend not in ("torch", "auto"):
        raise ValueError(
            f"domain {domain!r} has only the 'torch' backend ('auto' selects it), got backend={backend!r}"
        )
