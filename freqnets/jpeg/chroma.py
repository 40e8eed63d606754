"""Chroma layouts: how the Cb and Cr planes of a JPEG sit against its luma plane, in one place.

Terms used across :mod:`freqnets.jpeg`:

* **sampling factors**: the file's ``((h, v), ...)`` per component, as its SOF header stores them.
* **chroma factors** ``(fh, fv)``: how many luma blocks one chroma block spans per axis
  (horizontal, vertical), i.e. luma factor / chroma factor: ``(2, 2)`` for 4:2:0, ``(2, 1)`` for
  4:2:2, ``(1, 1)`` for 4:4:4, ``(1, 2)`` for 4:4:0, ``(4, 1)`` for 4:1:1.
* **target layouts**: the ones a batch for DCT-input networks takes, :data:`CHROMA_LAYOUTS`,
  spelled ``"420"``, ``"422"``, ``"444"`` (or ``"4:2:0"``, ...).

A luma grid of ``(rows, cols)`` blocks has a chroma grid of ``(ceil(rows / fv), ceil(cols / fh))``
blocks (:func:`chroma_grid`). Conversions between layouts are exact linear maps in the DCT domain
(:mod:`.resample`): averaging ``f`` pixels to downsample, replication to upsample. Windows cut from
a plane start on whole groups of both layouts' chroma blocks (:func:`centre_offsets`,
:func:`centre_windows`), so luma and chroma stay aligned.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

import torch

from ..transforms import zigzag_indices
from .coefficients import JpegCoefficients, JpegUnsupportedError
from .resample import resample_axis

if TYPE_CHECKING:
    from ._markers import Frame

# (horizontal, vertical) chroma factors of each target layout, relative to luma.
CHROMA_LAYOUTS = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}
# chroma factors (fh, fv) -> the subsampling name JpegCoefficients reports
_NAMES = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1"}

# per component: first block row, first block column, rows, columns of its block grid
Windows = list[tuple[int, int, int, int]]


def layout_factors(chroma: str) -> tuple[int, int]:
    """``(fh, fv)`` of the target layout ``chroma`` (``"420"``, ``"4:2:0"``, ...); ``ValueError`` otherwise."""
    key = chroma.replace(":", "") if isinstance(chroma, str) else chroma
    if key not in CHROMA_LAYOUTS:
        raise ValueError(f"chroma must be one of {sorted(CHROMA_LAYOUTS)} (or '4:2:0', ...), got {chroma!r}")
    return CHROMA_LAYOUTS[key]


def layout_key(factors: tuple[int, int]) -> str:
    """The :data:`CHROMA_LAYOUTS` key (``"420"``, ...) of the target layout with chroma factors ``factors``."""
    for key, value in CHROMA_LAYOUTS.items():
        if value == factors:
            return key
    raise ValueError(f"chroma factors {factors} are not a target layout ({sorted(CHROMA_LAYOUTS.values())})")


@lru_cache(maxsize=64)
def chroma_factors(sampling_factors: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """``(fh, fv)`` of a colour file's sampling factors; ``ValueError`` for layouts the maps do not cover
    (a factor other than 1, 2 or 4, Cb and Cr sampled differently)."""
    (hy, vy), (hc, vc) = sampling_factors[0], sampling_factors[1]
    factors = []
    for luma, chroma in ((hy, hc), (vy, vc)):
        if luma % chroma or luma // chroma not in (1, 2, 4):
            raise ValueError(f"unsupported sampling factors {sampling_factors}: chroma must be luma / 1, 2 or 4")
        factors.append(luma // chroma)
    if sampling_factors[2] != sampling_factors[1]:
        raise ValueError(f"unsupported sampling factors {sampling_factors}: Cb and Cr differ")
    return factors[0], factors[1]


def subsampling_name(sampling_factors: tuple[tuple[int, int], ...]) -> str:
    """``"gray"``, ``"4:4:4"``, ``"4:2:2"``, ``"4:2:0"``, ``"4:4:0"``, ``"4:1:1"`` or ``"other"``; of 4-component
    (CMYK/YCCK) files, how the second and third planes sit against the first (the fourth is not named)."""
    if len(sampling_factors) == 1:
        return "gray"
    (yh, yv), (bh, bv), (rh, rv) = sampling_factors[:3]
    if (bh, bv) != (rh, rv) or yh % bh or yv % bv:
        return "other"
    return _NAMES.get((yh // bh, yv // bv), "other")


def chroma_grid(rows: int, cols: int, factors: tuple[int, int]) -> tuple[int, int]:
    """Chroma blocks ``(rows, cols)`` of a luma grid of ``rows x cols`` blocks at chroma factors ``(fh, fv)``."""
    fh, fv = factors
    return -(-rows // fv), -(-cols // fh)


@lru_cache(maxsize=256)
def downsample_factors(
    sampling_factors: tuple[tuple[int, int], ...], target: tuple[int, int]
) -> tuple[int, int] | None:
    """Per-axis ``(dh, dv)`` in {1, 2} that takes chroma planes of ``sampling_factors`` to ``target``, or ``None``.

    ``None`` when the conversion needs anything else (upsampling, factor 4, Cb and Cr sampled
    differently): the caller then converts after reading (:func:`convert_chroma`).
    """
    if len(sampling_factors) != 3:
        return None
    try:
        source = chroma_factors(sampling_factors)
    except ValueError:
        return None
    ratios = [divmod(want, have) for want, have in zip(target, source, strict=True)]
    if any(rest or ratio not in (1, 2) for ratio, rest in ratios):
        return None
    return ratios[0][0], ratios[1][0]


def resample_chroma(plane: torch.Tensor, source: int, target: int, axis: int) -> torch.Tensor:
    """One axis of natural-order ``(..., b*b, by, bx)`` chroma from chroma factor ``source`` to ``target``."""
    if source == target:
        return plane
    if source < target:
        return resample_axis(plane, target // source, up=False, axis=axis)
    return resample_axis(plane, source // target, up=True, axis=axis)


def fit_grid(plane: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Cut or zero-pad ``(..., by, bx)`` at the bottom/right to ``(rows, cols)`` blocks."""
    by, bx = plane.shape[-2:]
    if (by, bx) == (rows, cols):
        return plane
    out = plane.new_zeros(*plane.shape[:-2], rows, cols)
    out[..., : min(by, rows), : min(bx, cols)] = plane[..., :rows, :cols]
    return out


def convert_chroma(coeffs: JpegCoefficients, chroma: str = "420") -> tuple[torch.Tensor, torch.Tensor]:
    """Cb and Cr planes of ``coeffs`` at the ``chroma`` layout of its luma grid, in the DCT domain.

    Args:
        coeffs: coefficients (either order; the result has the same order); greyscale gives zeros.
        chroma: target layout ``"420"``, ``"422"`` or ``"444"``.

    Returns:
        ``(cb, cr)``, each ``(b*b, ceil(by / fv), ceil(bx / fh))`` for luma ``(b*b, by, bx)``.
    """
    fh, fv = layout_factors(chroma)
    b2, by, bx = coeffs.y.shape
    shape = (b2, *chroma_grid(by, bx, (fh, fv)))
    if coeffs.cb is None:
        zeros = coeffs.y.new_zeros(shape)
        return zeros, zeros.clone()
    sh, sv = chroma_factors(coeffs.sampling_factors)
    if (sh, sv) == (fh, fv):
        return fit_grid(coeffs.cb, *shape[1:]), fit_grid(coeffs.cr, *shape[1:])
    natural = coeffs.to_order("natural")
    pair = torch.stack([natural.cb, natural.cr])
    pair = resample_chroma(resample_chroma(pair, sv, fv, axis=-2), sh, fh, axis=-1)
    pair = fit_grid(pair, *shape[1:])
    if coeffs.order != "natural":
        pair = pair[:, zigzag_indices(coeffs.block_size)]
    return pair[0], pair[1]


def with_layout(coeffs: JpegCoefficients, target: tuple[int, int], converted: bool) -> JpegCoefficients:
    """``coeffs`` with chroma planes in the ``target`` layout (chroma factors); ``converted``: the planes
    are in it already (the libjpeg reader averaged while writing), only the description changes.

    ``subsampling``/``sampling_factors`` then describe the returned planes, ``stored_subsampling`` the file's.
    """
    if len(coeffs.sampling_factors) != 3 or coeffs.sampling_factors[1] != coeffs.sampling_factors[2]:
        raise JpegUnsupportedError(
            f"cannot convert the chroma of a JPEG with sampling factors {coeffs.sampling_factors} (Cb and Cr differ)"
        )
    if converted:
        cb, cr = coeffs.cb, coeffs.cr
        by, bx = coeffs.y.shape[-2:]
        if cb.shape[-2:] != chroma_grid(by, bx, target):
            raise JpegUnsupportedError(f"converted chroma grid {tuple(cb.shape[-2:])} does not fit luma {(by, bx)}")
    else:
        try:
            cb, cr = convert_chroma(coeffs, layout_key(target))
        except ValueError as error:  # sampling factors the maps do not cover (e.g. chroma / 3)
            raise JpegUnsupportedError(f"cannot convert the chroma of this JPEG: {error}") from None
    return replace(
        coeffs, cb=cb, cr=cr, subsampling=_NAMES[target], sampling_factors=(target, (1, 1), (1, 1)),
        stored_subsampling=coeffs.subsampling,
    )  # fmt: skip


def centre_offsets(have: int, want: int, step: int) -> tuple[int, int, int]:
    """``(source start, destination start, length)`` of a centre crop/pad of ``have`` blocks to ``want`` on
    one axis, the starts multiples of ``step`` (a whole group of chroma blocks)."""
    if have >= want:
        return (have - want) // 2 // step * step, 0, want
    return 0, (want - have) // 2 // step * step, have


def centre_windows(frame: Frame, crop: tuple[int, int]) -> tuple[Windows, tuple[int, int]]:
    """Per component block windows of the centre ``crop`` (luma blocks) of a ``frame`` (a header's), and the
    window's size in pixels.

    Offsets are rounded down to whole MCUs and to even block counts (the 4:2:0 target's alignment of
    :class:`~freqnets.jpeg.DCTCollate`), so every component's window starts on a block of its own grid.
    """
    box = []
    axes = ((-(-frame.height // 8), crop[0], frame.v_max), (-(-frame.width // 8), crop[1], frame.h_max))
    for blocks, want, mcu in axes:
        step = math.lcm(2, mcu)
        box.append(((blocks - want) // 2 // step * step, want) if blocks > want else (0, blocks))
    return _block_windows(frame, *box)


def _block_windows(
    frame: Frame, vertical: tuple[int, int], horizontal: tuple[int, int]
) -> tuple[Windows, tuple[int, int]]:
    """Per component block windows of the luma blocks ``(first, count)`` per axis (firsts on whole MCUs),
    and the window's size in pixels."""
    (top, rows), (left, cols) = vertical, horizontal
    windows = []
    for c in frame.components:
        r0, c0 = top * c.v // frame.v_max, left * c.h // frame.h_max
        r1 = min(-(-(top + rows) * c.v // frame.v_max), c.height_in_blocks)
        c1 = min(-(-(left + cols) * c.h // frame.h_max), c.width_in_blocks)
        windows.append((r0, c0, r1 - r0, c1 - c0))
    return windows, (min(frame.height - 8 * top, 8 * rows), min(frame.width - 8 * left, 8 * cols))


def crop_windows(frame: Frame, crop: tuple[int, int]) -> tuple[Windows | None, tuple[int, int]]:
    """:func:`centre_windows`, with ``None`` when the windows are the whole planes (nothing to cut)."""
    return _or_whole(frame, *centre_windows(frame, crop))


def block_windows(
    frame: Frame, vertical: tuple[int, int], horizontal: tuple[int, int]
) -> tuple[Windows | None, tuple[int, int]]:
    """Per component block windows of the luma blocks ``(first, count)`` on each axis (the firsts on whole
    MCUs) of a ``frame``, ``None`` when they are the whole planes, and the window's size in pixels."""
    return _or_whole(frame, *_block_windows(frame, vertical, horizontal))


def _or_whole(frame: Frame, windows: Windows, size: tuple[int, int]) -> tuple[Windows | None, tuple[int, int]]:
    whole = [(0, 0, c.height_in_blocks, c.width_in_blocks) for c in frame.components]
    return (None if windows == whole else windows), size
