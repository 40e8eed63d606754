"""Transforms over the last two dims ``(..., H, W)`` in four domains, one interface.

>>> import torch
>>> from freqnets.transforms import get_domain, available_domains
>>> available_domains()
['dct', 'fft', 'svd', 'winograd']
>>> x = torch.rand(8, 3, 32, 32)
>>> for name in available_domains():
...     y = get_domain(name).compress(x, rate=0.5)
...     assert y.shape == x.shape and y.dtype == x.dtype

Pure PyTorch: differentiable, CPU and CUDA, float16 to float64 (half types are
computed in float32 and cast back). See each module for layouts and kept sets.
"""

from ._conv_args import conv2d_padding, int_pair
from ._frequency_order import kept_count
from .base import NonFiniteInputError, TransformDomain, available_domains, get_domain, register_domain
from .color import rgb_to_ycbcr, ycbcr_to_rgb
from .dct import (
    DCTDomain,
    block_dct2,
    block_idct2,
    blocks_to_channels,
    channels_to_blocks,
    dct,
    dct2,
    idct,
    idct2,
    zigzag_indices,
)
from .fft import FFTDomain, fft_compress, fft_rate_for_energy, rfft_energy_weights, rfft_kept_mask, rfft_shape
from .svd import SVDCoefficients, SVDDomain, rank_for_energy, rank_for_rate, svd_truncate
from .winograd import (
    WinogradDomain,
    winograd_conv2d,
    winograd_conv2d_transformed,
    winograd_filter_mask,
    winograd_filter_transform,
    winograd_matrices,
    winograd_points,
)

__all__ = [
    "DCTDomain",
    "FFTDomain",
    "NonFiniteInputError",
    "SVDCoefficients",
    "SVDDomain",
    "TransformDomain",
    "WinogradDomain",
    "available_domains",
    "block_dct2",
    "block_idct2",
    "blocks_to_channels",
    "channels_to_blocks",
    "conv2d_padding",
    "dct",
    "dct2",
    "fft_compress",
    "fft_rate_for_energy",
    "get_domain",
    "idct",
    "idct2",
    "int_pair",
    "kept_count",
    "rank_for_energy",
    "rank_for_rate",
    "register_domain",
    "rfft_energy_weights",
    "rfft_kept_mask",
    "rfft_shape",
    "rgb_to_ycbcr",
    "svd_truncate",
    "winograd_conv2d",
    "winograd_conv2d_transformed",
    "winograd_filter_mask",
    "winograd_filter_transform",
    "winograd_matrices",
    "winograd_points",
    "ycbcr_to_rgb",
    "zigzag_indices",
]
