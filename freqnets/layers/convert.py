"""``convert_model``: put a domain's convolutions into any network, and say what changed."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from .._checks import check_positive_int, check_rate
from .registry import Unconvertible, domain_layer_types, layer_for


@dataclass
class ConversionRow:
    name: str
    layer: str
    kernel_size: tuple[int, ...]
    converted: bool
    note: str
    #: An existing layer of the domain whose rate was set to the new one (not converted again).
    rerated: bool = False


@dataclass
class ConversionSummary:
    """What :func:`convert_model` did to each convolution of a model."""

    domain: str
    compress_rate: float
    backend: str
    rows: list[ConversionRow] = field(default_factory=list)

    @property
    def converted(self) -> int:
        return sum(row.converted for row in self.rows)

    @property
    def rerated(self) -> int:
        return sum(row.rerated for row in self.rows)

    @property
    def skipped(self) -> int:
        return len(self.rows) - self.converted - self.rerated

    def __str__(self) -> str:
        lines = [
            f"convert_model: domain={self.domain!r}, compress_rate={self.compress_rate}, backend={self.backend!r}: "
            f"{self.converted} of {len(self.rows)} convolutions converted"
            + (f", {self.rerated} re-rated" if self.rerated else ""),
            "",
            "| layer | type | kernel | converted | note |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.name or '(model)'} | {r.layer} | {'x'.join(map(str, r.kernel_size))} | "
            f"{'yes' if r.converted else 're-rated' if r.rerated else 'no'} | {r.note} |"
            for r in self.rows
        ]
        return "\n".join(lines)


_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def convert_model(
    model: nn.Module,
    domain: str = "fft",
    compress_rate: float = 0.5,
    min_kernel_size: int = 3,
    backend: str = "torch",
) -> nn.Module:
    """Replace the convolutions of ``model`` by ``domain``'s layer, copying their weights; re-rate its layers.

    Args:
        model: any ``nn.Module`` (a timm ResNet, a DenseNet, a single convolution).
        domain: ``"fft"`` (:class:`BandLimitedConv1d`/``2d``), ``"svd"`` (:class:`SVDConv2d`),
            ``"winograd"`` (:class:`WinogradConv2d`) or ``"dct"`` (:class:`DCTConv2d`): the layers
            :mod:`freqnets.layers.registry` lists, plus any added by ``register_layer``.
        compress_rate: fraction of coefficients discarded in that domain, ``0 <= rate < 1``.
        min_kernel_size: convolutions whose largest kernel side is smaller are left alone
            (1x1 convolutions by default: there is no spectrum to band-limit).
        backend: passed to the new layers.

    Layers of ``domain`` already in the model (a second call) are not converted again:
    their rate is set to ``compress_rate`` (re-rated; an SVD layer cannot grow a rank it
    discarded and a rate frozen by :func:`calibrate_rates` stays: their rows say so).
    Layers of another domain are left as they are.

    Returns:
        The converted model (changed in place; a bare convolution is returned as its
        replacement). ``model.freqnets_conversion`` holds a :class:`ConversionSummary`;
        ``print()`` it for a table of what changed and why the rest did not.

    Raises:
        TypeError: ``domain`` is not a name (``convert_model(model, 0.5)``: the rate is the
            ``compress_rate`` keyword).
        ValueError: unknown domain, or a rate outside ``[0, 1)``.
    """
    if not isinstance(domain, str):
        raise TypeError(
            f"domain must be a domain name such as 'fft', got {domain!r}; the rate is the compress_rate "
            f"keyword: convert_model(model, 'fft', compress_rate={domain!r})"
        )
    layer = layer_for(domain)
    rate = check_rate(compress_rate)
    min_kernel_size = check_positive_int(min_kernel_size, "min_kernel_size")
    summary = ConversionSummary(domain, rate, backend)

    domain_layers = domain_layer_types()

    def convert(name: str, module: nn.Module) -> nn.Module | None:
        kernel = tuple(module.kernel_size)
        row = ConversionRow(name, type(module).__name__, kernel, False, "")
        summary.rows.append(row)
        if isinstance(module, domain_layers):
            if not isinstance(module, layer.layer_types):
                row.note = "already a layer of another domain; convert the original convolution to change domain"
                return None
            old = module.compress_rate
            try:
                module.compress_rate = rate
            except (RuntimeError, ValueError) as reason:
                row.note = f"not re-rated: {reason}"
                return None
            row.rerated, row.note = True, f"re-rated: compress_rate {old} -> {module.compress_rate}"
            return None
        if max(kernel) < min_kernel_size:
            row.note = f"kernel smaller than min_kernel_size={min_kernel_size}"
            return None
        try:
            new = layer.converter(module, rate, backend)
        except Unconvertible as reason:
            row.note = str(reason)
            return None
        resolved = getattr(new, "resolved_backend", backend)
        row.converted, row.note = True, f"-> {type(new).__name__} (backend={resolved})"
        return new

    if isinstance(model, (*_CONVOLUTIONS, *domain_layers)):
        replaced = convert("", model)
        result = model if replaced is None else replaced
    else:
        for name, module in list(model.named_modules()):
            if not isinstance(module, (*_CONVOLUTIONS, *domain_layers)):
                continue
            replaced = convert(name, module)
            if replaced is not None:
                parent_name, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent_name) if parent_name else model, child, replaced)
        result = model
    result.freqnets_conversion = summary
    return result
