"""A transform-domain layer's compress rate as part of its state: saved, restored, read and set per model.

Every layer :func:`freqnets.convert_model` makes (band-limited, SVD, Winograd,
DCT) carries its ``compress_rate`` and ``rate_frozen`` flag in its
``state_dict``, as the extra state ``<layer>._extra_state``: a float64 tensor
``[compress_rate, rate_frozen]`` (a tensor, so ``torch.load(weights_only=True)``,
safetensors and timm's EMA and checkpoint tools handle it; float64, so a rate
such as 0.405 comes back exactly).

Loading a ``state_dict``:

* with the rate entries: **the file wins**. Each layer takes the file's rate and
  frozen flag; where they differ from the model's, a :class:`RateMismatchWarning`
  names the layer and both rates (filter it with ``warnings`` if that is what you
  meant). A Winograd layer also takes the file's mask; an SVD layer takes the
  file's rank (its factors are resized to the file's shapes).
* without them (a plain ``nn.Conv2d`` state_dict, e.g. timm's weights): the
  model keeps its own rates, and ``strict=True`` does not count them as missing.

The other direction, a converted model's ``state_dict`` into the plain network,
loads with ``strict=False`` (the rate entries are then its only unexpected keys).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
import torch.nn as nn

from .._checks import check_rate

_EXTRA_STATE = "_extra_state"


class RateMismatchWarning(UserWarning):
    """A loaded ``state_dict`` set a layer's compress rate to a value other than the model's."""


class CompressRateState:
    """Mixin for the transform-domain layers: ``compress_rate`` and ``rate_frozen`` saved in the ``state_dict``.

    Subclasses call :meth:`_init_rate_state` in ``__init__`` (after ``nn.Module.__init__``) and
    override :meth:`_apply_compress_rate` when a new rate changes more than the number
    (Winograd re-prunes its mask, SVD truncates its factors).
    """

    _compress_rate: float
    #: Set by :func:`freqnets.calibrate_rates`: the rate is then fixed for training; setting it raises.
    rate_frozen: bool

    def _init_rate_state(self, compress_rate: float) -> None:
        self.rate_frozen = False
        self._compress_rate = check_rate(compress_rate)

    @property
    def compress_rate(self) -> float:
        """Fraction of the domain's coefficients discarded, ``0 <= rate < 1``."""
        return self._compress_rate

    @compress_rate.setter
    def compress_rate(self, rate: float) -> None:
        if self.rate_frozen:
            raise RuntimeError(
                f"this layer's compress_rate was frozen at {self._compress_rate} by calibrate_rates; "
                "set rate_frozen = False to change it"
            )
        self._apply_compress_rate(check_rate(rate))

    def _apply_compress_rate(self, rate: float) -> None:
        """Make ``rate`` (checked) the layer's rate; subclasses update what depends on it."""
        self._compress_rate = rate

    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor([self._compress_rate, float(self.rate_frozen)], dtype=torch.float64)

    def set_extra_state(self, state) -> None:
        rate, frozen = _parse_rate_state(state)
        self._compress_rate, self.rate_frozen = rate, frozen

    def _prepare_loading(self, state_dict: Mapping, prefix: str) -> None:
        """Called before this layer's entries load (SVD: factorise a filter bank, take the file's rank)."""

    def _finish_loading(self, state_dict: Mapping, prefix: str, missing_keys: list[str]) -> None:
        """Called after this layer's entries loaded (Winograd: derive a missing mask from the weights)."""

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        key = prefix + _EXTRA_STATE
        before = self._compress_rate
        self._prepare_loading(state_dict, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if self._compress_rate != before:
            warnings.warn(
                f"{prefix[:-1] or type(self).__name__}: compress_rate {before} of the model replaced by "
                f"{self._compress_rate} (rate_frozen={self.rate_frozen}) from the loaded state_dict "
                "(the file's rate wins)",
                RateMismatchWarning,
                stacklevel=2,
            )
        if key not in state_dict and key in missing_keys:  # a plain nn.Conv2d state_dict: the model keeps its rate
            missing_keys.remove(key)
        self._finish_loading(state_dict, prefix, missing_keys)


def _parse_rate_state(state) -> tuple[float, bool]:
    values = state.tolist() if isinstance(state, torch.Tensor) else None
    if not (isinstance(values, list) and len(values) == 2 and values[1] in (0.0, 1.0)):
        shown = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(f"a layer's rate state must be a tensor [compress_rate, rate_frozen (0 or 1)], got {shown}")
    return check_rate(values[0]), bool(values[1])


def rate_layers(model: nn.Module) -> dict[str, CompressRateState]:
    """The transform-domain layers of ``model`` by module name (``""`` when ``model`` is one)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, CompressRateState)}


def get_compress_rates(model: nn.Module) -> dict[str, float]:
    """The compress rate of every transform-domain layer of ``model``, by module name.

    Example:
        >>> model = freqnets.convert_model(timm.create_model("resnet18"), "fft", compress_rate=0.5)
        >>> freqnets.get_compress_rates(model)["layer1.0.conv1"]
        0.5
    """
    return {name: layer.compress_rate for name, layer in rate_layers(model).items()}


def set_compress_rates(model: nn.Module, rates: float | Mapping[str, float]) -> dict[str, float]:
    """Set the compress rate of every transform-domain layer of ``model`` (a number) or of the named ones (a dict).

    Nothing changes unless every named layer exists, every rate is valid and no affected
    layer is frozen (:func:`freqnets.calibrate_rates` freezes them; set ``rate_frozen = False``
    on a layer to change it anyway). SVD layers round the rate to a whole rank and cannot
    grow back a rank they discarded.

    Returns:
        The rates now in effect, as :func:`get_compress_rates`.

    Raises:
        ValueError: no transform-domain layers, unknown layer names, or a rate outside ``[0, 1)``.
        TypeError: ``rates`` is neither a number nor a mapping.
        RuntimeError: frozen layers would change (all are named).
    """
    layers = rate_layers(model)
    if not layers:
        raise ValueError("the model has no transform-domain layers; run freqnets.convert_model first")
    if isinstance(rates, Mapping):
        unknown = sorted(set(rates) - set(layers))
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise ValueError(f"no transform-domain layer named {names}; the model has: {', '.join(layers)}")
        wanted = {name: check_rate(rate, f"rate of {name!r}") for name, rate in rates.items()}
    else:
        rate = check_rate(rates)
        wanted = dict.fromkeys(layers, rate)
    frozen = [name for name in wanted if layers[name].rate_frozen and layers[name].compress_rate != wanted[name]]
    if frozen:
        raise RuntimeError(
            f"frozen rates (set by calibrate_rates) would change in {', '.join(frozen)}; "
            "set rate_frozen = False on those layers first"
        )
    for name, rate in wanted.items():
        if layers[name].compress_rate != rate:
            layers[name].compress_rate = rate
    return get_compress_rates(model)
