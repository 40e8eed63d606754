"""Read a JPEG file's DCT coefficients directly: no inverse DCT, no colour conversion, no re-encoding.

>>> from freqnets.jpeg import read_dct
>>> coefs = read_dct("photo.jpg")                       # doctest: +SKIP
>>> coefs.y.shape, coefs.cb.shape, coefs.subsampling     # doctest: +SKIP
(torch.Size([64, 47, 63]), torch.Size([64, 24, 32]), '4:2:0')
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from functools import lru_cache
from typing import BinaryIO

import numpy as np
import torch

from . import _backends
from ._backends import available_backends  # re-exported by freqnets.jpeg
from ._markers import DEFAULT_MAX_PIXELS, ZIGZAG_TO_NATURAL, HeaderCache, JpegHeader, parse_header
from .coefficients import JpegCoefficients, JpegTooLargeError, JpegTruncatedError, JpegUnsupportedError
from .collate import CHROMA_LAYOUTS, _chroma_layout, _factors_of, convert_chroma

__all__ = ["DEFAULT_MAX_PIXELS", "available_backends", "read_dct"]

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

# Headers of recent files for the backends that only read them (per process; exact, see HeaderCache).
_HEADERS = HeaderCache()


def _read_source(source: Source) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return handle.read()
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"source file object must be opened in binary mode, its read() gave {type(data).__name__}")
        return bytes(data)
    raise TypeError(f"source must be a path, bytes or a binary file object, got {type(source).__name__}")


def _centre_windows(header: JpegHeader, crop: tuple[int, int]) -> tuple[_backends.Windows, tuple[int, int]]:
    """Per component block windows of the centre ``crop`` (luma blocks), and the window's size in pixels.

    Offsets are rounded down to whole MCUs and to even block counts (DCTCollate's 4:2:0 alignment),
    so every component's window starts on a block of its own grid.
    """
    frame = header.frame
    box = []
    axes = ((-(-frame.height // 8), crop[0], frame.v_max), (-(-frame.width // 8), crop[1], frame.h_max))
    for blocks, want, mcu in axes:
        step = math.lcm(2, mcu)
        box.append(((blocks - want) // 2 // step * step, want) if blocks > want else (0, blocks))
    (top, rows), (left, cols) = box
    windows = []
    for c in frame.components:
        r0, c0 = top * c.v // frame.v_max, left * c.h // frame.h_max
        r1 = min(-(-(top + rows) * c.v // frame.v_max), c.height_in_blocks)
        c1 = min(-(-(left + cols) * c.h // frame.h_max), c.width_in_blocks)
        windows.append((r0, c0, r1 - r0, c1 - c0))
    return windows, (min(frame.height - 8 * top, 8 * rows), min(frame.width - 8 * left, 8 * cols))


def _crop_windows(header: JpegHeader, crop: tuple[int, int]) -> tuple[_backends.Windows | None, tuple[int, int]]:
    """:func:`_centre_windows`, with ``None`` when the windows are the whole planes (nothing to cut)."""
    windows, size = _centre_windows(header, crop)
    whole = [(0, 0, c.height_in_blocks, c.width_in_blocks) for c in header.frame.components]
    return (None if windows == whole else windows), size


def _check_args(strict: bool, max_pixels: int | None, order: str) -> None:
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive int or None (no limit), got {max_pixels!r}")
    if order not in ("natural", "zigzag"):
        raise ValueError(f"order must be 'natural' or 'zigzag', got {order!r}")


# target chroma factors (fh, fv) -> the layout's key in CHROMA_LAYOUTS, its name and its sampling factors
_TARGETS = {
    factors: (key, f"{key[0]}:{key[1]}:{key[2]}", (factors, (1, 1), (1, 1))) for key, factors in CHROMA_LAYOUTS.items()
}


def _chroma_target(chroma: str | None) -> tuple[int, int] | None:
    """``(fh, fv)`` chroma factors of the target layout ``chroma`` (``"420"``, ``"4:2:0"``, ...), or ``None``."""
    return None if chroma is None else _chroma_layout(chroma)


@lru_cache(maxsize=256)
def _downsample_factors(factors: tuple[tuple[int, int], ...], target: tuple[int, int]) -> tuple[int, int] | None:
    """Per-axis ``(dh, dv)`` in {1, 2} that takes chroma planes of sampling ``factors`` to ``target``, or ``None``.

    ``None`` when the conversion needs anything else (upsampling, factor 4, Cb and Cr sampled
    differently): the caller then converts after reading (:func:`~freqnets.jpeg.collate.convert_chroma`).
    """
    if len(factors) != 3:
        return None
    try:
        source = _factors_of(factors)  # (horizontal, vertical) chroma factors of the file
    except ValueError:
        return None
    ratios = [divmod(want, have) for want, have in zip(target, source, strict=True)]
    if any(rest or ratio not in (1, 2) for ratio, rest in ratios):
        return None
    return ratios[0][0], ratios[1][0]


def _plane(blocks: np.ndarray, table: np.ndarray, order: str) -> torch.Tensor:
    """``(by, bx, 64)`` int16 quantised -> ``(64, by, bx)`` float32 dequantised, in ``order``."""
    if order == "zigzag":
        blocks, table = blocks[..., ZIGZAG_TO_NATURAL], table[ZIGZAG_TO_NATURAL]
    # Float32 products of integers are correctly rounded, so every backend gets the same floats.
    values = blocks.transpose(2, 0, 1).astype(np.float32) * table.astype(np.float32)[:, None, None]
    return torch.from_numpy(np.ascontiguousarray(values))


def read_dct(
    source: Source,
    *,
    strict: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    backend: str = "auto",
    order: str = "natural",
    crop: tuple[int, int] | None = None,
    chroma: str | None = None,
) -> JpegCoefficients:
    """The dequantised DCT coefficients of a JPEG file, per plane at its own resolution.

    Args:
        source: a path, the file's bytes, or a binary file object (read to its end).
        strict: raise :class:`JpegTruncatedError` on truncated or corrupt entropy-coded data;
            with ``False``, return what was decoded (the rest of the damaged restart interval or
            scan is zero) and record the reasons in ``warnings`` (if libjpeg stops at the damage,
            the Python decoder finishes: ``backend`` is then ``"python"``, noted in ``warnings``).
        max_pixels: reject frames with more than this many pixels before allocating anything
            (:class:`JpegTooLargeError`); default Pillow's ``MAX_IMAGE_PIXELS``; ``None``: no limit.
        backend: ``"auto"`` (``"libjpeg"`` where built, else ``"python"``), ``"libjpeg"`` (compiled,
            libjpeg-turbo), ``"python"`` (pure Python reference) or ``"jpeg2dct"`` (non-commercial
            licence; 4:2:0 and greyscale files only; detects truncation but not corrupt data). A
            requested backend that is not available raises :class:`JpegUnsupportedError`; results
            are identical for every valid file (docs/jpeg.md).
        order: channel order of the 64 frequencies, ``"natural"`` (row-major ``(v, u)``) or ``"zigzag"``.
        crop: ``None`` (whole planes) or ``(Hy, Wy)``: return only the centre window of at most ``Hy x Wy``
            luma blocks, offsets rounded down to whole MCUs and even block counts (the window
            ``DCTCollate(grid=(Hy, Wy))`` keeps for a 4:2:0 target, so its batches are unchanged). The
            result is that window as an image of its own (``size`` is the window's); the libjpeg backend
            then lays out only the window and, for single-scan sequential files, stops entropy decoding
            after the window's last MCU row, so damage below the window is not detected (not even with
            ``strict=True``); progressive and multi-scan files are decoded completely.
        chroma: ``None`` (the chroma planes as the file stores them) or a target layout ``"420"``,
            ``"422"`` or ``"444"`` (also ``"4:2:0"``, ...): the chroma planes are converted to it in
            the DCT domain with the exact maps of :func:`~freqnets.jpeg.collate.convert_chroma` (2x2,
            2x1, ... pixel averages; replication to upsample), the values of
            ``DCTCollate(chroma=...)`` to float32 rounding. The libjpeg backend averages while it
            writes the planes (4:4:4, 4:2:2, 4:4:0 -> 4:2:0 and the like), so samples reach the
            collate in its layout; ``subsampling``/``sampling_factors`` then describe the returned
            planes and ``stored_subsampling`` the file's. Files already in the target layout and
            greyscale files are returned as stored (``stored_subsampling`` stays ``None``).

    Returns:
        :class:`JpegCoefficients`: ``y`` ``(64, ceil(H/8), ceil(W/8))`` float32, ``cb``/``cr`` at the
        chroma resolution (``None`` for greyscale), ``quant_tables`` ``(n_components, 64)`` int32
        (always natural order), the size, subsampling, sampling factors, the backend used and any warnings.

    Raises:
        TypeError: ``source`` or ``strict`` of the wrong type.
        ValueError: a bad ``max_pixels``, ``backend`` or ``order``.
        JpegError: input that is not a readable JPEG (a ``ValueError``); the subclasses
            ``JpegTooLargeError``, ``JpegUnsupportedError`` (12-bit, CMYK/YCCK, RGB, arithmetic,
            lossless, hierarchical) and ``JpegTruncatedError`` name the reason.
    """
    _check_args(strict, max_pixels, order)
    target = _chroma_target(chroma)
    if crop is not None and (
        not isinstance(crop, tuple | list) or len(crop) != 2
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in crop)
    ):  # fmt: skip
        raise ValueError(f"crop must be None or (Hy, Wy) positive luma block counts, got {crop!r}")
    chosen = _backends.resolve_backend(backend)
    data = _read_source(source)
    # The python decoder updates the header's tables while it reads later scans: it gets its own parse.
    header = parse_header(data, max_pixels) if chosen == "python" else _HEADERS.parse(data, max_pixels)
    frame = header.frame
    windows, size = None, (frame.height, frame.width)
    if crop is not None:
        windows, size = _crop_windows(header, crop)
    # (dh, dv) that takes the stored chroma to the target: (1, 1) when it is there already (nothing to do)
    downsample = None
    if target is not None and header.subsampling != "gray":
        downsample = _downsample_factors(header.sampling_factors, target)
    try:
        try:
            raw = _backends.decode(data, header, chosen, order, windows, downsample if chosen == "libjpeg" else None)
        except JpegTruncatedError as error:
            if strict or chosen != "libjpeg":
                raise
            # libjpeg stops at some damage (e.g. a table cut by the end of the file) without returning
            # coefficients; the reference decoder keeps what precedes it. Recorded, never silent.
            chosen = "python"
            header = parse_header(data, max_pixels)
            raw = _backends.decode(data, header, chosen)
            raw = replace(raw, warnings=(f"libjpeg failed ({error}); decoded by the python backend", *raw.warnings))
    except MemoryError:
        frame = header.frame
        raise JpegTooLargeError(f"not enough memory to decode a {frame.width}x{frame.height} JPEG") from None
    if strict and raw.warnings:
        raise JpegTruncatedError(f"truncated or corrupt JPEG data: {'; '.join(dict.fromkeys(raw.warnings))}")
    if raw.planes is not None and raw.order == order:
        planes = [torch.from_numpy(plane) for plane in raw.planes]  # already cut to the windows
    else:
        blocks = raw.blocks
        if windows is not None:
            blocks = [b[r0 : r0 + n, c0 : c0 + m] for b, (r0, c0, n, m) in zip(blocks, windows, strict=True)]
        planes = [_plane(b, table, order) for b, table in zip(blocks, raw.quant_tables, strict=True)]
    coeffs = JpegCoefficients(
        y=planes[0],
        cb=planes[1] if len(planes) == 3 else None,
        cr=planes[2] if len(planes) == 3 else None,
        quant_tables=torch.from_numpy(raw.quant_tables),  # int32 from every backend
        size=size,
        subsampling=header.subsampling,
        sampling_factors=header.sampling_factors,
        order=order,
        block_size=8,
        backend=chosen,
        warnings=tuple(dict.fromkeys(raw.warnings)),
    )
    if target is None or coeffs.cb is None or downsample == (1, 1):
        return coeffs
    return _with_chroma(coeffs, target, converted=downsample is not None and chosen == "libjpeg")


def _with_chroma(coeffs: JpegCoefficients, target: tuple[int, int], converted: bool) -> JpegCoefficients:
    """``coeffs`` with chroma planes in the ``target`` layout (``converted``: the reader already did it)."""
    if len(coeffs.sampling_factors) != 3 or coeffs.sampling_factors[1] != coeffs.sampling_factors[2]:
        raise JpegUnsupportedError(
            f"cannot convert the chroma of a JPEG with sampling factors {coeffs.sampling_factors} (Cb and Cr differ)"
        )
    key, name, factors = _TARGETS[target]
    if converted:
        cb, cr = coeffs.cb, coeffs.cr
        by, bx = coeffs.y.shape[-2:]
        if cb.shape[-2:] != (-(-by // target[1]), -(-bx // target[0])):
            raise JpegUnsupportedError(f"converted chroma grid {tuple(cb.shape[-2:])} does not fit luma {(by, bx)}")
    else:
        try:
            cb, cr = convert_chroma(coeffs, key)
        except ValueError as error:  # sampling factors the maps do not cover (e.g. chroma / 3)
            raise JpegUnsupportedError(f"cannot convert the chroma of this JPEG: {error}") from None
    return replace(
        coeffs, cb=cb, cr=cr, subsampling=name, sampling_factors=factors,
        stored_subsampling=coeffs.subsampling,
    )  # fmt: skip
