"""Encode any image into JPEG's DCT domain, and decode coefficients back to pixels.

:func:`encode_dct` turns a tensor or PIL image that is not a JPEG file into the same
:class:`~freqnets.jpeg.JpegCoefficients` a JPEG reader returns, following the baseline
JPEG encoder step by step:

1. RGB -> JFIF YCbCr (:func:`freqnets.transforms.rgb_to_ycbcr`), samples rounded to 8 bits;
2. chroma subsampling by averaging 2x2 (4:2:0) or 2x1 (4:2:2) pixels, rounded to 8 bits
   (odd sizes are padded by edge replication first, as libjpeg does);
3. the blockwise orthonormal 2D DCT of the level-shifted samples, ``block_dct2(x - 128)``;
4. quantisation with the IJG tables (JPEG Annex K) scaled for ``quality`` exactly as
   libjpeg's ``jpeg_quality_scaling`` and ``jpeg_add_quant_table`` (baseline: steps clamped to
   1..255), rounding half away from zero as libjpeg does; then dequantisation (x step).

Block sizes other than 8 (4 and 16, for ablations; JPEG files are always 8): the step of
frequency ``(v, u)`` of a ``b x b`` block is the 8x8 table sampled bilinearly at
``(8 v / b, 8 u / b)`` (clamped to the table), i.e. at the same spatial frequency in cycles
per pixel, rounded to an integer >= 1. The orthonormal DCT keeps the per-pixel noise of a
step ``q`` at ``q^2 / 12`` whatever ``b``, so equal steps mean equal noise per frequency.

:func:`encode_planes` is steps 3-4 alone (YCbCr planes in, coefficients out), and
:func:`decode_planes` its inverse (``block_idct2 + 128``): together they are the pixel-domain
reference of the DCT-domain augmentations.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..transforms import block_dct2, block_idct2, blocks_to_channels, channels_to_blocks, rgb_to_ycbcr, ycbcr_to_rgb
from .coefficients import JpegCoefficients
from .colour import cmyk_to_ycbcr

# IJG standard tables (JPEG Annex K.1 and K.2), natural row-major order.
STD_LUMINANCE_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
STD_CHROMINANCE_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4

BLOCK_SIZES = (4, 8, 16)
# (h, v) sampling factors of (Y, Cb, Cr) for each chroma subsampling encode_dct writes.
SAMPLING_FACTORS = {
    "4:4:4": ((1, 1), (1, 1), (1, 1)),
    "4:2:2": ((2, 1), (1, 1), (1, 1)),
    "4:2:0": ((2, 2), (1, 1), (1, 1)),
}


def quality_scaling(quality: int) -> int:
    """libjpeg's ``jpeg_quality_scaling``: quality 1..100 -> percentage scale of the standard tables.

    Raises:
        ValueError: ``quality`` is not an integer in ``[1, 100]``.
    """
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in [1, 100], got {quality!r}")
    return 5000 // int(quality) if quality < 50 else 200 - 2 * int(quality)


def _check_block_size(block_size: int) -> int:
    if isinstance(block_size, bool) or block_size not in BLOCK_SIZES:
        raise ValueError(f"block_size must be one of {BLOCK_SIZES}, got {block_size!r}")
    return int(block_size)


def _resize_table(table: np.ndarray, block_size: int) -> np.ndarray:
    """The 8x8 step table sampled bilinearly at the same spatial frequency for ``b x b`` blocks."""
    if block_size == 8:
        return table
    pos = np.minimum(np.arange(block_size) * 8.0 / block_size, 7.0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, 7)
    frac = pos - lo
    rows = table[lo] * (1 - frac)[:, None] + table[hi] * frac[:, None]
    out = rows[:, lo] * (1 - frac)[None, :] + rows[:, hi] * frac[None, :]
    return np.maximum(np.floor(out + 0.5), 1.0)


@lru_cache(maxsize=64)
def _quant_tables(quality: int, block_size: int) -> torch.Tensor:
    scale = quality_scaling(quality)
    tables = []
    for base in (STD_LUMINANCE_TABLE, STD_CHROMINANCE_TABLE):
        steps = (np.asarray(base, dtype=np.int64) * scale + 50) // 100  # jpeg_add_quant_table
        steps = np.clip(steps, 1, 255).astype(np.float64)  # force_baseline
        tables.append(_resize_table(steps, block_size).reshape(-1))
    return torch.from_numpy(np.stack(tables)).to(torch.int32)


def quant_tables_for_quality(quality: int = 75, block_size: int = 8) -> torch.Tensor:
    """IJG quantisation tables for ``quality``: ``(2, b*b)`` int32 (luma, chroma), natural order.

    Equal to libjpeg's (and Pillow's) tables for ``block_size=8``; for 4 and 16, resized as
    the module docstring says.
    """
    quality_scaling(quality)  # validates
    return _quant_tables(int(quality), _check_block_size(block_size)).clone()


def quantize(coeffs: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Quantised integers (as floats) of channel coefficients ``(b*b, by, bx)``, rounding half away from 0.

    Exact ties (e.g. a DC of 8 x an integer mean + 0.5 steps) are common with 8-bit samples; the 1e-9
    absorbs the float64 DCT's error so that they round away from zero like libjpeg's integer arithmetic.
    """
    q = steps.to(coeffs.dtype).view(-1, 1, 1)
    scaled = coeffs / q
    return torch.sign(scaled) * torch.floor(scaled.abs() + (0.5 + 1e-9))


def plane_sizes(size: tuple[int, int], sampling_factors: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Pixel size ``(h, w)`` of each component's plane: ``ceil(H * v_i / v_max), ceil(W * h_i / h_max)``."""
    h_max = max(f[0] for f in sampling_factors)
    v_max = max(f[1] for f in sampling_factors)
    return [(-(-size[0] * v // v_max), -(-size[1] * h // h_max)) for h, v in sampling_factors]


def encode_planes(
    planes: Sequence[torch.Tensor],
    quant_tables: torch.Tensor,
    *,
    size: tuple[int, int],
    subsampling: str,
    sampling_factors: Sequence[tuple[int, int]],
    block_size: int = 8,
    quantize_coefficients: bool = True,
) -> JpegCoefficients:
    """Blockwise DCT (and quantisation) of YCbCr sample planes at their own resolutions.

    Args:
        planes: ``(h_i, w_i)`` float tensors of samples in ``[0, 255]`` (not level-shifted), one per
            component (``Y`` or ``Y, Cb, Cr``); sizes that are not block multiples are padded by edge
            replication.
        quant_tables: ``(n_tables, b*b)`` steps in natural order; component ``i`` uses row
            ``min(i, n_tables - 1)``.
        size: image size ``(H, W)`` in pixels; subsampling, sampling_factors: recorded in the result.
        block_size: ``b``.
        quantize_coefficients: ``False`` keeps the exact DCT (the result's ``quant_tables`` are still
            ``quant_tables``): the reference of the augmentations before requantisation.

    Returns:
        :class:`JpegCoefficients` with float32 ``(b*b, ceil(h_i/b), ceil(w_i/b))`` planes, natural order.
    """
    b = _check_block_size(block_size)
    tables = torch.as_tensor(quant_tables).to(torch.int32).reshape(-1, b * b)
    channels = []
    for i, plane in enumerate(planes):
        coeffs = blocks_to_channels(block_dct2(plane.to(torch.float64) - 128.0, b))
        if quantize_coefficients:
            steps = tables[min(i, tables.shape[0] - 1)]
            coeffs = quantize(coeffs, steps) * steps.to(torch.float64).view(-1, 1, 1)
        channels.append(coeffs.to(torch.float32).contiguous())
    rows = torch.stack([tables[min(i, tables.shape[0] - 1)] for i in range(len(planes))])
    cb, cr = (channels[1], channels[2]) if len(channels) == 3 else (None, None)
    return JpegCoefficients(
        y=channels[0], cb=cb, cr=cr, quant_tables=rows, size=(int(size[0]), int(size[1])),
        subsampling=subsampling, sampling_factors=tuple(tuple(f) for f in sampling_factors),
        order="natural", block_size=b, backend="encode_dct",
    )  # fmt: skip


def decode_planes(coeffs: JpegCoefficients, crop: bool = True) -> list[torch.Tensor]:
    """Inverse DCT of every plane, ``block_idct2 + 128``: float64 samples ``(h_i, w_i)`` (no clamping).

    Args:
        coeffs: coefficients in either order.
        crop: crop each plane to its component's pixel size (:func:`plane_sizes`); ``False`` keeps the
            full block grid.
    """
    natural = coeffs.to_order("natural")
    sizes = plane_sizes(coeffs.size, coeffs.sampling_factors)
    out = []
    for plane, plane_size in zip(natural.planes(), sizes, strict=False):
        pixels = block_idct2(channels_to_blocks(plane.to(torch.float64))) + 128.0
        out.append(pixels[: plane_size[0], : plane_size[1]] if crop else pixels)
    return out


def decode_dct(coeffs: JpegCoefficients) -> torch.Tensor:
    """Pixels of coefficients: ``(3, H, W)`` RGB (``(1, H, W)`` for greyscale) float32 in ``[0, 1]``.

    Chroma is upsampled by pixel replication; values are clamped to ``[0, 1]`` (8-bit rounding is not applied).
    CMYK/YCCK coefficients are first converted with :func:`~freqnets.jpeg.cmyk_to_ycbcr` (black per block).
    """
    coeffs = cmyk_to_ycbcr(coeffs)
    planes = decode_planes(coeffs)
    h, w = coeffs.size
    if len(planes) == 1:
        return (planes[0][None, :h, :w] / 255.0).clamp(0, 1).float()
    h_max = max(f[0] for f in coeffs.sampling_factors)
    v_max = max(f[1] for f in coeffs.sampling_factors)
    full = []
    for plane, (fh, fv) in zip(planes, coeffs.sampling_factors, strict=True):
        up = plane.repeat_interleave(v_max // fv, 0).repeat_interleave(h_max // fh, 1)
        full.append(up[:h, :w])
    return (ycbcr_to_rgb(torch.stack(full), max_value=255.0) / 255.0).clamp(0, 1).float()


def _as_uint8_range(image) -> torch.Tensor:
    """Tensor or PIL image -> float64 ``(C, H, W)`` samples in ``[0, 255]`` with C in (1, 3)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - torchvision depends on Pillow
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB"):
            image = image.convert("L" if image.mode in ("1", "I;16", "I", "F", "LA") else "RGB")
        array = np.asarray(image, dtype=np.uint8)
        x = torch.from_numpy(array.copy())
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        return x.to(torch.float64)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor or a PIL image, got {type(image).__name__}")
    x = image[None] if image.ndim == 2 else image
    if x.ndim != 3 or x.shape[0] not in (1, 3) or x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"image must have shape (3, H, W), (1, H, W) or (H, W), got {tuple(image.shape)}")
    if x.dtype == torch.uint8:
        return x.to(torch.float64)
    if not x.is_floating_point():
        raise TypeError(f"image must be uint8 or floating point in [0, 1], got dtype {x.dtype}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all() or x.min() < -1e-6 or x.max() > 1 + 1e-6:
        raise ValueError("a floating-point image must hold finite values in [0, 1] (unnormalised)")
    return x.clamp(0, 1) * 255.0


def _round8(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit samples, ties up; the 1e-7 absorbs float error of exact ties (x.5 in exact arithmetic)."""
    return torch.floor(x + (0.5 + 1e-7)).clamp(0, 255)


def encode_dct(image, quality: int = 75, subsampling: str = "4:2:0", block_size: int = 8) -> JpegCoefficients:
    """JPEG DCT coefficients of an image that is not a JPEG file (see the module docstring).

    Args:
        image: ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)`` tensor, uint8 or float in ``[0, 1]``, or a
            PIL image (mode ``L`` -> greyscale, anything else -> RGB).
        quality: IJG quality 1..100.
        subsampling: ``"4:2:0"``, ``"4:2:2"`` or ``"4:4:4"`` (ignored for greyscale images).
        block_size: 4, 8 (JPEG) or 16.

    Returns:
        :class:`JpegCoefficients` (natural order, dequantised float32, ``backend="encode_dct"``):
        ``y (b*b, ceil(H/b), ceil(W/b))``, ``cb``/``cr`` at the subsampled size, ``None`` for greyscale.

    Example:
        >>> c = encode_dct(torch.rand(3, 32, 32))
        >>> c.y.shape, c.cb.shape, c.subsampling
        (torch.Size([64, 4, 4]), torch.Size([64, 2, 2]), '4:2:0')
    """
    b = _check_block_size(block_size)
    if subsampling not in SAMPLING_FACTORS:
        raise ValueError(f"subsampling must be one of {sorted(SAMPLING_FACTORS)}, got {subsampling!r}")
    tables = quant_tables_for_quality(quality, b)
    x = _as_uint8_range(image)
    size = (x.shape[1], x.shape[2])
    if x.shape[0] == 1:
        return encode_planes([_round8(x[0])], tables[:1], size=size, subsampling="gray",
                             sampling_factors=((1, 1),), block_size=b)  # fmt: skip
    ycc = _round8(rgb_to_ycbcr(x, max_value=255.0))
    factors = SAMPLING_FACTORS[subsampling]
    fy, fx = factors[0][1], factors[0][0]
    chroma = ycc[1:]
    if (fy, fx) != (1, 1):
        pad_h, pad_w = (-size[0]) % fy, (-size[1]) % fx
        if pad_h or pad_w:
            chroma = F.pad(chroma[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
        chroma = _round8(F.avg_pool2d(chroma[None], (fy, fx))[0])
    planes = [ycc[0], chroma[0], chroma[1]]
    return encode_planes(planes, tables, size=size, subsampling=subsampling, sampling_factors=factors, block_size=b)
