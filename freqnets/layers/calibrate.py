"""Energy-calibrated compress rates: measure once on real data, then freeze."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_fraction
from ..transforms import NonFiniteInputError, get_domain
from .band_limited_conv import BandLimitedConv1d, BandLimitedConv2d, conv_geometry
from .spectral_plan import make_plan


@dataclass
class CalibrationRow:
    name: str
    input_shape: tuple[int, ...]
    fft_size: tuple[int, int]
    compress_rate: float
    kept_fraction: float


@dataclass
class CalibrationReport:
    energy: float
    rows: list[CalibrationRow] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"calibrate_rates: rates that keep {self.energy:.0%} of each layer's input spectral energy (frozen)",
            "",
            "| layer | input shape | FFT size | compress_rate | kept fraction |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.name} | {'x'.join(map(str, r.input_shape))} | {r.fft_size[0]}x{r.fft_size[1]} | "
            f"{r.compress_rate:.3f} | {r.kept_fraction:.3f} |"
            for r in self.rows
        ]
        return "\n".join(lines)


def _input_on_fft_grid(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The layer's (padded) input placed on its FFT grid, ``(B, C, N_h, N_w)``."""
    if isinstance(layer, BandLimitedConv1d):
        x, (left, right) = layer._padded(x)
        x, (top, bottom) = x.unsqueeze(-2), (0, 0)
        kernel, stride, dilation = (1, *layer.kernel_size), (1, *layer.stride), (1, *layer.dilation)
    else:
        x, (left, right, top, bottom) = layer._padded(x)
        kernel, stride, dilation = layer.kernel_size, layer.stride, layer.dilation
    geometry = conv_geometry(tuple(x.shape[-2:]), kernel, stride, dilation, (top, bottom, left, right))
    n_h, n_w = make_plan(geometry.padded_size, 0.0).fft_size
    h, w = x.shape[-2:]
    return F.pad(x, (left, n_w - w - left, top, n_h - h - top)), (n_h, n_w)


@torch.no_grad()
def calibrate_rates(model: nn.Module, batch: torch.Tensor, energy: float = 0.9) -> CalibrationReport:
    """Set, per band-limited layer, the rate that keeps ``energy`` of its input's spectral energy.

    The model runs once on ``batch`` with every band-limited layer at rate 0, so
    each layer is measured on the spectrum the uncompressed network gives it. Each
    layer's rate is then fixed (``rate_frozen = True``; later changes to
    ``compress_rate`` raise) because rates that move during training hurt SGD
    (Dziedzic et al., 2019).

    Returns:
        A :class:`CalibrationReport`; ``print()`` it for the per-layer table.

    Raises:
        NonFiniteInputError: a layer's input holds NaN or infinite values (a ``ValueError``
            naming the layer); every rate and frozen flag is left as it was.
    """
    energy = check_fraction(energy, "energy")
    layers = {name: m for name, m in model.named_modules() if isinstance(m, (BandLimitedConv1d, BandLimitedConv2d))}
    if not layers:
        raise ValueError("the model has no band-limited layers; run freqnets.convert_model first")
    fft_domain = get_domain("fft")
    measured: dict[str, tuple] = {}

    def hook(name: str):
        def record(layer, args):
            grid, fft_size = _input_on_fft_grid(layer, layer._batched(args[0]))
            try:
                rate = fft_domain.rate_for_energy(grid.float(), energy)
            except NonFiniteInputError as error:
                raise NonFiniteInputError(
                    f"calibrate_rates: the input of layer {name!r} is not finite ({error}); no rate was changed"
                ) from error
            measured[name] = (tuple(args[0].shape), fft_size, rate)

        return record

    saved = {name: (layer.compress_rate, layer.rate_frozen) for name, layer in layers.items()}

    def restore(name: str, layer: nn.Module) -> None:
        layer.rate_frozen = False
        layer.compress_rate = saved[name][0]
        layer.rate_frozen = saved[name][1]

    handles = [layer.register_forward_pre_hook(hook(name)) for name, layer in layers.items()]
    was_training = model.training
    try:
        for layer in layers.values():
            layer.rate_frozen = False
            layer.compress_rate = 0.0
        model.eval()
        model(batch)
    except BaseException:
        for name, layer in layers.items():
            restore(name, layer)
        raise
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    report = CalibrationReport(energy)
    for name, layer in layers.items():
        if name not in measured:  # not reached by this batch: leave it as it was
            restore(name, layer)
            continue
        shape, fft_size, rate = measured[name]
        layer.compress_rate = rate
        layer.rate_frozen = True
        kept = make_plan(fft_size, rate).kept_fraction
        report.rows.append(CalibrationRow(name, shape, fft_size, rate, kept))
    return report
