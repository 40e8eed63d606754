"""The interface every transform domain implements, and the registry of domains.

A *domain* is a name (``"fft"``, ``"dct"``, ``"svd"``, ``"winograd"``) that maps
to an object with ``forward``, ``inverse``, ``compress`` and ``rate_for_energy``
over the last two dimensions of a tensor. Layers, models and the ablation take
the domain as a parameter and look it up here; adding a domain is one class and
one :func:`register_domain` call.

``compress_rate`` has one meaning everywhere: the fraction of the domain's
coefficients that is discarded, ``0 <= rate < 1``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from .._checks import check_float_tensor, check_fraction, check_rate, check_size2d, compute_dtype


class NonFiniteInputError(ValueError):
    """An energy-based choice (a rate or rank for a share of the energy) met NaN or infinite values.

    The energy of such an input has no meaning, so no rate is returned for it (it used to come back
    as 0.0, silently).
    """


def check_finite(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Raise :class:`NonFiniteInputError` naming how many NaN and infinite values ``x`` holds, if any."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        nan = int(torch.isnan(x).sum())
        raise NonFiniteInputError(
            f"{name} has {nan} NaN and {int((~finite).sum()) - nan} infinite values (of {x.numel()}); "
            "an energy share needs finite input"
        )
    return x


class TransformDomain(ABC):
    """A transform over the last two dims ``(..., H, W)`` with a compression rule.

    Subclasses set :attr:`name` and :attr:`fixed_grid` and implement
    :meth:`forward`, :meth:`inverse`, :meth:`_compress` and
    :meth:`_rate_for_energy`. Fixed-grid domains also implement :meth:`_kept_mask`.
    """

    name: ClassVar[str]
    #: True when the kept set depends only on the shape and rate, not the data.
    fixed_grid: ClassVar[bool]

    @abstractmethod
    def forward(self, x: torch.Tensor) -> Any:
        """Transform ``x`` of shape ``(..., H, W)`` into the domain's coefficients."""

    @abstractmethod
    def inverse(self, coeffs: Any, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Map coefficients back to a real ``(..., H, W)`` tensor.

        ``size`` is the spatial size of the original input; it is required where
        the coefficients alone do not determine it (odd widths for the FFT,
        sizes that are not a multiple of the block for blockwise domains).
        """

    def compress(self, x: torch.Tensor, rate: float) -> torch.Tensor:
        """Discard the fraction ``rate`` of coefficients that matter least, and transform back.

        Args:
            x: real tensor ``(..., H, W)``, any leading dims, float16 to float64.
            rate: fraction of coefficients discarded, ``0 <= rate < 1``.

        Returns:
            Tensor of the same shape and dtype as ``x``.
        """
        check_float_tensor(x)
        rate = check_rate(rate, "rate")
        work = x.to(compute_dtype(x.dtype))
        return self._compress(work, rate).to(x.dtype)

    def kept_mask(self, size: tuple[int, int], rate: float) -> torch.Tensor:
        """Boolean mask of the coefficients kept at ``rate`` for inputs of spatial ``size``.

        It broadcasts against :meth:`forward`'s output. Only fixed-grid domains
        (FFT, DCT) have one; the others raise ``ValueError``.
        """
        if not self.fixed_grid:
            raise ValueError(
                f"domain {self.name!r} keeps coefficients by magnitude, so its kept set depends "
                "on the data: kept_mask is only defined for fixed-grid domains "
                f"({', '.join(n for n in available_domains() if _REGISTRY[n].fixed_grid)})"
            )
        return self._kept_mask(check_size2d(size), check_rate(rate, "rate"))

    def rate_for_energy(self, x: torch.Tensor, energy: float) -> float:
        """The largest rate whose kept set holds at least the fraction ``energy`` of ``x``'s energy.

        Energy is summed over all leading dims, so one rate serves a whole batch.
        This is how energy-based settings *choose* a rate; the rate keeps its one
        meaning.

        Raises:
            NonFiniteInputError: ``x`` holds NaN or infinite values, or its energy overflows.
        """
        check_float_tensor(x)
        check_finite(x)
        energy = check_fraction(energy, "energy")
        return self._rate_for_energy(x.detach().to(compute_dtype(x.dtype)), energy)

    def kept_fraction(self, size: tuple[int, int], rate: float) -> float:
        """Fraction of the coefficient grid kept at ``rate`` (fixed-grid domains)."""
        return self.kept_mask(size, rate).float().mean().item()

    @abstractmethod
    def _compress(self, x: torch.Tensor, rate: float) -> torch.Tensor: ...

    @abstractmethod
    def _rate_for_energy(self, x: torch.Tensor, energy: float) -> float: ...

    def _kept_mask(self, size: tuple[int, int], rate: float) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_REGISTRY: dict[str, type[TransformDomain]] = {}


def register_domain(cls: type[TransformDomain]) -> type[TransformDomain]:
    """Class decorator that adds a domain to the registry under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a domain named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available_domains() -> list[str]:
    """Names accepted by :func:`get_domain`, sorted."""
    return sorted(_REGISTRY)


def get_domain(name: str, **options: Any) -> TransformDomain:
    """Build the domain called ``name``.

    Args:
        name: one of :func:`available_domains` (``"fft"``, ``"dct"``, ``"svd"``, ``"winograd"``).
        **options: passed to the domain's constructor, e.g. ``block_size=8`` for
            ``"dct"`` or ``m=2`` for ``"winograd"``.

    Raises:
        ValueError: unknown name.

    Example:
        >>> dct = get_domain("dct", block_size=8)
        >>> y = dct.compress(torch.rand(3, 32, 32), rate=0.75)
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown domain {name!r}; available domains: {', '.join(_REGISTRY)}")
    factory: Callable[..., TransformDomain] = _REGISTRY[name]
    return factory(**options)
