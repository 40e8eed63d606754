"""The one registry of convolution layers per domain, read by :func:`convert_model`.

Each entry says how to turn an existing ``nn.Conv1d``/``nn.Conv2d`` into the
domain's layer, or why it cannot. Adding a domain's layer is one
:func:`register_layer` call; nothing else branches on the domain name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

#: ``converter(conv, compress_rate, backend) -> new module``, or raise ``Unconvertible(reason)``.
Converter = Callable[[nn.Module, float, str], nn.Module]


class Unconvertible(Exception):
    """Raised by a converter for a convolution its domain cannot represent; the message says why."""


@dataclass(frozen=True)
class DomainLayer:
    domain: str
    converter: Converter
    description: str


_LAYERS: dict[str, DomainLayer] = {}


def register_layer(domain: str, converter: Converter, description: str) -> None:
    """Register the convolution layer of ``domain`` (a name of :func:`freqnets.transforms.available_domains`)."""
    _LAYERS[domain] = DomainLayer(domain, converter, description)


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
    return sorted(_LAYERS)


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
