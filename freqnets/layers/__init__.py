"""``nn.Module`` layers that compute in a transform domain.

* :class:`BandLimitedConv1d`, :class:`BandLimitedConv2d`: drop-in FFT convolutions
  that discard the high-frequency spectrum of input and filter.

Planned (see the project's issues): SVD-separable, Winograd and DCT-compressed
convolutions, octave and multigrid convolutions, perturbation channels.
"""

from .band_limited_conv import BandLimitedConv1d, BandLimitedConv2d, _from_conv, band_limited_conv2d
from .calibrate import CalibrationReport, calibrate_rates
from .convert import ConversionSummary, convert_model
from .registry import domains_with_layers, register_layer

register_layer("fft", _from_conv, "band-limited FFT convolution (BandLimitedConv1d/2d)")

__all__ = [
    "BandLimitedConv1d",
    "BandLimitedConv2d",
    "CalibrationReport",
    "ConversionSummary",
    "band_limited_conv2d",
    "calibrate_rates",
    "convert_model",
    "domains_with_layers",
    "register_layer",
]
