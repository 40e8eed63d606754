"""``nn.Module`` layers that compute in a transform domain, and the tools to put them in networks.

* :class:`BandLimitedConv1d`, :class:`BandLimitedConv2d` (domain ``"fft"``): FFT convolutions
  that discard the high-frequency spectrum of input and filter.
* :class:`SVDConv2d` (``"svd"``): a KxK convolution as rank pairs of Kx1 and 1xK convolutions.
* :class:`WinogradConv2d` (``"winograd"``): tiled Winograd convolution with Winograd-domain pruning.
* :class:`DCTConv2d` (``"dct"``): input and filter band-limited in the 2D DCT domain.
* Each is a drop-in ``nn.Conv2d``: a ``weight`` of its shape (SVD: the filters its factors make)
  and a function form with ``F.conv2d``'s arguments: :func:`band_limited_conv2d`,
  :func:`svd_conv2d`, :func:`winograd_conv2d`, :func:`dct_conv2d`.
* :class:`OctConv2d` (octave convolution, high/low paths), :class:`MultigridConv2d` and
  :class:`MultigridBasicBlock` (pyramids of grids), :class:`YCbCrExchangeBlock` (luma and 4:2:0 chroma
  paths exchanging information).
* Each layer's ``compress_rate`` and ``rate_frozen`` are in its ``state_dict``
  (:mod:`.rates`); :func:`get_compress_rates` and :func:`set_compress_rates` read and set a model's.
* :func:`convert_model` puts any of them into a network (:mod:`.registry` lists the layer of
  each domain); :func:`calibrate_rates` picks
  band-limited rates from spectral energy.
* Perturbation channels (:mod:`.perturbation`): FFT, SVD, colour-depth, JPEG compression and
  Gaussian/uniform/Laplace noise as layers, with distortion, calibration and :class:`Vote`.
"""

from .band_limited_conv import BandLimitedConv1d, BandLimitedConv2d, band_limited_conv2d
from .calibrate import CalibrationReport, calibrate_rates
from .convert import ConversionSummary, convert_model
from .dct_conv import DCTConv2d, dct_conv2d
from .multigrid_conv import MultigridBasicBlock, MultigridConv2d
from .octave_conv import OctaveMap, OctaveTensors, OctConv2d
from .perturbation import (
    CHANNELS,
    ColorDepthChannel,
    FFTChannel,
    GaussianNoiseChannel,
    JPEGChannel,
    LaplaceNoiseChannel,
    PerturbationChannel,
    SVDChannel,
    UniformNoiseChannel,
    Vote,
    jpeg_quant_tables,
    make_channel,
)
from .rates import RateMismatchWarning, get_compress_rates, set_compress_rates
from .registry import domains_with_layers, register_layer
from .svd_conv import SVDConv2d, svd_conv2d
from .winograd_conv import WinogradConv2d, winograd_conv2d
from .ycbcr_exchange import YCbCrExchangeBlock, as_ycbcr_pair

__all__ = [
    "CHANNELS",
    "BandLimitedConv1d",
    "BandLimitedConv2d",
    "CalibrationReport",
    "ColorDepthChannel",
    "ConversionSummary",
    "DCTConv2d",
    "FFTChannel",
    "GaussianNoiseChannel",
    "JPEGChannel",
    "LaplaceNoiseChannel",
    "MultigridBasicBlock",
    "MultigridConv2d",
    "OctConv2d",
    "OctaveMap",
    "OctaveTensors",
    "PerturbationChannel",
    "RateMismatchWarning",
    "SVDChannel",
    "SVDConv2d",
    "UniformNoiseChannel",
    "Vote",
    "WinogradConv2d",
    "YCbCrExchangeBlock",
    "as_ycbcr_pair",
    "band_limited_conv2d",
    "calibrate_rates",
    "convert_model",
    "dct_conv2d",
    "domains_with_layers",
    "get_compress_rates",
    "jpeg_quant_tables",
    "make_channel",
    "register_layer",
    "set_compress_rates",
    "svd_conv2d",
    "winograd_conv2d",
]
