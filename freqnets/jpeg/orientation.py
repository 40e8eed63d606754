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
axes (an image narrower than one MCU on such an axis keeps its one MCU, padding included). Axes that are
only transposed keep their partial edge (it stays at the right/bottom, past ``size``).
"""

from __future__ import annotations

import torch

from .chroma import subsampling_name
from .coefficients import JpegCoefficients

__all__ = ["ORIENTATIONS", "apply_orientation", "transposes"]

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
    h_max = max(f[0] for f in coeffs.sampling_factors)
    v_max = max(f[1] for f in coeffs.sampling_factors)
    height, width = coeffs.size
    # the stored axes the mirrors turn (after a transpose, the output's x axis is the stored y axis)
    trim_x, trim_y = (mirror_y, mirror_x) if transpose else (mirror_x, mirror_y)
    mcu_h, mcu_w = 8 * v_max, 8 * h_max
    if trim_y:
        height = max(height // mcu_h, 1) * mcu_h if height % mcu_h else height
    if trim_x:
        width = max(width // mcu_w, 1) * mcu_w if width % mcu_w else width
    planes = []
    swap = _transposed_channels(coeffs.order) if transpose else None
    sign_x = _frequency_signs(coeffs.order, horizontal=True) if mirror_x else None
    sign_y = _frequency_signs(coeffs.order, horizontal=False) if mirror_y else None
    for plane, (h, v) in zip(coeffs.planes(), coeffs.sampling_factors, strict=False):
        rows, cols = plane.shape[-2:]
        if trim_y:  # height is whole MCUs now
            rows = min(rows, height // mcu_h * v)
        if trim_x:
            cols = min(cols, width // mcu_w * h)
        plane = plane[:, :rows, :cols]
        if transpose:
            plane = plane.index_select(0, swap.to(plane.device)).transpose(-1, -2)
        if mirror_x:
            plane = plane.flip(-1) * sign_x.to(plane.device, plane.dtype)
        if mirror_y:
            plane = plane.flip(-2) * sign_y.to(plane.device, plane.dtype)
        planes.append(plane.contiguous())
    changes = {"size": (height, width)}
    if transpose:
        factors = tuple((v, h) for h, v in coeffs.sampling_factors)
        tables = coeffs.quant_tables.view(-1, 8, 8).transpose(-1, -2).reshape(coeffs.quant_tables.shape)
        changes = {
            "size": (width, height),
            "sampling_factors": factors,
            "subsampling": subsampling_name(factors),
            "quant_tables": tables.contiguous(),
        }
    return coeffs.with_planes(planes, **changes)
