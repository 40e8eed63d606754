"""``nn.Module`` layers that compute in a transform domain.

* :class:`BandLimitedConv1d`, :class:`BandLimitedConv2d`: drop-in FFT convolutions
  that discard the high-frequency spectrum of input and filter.

Planned (see the project's issues): SVD-separable, Winograd and DCT-compressed
convolutions, octave and multigrid convolutions, perturbation channels.
"""

from .band_limited_conv import BandLimitedConv1d, BandLimitedConv2d, band_limited_conv2d

__all__ = ["BandLimitedConv1d", "BandLimitedConv2d", "band_limited_conv2d"]
