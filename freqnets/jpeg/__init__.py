"""JPEG in the DCT domain: read the DCT coefficients of JPEG files directly (no inverse DCT, no
colour conversion), encode other images the same way, augment in the DCT domain, and batch the
Y and CbCr planes at their own resolutions for DCT-input networks.

The result type of every reader is :class:`JpegCoefficients` (layout in :mod:`.coefficients`).
"""

from . import augment
from .chroma import convert_chroma
from .coefficients import JpegCoefficients, JpegError, JpegTooLargeError, JpegTruncatedError, JpegUnsupportedError
from .collate import DCTBatch, DCTCollate
from .colour import cmyk_to_ycbcr
from .datasets import EncodedImageDataset, JpegFolderDataset
from .encode import decode_dct, decode_planes, encode_dct, quant_tables_for_quality
from .read_collate import DCTReadCollate
from .reader import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, available_backends, read_dct

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DCTBatch",
    "DCTCollate",
    "DCTReadCollate",
    "EncodedImageDataset",
    "JpegCoefficients",
    "JpegError",
    "JpegFolderDataset",
    "JpegTooLargeError",
    "JpegTruncatedError",
    "JpegUnsupportedError",
    "augment",
    "available_backends",
    "cmyk_to_ycbcr",
    "convert_chroma",
    "decode_dct",
    "decode_planes",
    "encode_dct",
    "quant_tables_for_quality",
    "read_dct",
]
