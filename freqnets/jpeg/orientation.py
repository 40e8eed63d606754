"""EXIF orientation applied exactly in the DCT domain: block and coefficient transposes, mirrors and sign flips.

An orientation 1..8 (EXIF tag 0x0112) says how to turn the stored image for display; Pillow's
``ImageOps.exif_transpose`` applies: 2 mirror left-right, 3 rotate 180, 4 mirror top-bottom, 5 transpose,
6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise. Each is a transpose (or not) followed
by mirrors, and each is exact on 8x8 DCT blocks:

* **transpose**: the block grid is transposed and so is every block, coefficient ``(v, u)`` -> ``(u, v)``;
  quantisation tables, sampling factors and size are transposed with it (4:2:2 becomes 4:4:0, and back;
  4:2:0 and 4:4:4 stay);
* **mirror left-right**: the block columns are reversed and coefficients of odd horizontal frequency ``u``
  change sign (``(-1)^u``); **top-bottom**: the rows, and ``(-1)^v``.

Every plane moves the same way (chroma and the K plane of CMYK too), so the result is the DCT of the
turned image wherever the image fills whole MCUs (the 8 x 8 ``h_max`` x ``v_max`` pixel units of the file).
**Partial edge MCUs**: a mirror moves the right (bottom) edge to the left (top); an image whose width
(height) is not a multiple of the MCU would then start with the encoder's padding. As ``jpegtran -trim``
does, the partial MCU column (row) on each axis a mirror turns is dropped before turning, so the result is
exactly the turned image of the kept part: its size is the stored size rounded down to whole MCUs on those
axes. Axes that are only transposed keep their partial edge (it stays at the right/bottom, past ``size``).

**Axes shorter than one MCU** on a mirror: the trim would leave nothing, and a block flip would misalign the
planes (8 luma pixels of 4:2:0 fill a luma block but half a chroma block). Such an axis keeps its size and
every plane is mirrored over its own pixels by an exact coefficient map (:mod:`.resample`: inverse DCT,
mirror, forward DCT in one matrix; the padding past the image repeats its edge): the turned image exactly,
planes aligned, but off the quantisation lattice (float32 rounding).

**Crops** (:func:`turned_window`): ``read_dct(crop=..., exif_orientation=True)`` returns the centre window of
the turned image, the same shape for every orientation.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch

from .chroma import subsampling_name
from .coefficients import JpegCoefficients
from .resample import apply_axis_maps, coefficient_map

if TYPE_CHECKING:
    from ._markers import Frame

__all__ = ["ORIENTATIONS", "apply_orientation", "keep_window", "transposes", "turned_window"]

Box = tuple[int, int]  # (first luma block, count) on one axis

# orientation -> (transpose, mirror left-right, mirror top-bottom), the mirrors taken after the transpose
ORIENTATIONS = {
    1: (False, False, False),
    2: (False, True, False),
    3: (False, True, True),
    4: (False, False, True),
    5: (True, False, False),
    6: (True, True, False),
    7: (True, True, True),
    8: (True, False, True),
}


def transposes(orientation: int) -> bool:
    """True when ``orientation`` swaps the image's axes (5..8)."""
    return ORIENTATIONS[orientation][0]


def _frequency_signs(order: str, horizontal: bool) -> torch.Tensor:
    """``(64, 1, 1)``: ``(-1)^u`` (``horizontal``) or ``(-1)^v`` per channel of ``order``."""
    from ..transforms import zigzag_indices

    natural = torch.arange(64) if order == "natural" else zigzag_indices(8)
    frequency = natural % 8 if horizontal else natural // 8
    return (1 - 2 * (frequency % 2)).view(-1, 1, 1)


def _transposed_channels(order: str) -> torch.Tensor:
    """Channel index of ``(u, v)`` for each channel ``(v, u)`` in ``order``."""
    from ..transforms import zigzag_indices

    natural = torch.arange(64) if order == "natural" else zigzag_indices(8)
    channel_of = {int(k): i for i, k in enumerate(natural)}
    return torch.tensor([channel_of[int(k % 8) * 8 + int(k // 8)] for k in natural])


def _mcu_axes(sampling_factors: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """``(v_max, h_max)``: the MCU's height and width in blocks."""
    return max(f[1] for f in sampling_factors), max(f[0] for f in sampling_factors)


def _kept_extent(pixels: int, mcu_pixels: int) -> int:
    """A mirrored axis of ``pixels`` after the trim: whole MCUs, or all of it when it is under one MCU."""
    return pixels if pixels < mcu_pixels else pixels // mcu_pixels * mcu_pixels


@lru_cache(maxsize=256)
def _mirror_map(extent: int, blocks: int) -> torch.Tensor:
    """``(8 blocks, 8 blocks)`` coefficient map (:mod:`.resample`) of one axis: pixel ``x < extent`` becomes
    pixel ``extent - 1 - x``; the padding past ``extent`` repeats the new last pixel (as encoders pad)."""
    pixels = np.zeros((8 * blocks, 8 * blocks))
    for x in range(8 * blocks):
        pixels[x, extent - 1 - min(x, extent - 1)] = 1.0
    return torch.from_numpy(coefficient_map(pixels, 8)).to(torch.float32)


def apply_orientation(coeffs: JpegCoefficients, orientation: int) -> JpegCoefficients:
    """``coeffs`` turned for display by EXIF ``orientation`` 1..8 (see the module docstring), in the DCT domain.

    Args:
        coeffs: 8x8-block coefficients in either order, any number of planes.
        orientation: the EXIF value; 1 returns ``coeffs`` unchanged.

    Returns:
        The turned coefficients: planes ``(64, rows, cols)`` (transposed grids for 5..8), ``size``,
        ``sampling_factors``, ``subsampling`` and ``quant_tables`` turned with them.

    Raises:
        ValueError: ``orientation`` not in 1..8, or a block size other than 8.
    """
    if isinstance(orientation, bool) or orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be an EXIF value 1..8, got {orientation!r}")
    if coeffs.block_size != 8:
        raise ValueError(f"EXIF orientation needs 8x8 blocks, got block_size={coeffs.block_size}")
    if orientation == 1:
        return coeffs
    transpose, mirror_x, mirror_y = ORIENTATIONS[orientation]
    v_max, h_max = _mcu_axes(coeffs.sampling_factors)
    mcu_h, mcu_w = 8 * v_max, 8 * h_max
    height, width = coeffs.size
    # the stored axes the mirrors turn (after a transpose, the output's x axis is the stored y axis)
    trim_x, trim_y = (mirror_y, mirror_x) if transpose else (mirror_x, mirror_y)
    if trim_y:
        height = _kept_extent(height, mcu_h)
    if trim_x:
        width = _kept_extent(width, mcu_w)
    # a mirrored axis under one MCU is kept whole and mirrored by a coefficient map (the planes' partial
    # blocks do not line up under a block flip); output axes (after the transpose)
    small_x = mirror_x and (height < mcu_h if transpose else width < mcu_w)
    small_y = mirror_y and (width < mcu_w if transpose else height < mcu_h)
    if (small_x or small_y) and coeffs.order != "natural":  # the maps act on natural-order channels
        return apply_orientation(coeffs.to_order("natural"), orientation).to_order(coeffs.order)
    out_height, out_width = (width, height) if transpose else (height, width)
    factors = tuple((v, h) for h, v in coeffs.sampling_factors) if transpose else coeffs.sampling_factors
    out_v_max, out_h_max = _mcu_axes(factors)
    planes = []
    swap = _transposed_channels(coeffs.order) if transpose else None
    sign_x = _frequency_signs(coeffs.order, horizontal=True) if mirror_x else None
    sign_y = _frequency_signs(coeffs.order, horizontal=False) if mirror_y else None
    for plane, (h, v), (out_h, out_v) in zip(coeffs.planes(), coeffs.sampling_factors, factors, strict=False):
        rows, cols = plane.shape[-2:]
        if trim_y:  # height is whole MCUs now (or under one MCU: kept)
            rows = min(rows, -(-height * v // (8 * v_max)))
        if trim_x:
            cols = min(cols, -(-width * h // (8 * h_max)))
        plane = plane[:, :rows, :cols]
        if transpose:
            plane = plane.index_select(0, swap.to(plane.device)).transpose(-1, -2)
        if small_x or small_y:  # each plane over its own pixels, so all planes stay aligned
            extent_x, extent_y = -(-out_width * out_h // out_h_max), -(-out_height * out_v // out_v_max)
            rows_map = _mirror_map(extent_y, plane.shape[-2]).to(plane.device) if small_y else None
            cols_map = _mirror_map(extent_x, plane.shape[-1]).to(plane.device) if small_x else None
            plane = apply_axis_maps(plane, rows_map, cols_map)
        if mirror_x and not small_x:
            plane = plane.flip(-1) * sign_x.to(plane.device, plane.dtype)
        if mirror_y and not small_y:
            plane = plane.flip(-2) * sign_y.to(plane.device, plane.dtype)
        planes.append(plane.contiguous())
    changes = {"size": (out_height, out_width)}
    if transpose:
        tables = coeffs.quant_tables.view(-1, 8, 8).transpose(-1, -2).reshape(coeffs.quant_tables.shape)
        changes.update(
            sampling_factors=factors, subsampling=subsampling_name(factors), quant_tables=tables.contiguous()
        )
    return coeffs.with_planes(planes, **changes)


def turned_window(frame: Frame, crop: tuple[int, int], orientation: int) -> tuple[Box, Box, tuple[int, int]]:
    """Where ``read_dct(crop=crop, exif_orientation=True)`` reads: the centre window of ``crop`` luma blocks of
    the *turned* image (offsets rounded down as :func:`~.chroma.centre_windows` rounds them), found in the
    stored image.

    On a mirrored axis the window's stored end is on a whole MCU (the turned image starts at the trimmed
    stored end); its start is not, in general, so the stored window read there is rounded up to whole MCUs
    (an exact turn) and the turned window cut to ``crop`` after turning. So the shape is ``crop``'s for
    every orientation (where the image is large enough).

    Returns:
        ``((top, rows), (left, cols), keep)``: the stored luma blocks to read (firsts on whole MCUs), and the
        turned window's ``(rows, cols)`` to keep (from the top left of the turned read).
    """
    transpose, mirror_x, mirror_y = ORIENTATIONS[orientation]
    mirrored = (mirror_x, mirror_y) if transpose else (mirror_y, mirror_x)  # stored (y, x) axes
    wanted = crop[::-1] if transpose else crop  # stored (rows, cols)
    boxes, keep = [], []
    for pixels, mcu, want, mirror in zip((frame.height, frame.width), (frame.v_max, frame.h_max), wanted, mirrored,
                                         strict=True):  # fmt: skip
        blocks = -(-_kept_extent(pixels, 8 * mcu) // 8) if mirror else -(-pixels // 8)
        step = math.lcm(2, mcu)
        offset = (blocks - want) // 2 // step * step if blocks > want else 0  # in the turned image
        count = min(want, blocks)
        if mirror:  # turned [offset, offset + count) is stored [end - count, end)
            end = blocks - offset
            read = min(-(-count // mcu) * mcu, end)
            boxes.append((end - read, read))
        else:
            boxes.append((offset, count))
        keep.append(count)
    return boxes[0], boxes[1], (keep[::-1] if transpose else (keep[0], keep[1]))


def keep_window(coeffs: JpegCoefficients, rows: int, cols: int) -> JpegCoefficients:
    """The top-left ``rows x cols`` luma blocks of ``coeffs`` and the blocks of the other planes that cover
    them (``ceil(rows * v / v_max)`` rows, columns alike), with ``size`` cut to them."""
    v_max, h_max = _mcu_axes(coeffs.sampling_factors)
    if coeffs.y.shape[-2:] == (rows, cols):
        return coeffs
    planes = [p[:, : -(-rows * v // v_max), : -(-cols * h // h_max)]
              for p, (h, v) in zip(coeffs.planes(), coeffs.sampling_factors, strict=False)]  # fmt: skip
    size = (min(coeffs.size[0], 8 * rows), min(coeffs.size[1], 8 * cols))
    return coeffs.with_planes([p.contiguous() for p in planes], size=size)
