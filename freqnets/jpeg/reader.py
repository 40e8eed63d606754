"""Read a JPEG file's DCT coefficients directly: no inverse DCT, no colour conversion, no re-encoding.

>>> from freqnets.jpeg import read_dct
>>> coefs = read_dct("photo.jpg")                       # doctest: +SKIP
>>> coefs.y.shape, coefs.cb.shape, coefs.subsampling     # doctest: +SKIP
(torch.Size([64, 47, 63]), torch.Size([64, 24, 32]), '4:2:0')
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import BinaryIO

import numpy as np
import torch

from . import _backends
from ._backends import available_backends  # re-exported by freqnets.jpeg
from ._decode_py import RawCoefficients
from ._markers import DEFAULT_MAX_PIXELS, ZIGZAG_TO_NATURAL, HeaderCache, JpegHeader, parse_header
from .budget import DEFAULT_MAX_BYTES, check_read
from .chroma import (
    Windows,
    block_windows,
    chroma_factors,
    crop_windows,
    downsample_factors,
    layout_factors,
    with_layout,
)
from .coefficients import JpegCoefficients, JpegTooLargeError, JpegTruncatedError
from .exif import exif_orientation
from .orientation import apply_orientation, keep_window, turned_window

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "ReadOptions", "available_backends", "read_bytes", "read_dct"]

Source = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray | torch.Tensor | BinaryIO

# Headers of recent files for the backends that only read them (per process; exact, see HeaderCache).
HEADER_CACHE = HeaderCache()


def buffer_bytes(buffer: bytes | bytearray | memoryview | np.ndarray | torch.Tensor) -> bytes:
    """The bytes of an in-memory file: ``bytes``-like objects, or a 1-D ``uint8`` NumPy array or torch
    tensor (e.g. ``torchvision.io.read_file``'s output; any device, strided views are copied).

    Raises:
        TypeError: an array or tensor whose dtype is not ``uint8``, or another type.
        ValueError: an array or tensor that is not 1-D.
    """
    if isinstance(buffer, bytes):
        return buffer
    if isinstance(buffer, bytearray | memoryview):
        return bytes(buffer)
    if isinstance(buffer, torch.Tensor | np.ndarray):
        kind, uint8 = ("tensor", torch.uint8) if isinstance(buffer, torch.Tensor) else ("array", np.uint8)
        if buffer.dtype != uint8:
            raise TypeError(f"a JPEG file as a {kind} must have dtype uint8 (its bytes), got {buffer.dtype}")
        if buffer.ndim != 1:
            raise ValueError(f"a JPEG file as a {kind} must be 1-D (its bytes), got shape {tuple(buffer.shape)}")
        if isinstance(buffer, torch.Tensor):
            buffer = buffer.detach().cpu().numpy()
        return buffer.tobytes()  # tobytes copies in index order, whatever the strides
    raise TypeError(f"a JPEG file in memory must be bytes or a 1-D uint8 array/tensor, got {type(buffer).__name__}")


def _read_source(source: Source) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview | np.ndarray | torch.Tensor):
        return buffer_bytes(source)
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return handle.read()
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"source file object must be opened in binary mode, its read() gave {type(data).__name__}")
        return bytes(data)
    kinds = "a path, bytes, a 1-D uint8 array or tensor, or a binary file object"
    raise TypeError(f"source must be {kinds}, got {type(source).__name__}")


def _plane(blocks: np.ndarray, table: np.ndarray, order: str) -> torch.Tensor:
    """``(by, bx, 64)`` int16 quantised -> ``(64, by, bx)`` float32 dequantised, in ``order``."""
    if order == "zigzag":
        blocks, table = blocks[..., ZIGZAG_TO_NATURAL], table[ZIGZAG_TO_NATURAL]
    # Float32 products of integers are correctly rounded, so every backend gets the same floats; written
    # straight into the result (int16 -> float32 is exact), without float32 temporaries.
    values = np.empty((64, *blocks.shape[:2]), dtype=np.float32)
    np.multiply(blocks.transpose(2, 0, 1), table.astype(np.float32)[:, None, None], out=values)
    return torch.from_numpy(values)


@dataclass(frozen=True)
class ReadOptions:
    """The options of :func:`read_dct` (meanings there), checked once when built.

    ``target`` is the chroma factors ``(fh, fv)`` of ``chroma`` (``None``: the file's layout).
    """

    strict: bool = True
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    backend: str = "auto"
    order: str = "natural"
    crop: tuple[int, int] | None = None
    chroma: str | None = None
    max_bytes: int | None = DEFAULT_MAX_BYTES
    exif_orientation: bool = False
    target: tuple[int, int] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("strict", "exif_orientation"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        for name in ("max_pixels", "max_bytes"):
            limit = getattr(self, name)
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
                raise ValueError(f"{name} must be a positive int or None (no limit), got {limit!r}")
        if self.order not in ("natural", "zigzag"):
            raise ValueError(f"order must be 'natural' or 'zigzag', got {self.order!r}")
        object.__setattr__(self, "target", None if self.chroma is None else layout_factors(self.chroma))
        crop = self.crop
        if crop is not None:
            if (
                not isinstance(crop, tuple | list)
                or len(crop) != 2
                or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in crop)
            ):
                raise ValueError(f"crop must be None or (Hy, Wy) positive luma block counts, got {crop!r}")
            object.__setattr__(self, "crop", (crop[0], crop[1]))


def read_dct(
    source: Source,
    *,
    strict: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    backend: str = "auto",
    order: str = "natural",
    crop: tuple[int, int] | None = None,
    chroma: str | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    exif_orientation: bool = False,
) -> JpegCoefficients:
    """The dequantised DCT coefficients of a JPEG file, per plane at its own resolution.

    Args:
        source: a path, the file's bytes (``bytes``, ``bytearray``, ``memoryview``, or a 1-D ``uint8``
            NumPy array or torch tensor such as ``torchvision.io.read_file``'s output), or a binary file
            object (read to its end).
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
            the DCT domain with the exact maps of :func:`~freqnets.jpeg.convert_chroma` (2x2,
            2x1, ... pixel averages; replication to upsample), the values of
            ``DCTCollate(chroma=...)`` to float32 rounding. The libjpeg backend averages while it
            writes the planes (4:4:4, 4:2:2, 4:4:0 -> 4:2:0 and the like), so samples reach the
            collate in its layout; ``subsampling``/``sampling_factors`` then describe the returned
            planes and ``stored_subsampling`` the file's. Files already in the target layout,
            greyscale and 4-component (CMYK/YCCK) files are returned as stored (``stored_subsampling`` stays
            ``None``; :func:`~freqnets.jpeg.cmyk_to_ycbcr` converts the latter to YCbCr).
        max_bytes: the most memory the read may allocate, in bytes: the float32 planes it returns plus
            the backend's working arrays, computed from the header before anything is allocated
            (:class:`JpegTooLargeError`; :mod:`~freqnets.jpeg.budget`); default
            :data:`~freqnets.jpeg.DEFAULT_MAX_BYTES` (1 GiB); ``None``: no limit. A file whose scan data is
            too short for its frame is truncated (``strict=True`` raises before allocating) and is read
            with ``strict=False`` within at most 256 MB whatever ``max_bytes`` says. Each backend may also
            visit at most a number of blocks (scans x blocks) in proportion to the file's size.
        exif_orientation: turn the image as its EXIF Orientation tag (1..8) says, exactly in the DCT domain
            (:mod:`~freqnets.jpeg.orientation`: block and coefficient transposes, mirrors with ``(-1)^u`` /
            ``(-1)^v`` sign flips, every plane; 4:2:2 becomes 4:4:0 under a transpose unless ``chroma`` asks
            for a layout). Exact where the image fills whole MCUs; a partial edge MCU that a mirror would
            move to the top or left is dropped first (as ``jpegtran -trim``), so ``size`` shrinks to whole
            MCUs on that axis (an axis under one MCU keeps its size: its planes are mirrored by an exact map,
            off the quantisation lattice). ``crop`` and ``chroma`` describe the turned image (``crop``: its
            centre window, the crop's shape for every orientation). Malformed EXIF is ignored (orientation 1)
            with the reason in ``warnings``, even under ``strict=True`` (:mod:`~freqnets.jpeg.exif`).

    Returns:
        :class:`JpegCoefficients`: ``y`` ``(64, ceil(H/8), ceil(W/8))`` float32, ``cb``/``cr`` at the
        chroma resolution (``None`` for greyscale), ``k`` (the fourth plane of CMYK/YCCK files, else ``None``),
        ``quant_tables`` ``(n_components, 64)`` int32 (always natural order), the size, subsampling, sampling
        factors, ``colour_model`` (``"ycbcr"``, ``"grayscale"``, ``"cmyk"``, ``"ycck"``) and ``adobe_inverted``,
        the backend used and any warnings. Arithmetic-coded files (SOF9/SOF10) are read by the libjpeg backend.

    Raises:
        TypeError: ``source`` or ``strict`` of the wrong type (also an array or tensor that is not ``uint8``).
        ValueError: a bad ``max_pixels``, ``max_bytes``, ``backend``, ``order``, ``crop`` or ``chroma``; an array or
            tensor ``source`` that is not 1-D.
        JpegError: input that is not a readable JPEG (a ``ValueError``); the subclasses
            ``JpegTooLargeError``, ``JpegUnsupportedError`` (12-bit, RGB, lossless, hierarchical; arithmetic
            coding with other backends than ``"libjpeg"``) and ``JpegTruncatedError`` name the reason.
    """
    options = ReadOptions(strict, max_pixels, backend, order, crop, chroma, max_bytes, exif_orientation)
    chosen = _backends.resolve_backend(options.backend)
    return read_bytes(_read_source(source), options, chosen)


def read_bytes(data: bytes, options: ReadOptions, backend: str | None = None) -> JpegCoefficients:
    """:func:`read_dct` of a whole file's bytes with checked ``options``; ``backend``: the concrete backend
    when the caller resolved it already (:func:`~._backends.resolve_backend`)."""
    chosen = backend or _backends.resolve_backend(options.backend)
    try:
        return _read(data, options, chosen)
    except MemoryError:  # the budget is an estimate: what it misses still gets a freqnets error
        raise JpegTooLargeError(
            f"not enough memory to read this JPEG ({len(data)} bytes); a lower max_bytes refuses it before allocating"
        ) from None


def _read(data: bytes, options: ReadOptions, chosen: str) -> JpegCoefficients:
    # The python decoder updates the header's tables while it reads later scans: it gets its own parse.
    header = (
        parse_header(data, options.max_pixels) if chosen == "python" else HEADER_CACHE.parse(data, options.max_pixels)
    )
    orientation, exif_note = exif_orientation(data, header.tables.exif) if options.exif_orientation else (1, None)
    windows, size, keep = None, (header.frame.height, header.frame.width), None
    if options.crop is not None and orientation != 1:  # the turned image's window, read in the stored image
        *box, keep = turned_window(header.frame, options.crop, orientation)
        windows, size = block_windows(header, *box)
    elif options.crop is not None:
        windows, size = crop_windows(header, options.crop)
    # (dh, dv) that takes the stored chroma to the target: (1, 1) when it is there already (nothing to do)
    downsample = None
    four = len(header.frame.components) == 4  # CMYK/YCCK: no chroma conversion (see read_dct's chroma)
    # a turned image gets its chroma layout after turning (a transpose swaps 4:2:2 and 4:4:0)
    if options.target is not None and header.subsampling != "gray" and not four and orientation == 1:
        downsample = downsample_factors(header.sampling_factors, options.target)
    check_read(data, header, chosen, options.strict, options.max_bytes, windows)
    raw, header, chosen = _decode(data, header, chosen, options, windows, downsample)
    if options.strict and raw.warnings:
        raise JpegTruncatedError(f"truncated or corrupt JPEG data: {'; '.join(dict.fromkeys(raw.warnings))}")
    planes = _planes(raw, windows, options.order)
    coeffs = JpegCoefficients(
        y=planes[0],
        cb=planes[1] if len(planes) >= 3 else None,
        cr=planes[2] if len(planes) >= 3 else None,
        quant_tables=torch.from_numpy(raw.quant_tables),  # int32 from every backend
        size=size,
        subsampling=header.subsampling,
        sampling_factors=header.sampling_factors,
        order=options.order,
        block_size=8,
        backend=chosen,
        warnings=tuple(dict.fromkeys(raw.warnings)) + ((exif_note,) if exif_note else ()),
    )
    if four:
        coeffs = replace(
            coeffs, k=planes[3], four_colour=header.colour, adobe_inverted=header.tables.adobe_transform is not None
        )
    if orientation != 1:
        coeffs = apply_orientation(coeffs, orientation)
        if keep is not None:
            coeffs = keep_window(coeffs, *keep)
        if options.target is None or coeffs.cb is None or four or _in_layout(coeffs, options.target):
            return coeffs
        return with_layout(coeffs, options.target, converted=False)
    if options.target is None or coeffs.cb is None or four or downsample == (1, 1):
        return coeffs
    return with_layout(coeffs, options.target, converted=downsample is not None and chosen == "libjpeg")


def _in_layout(coeffs: JpegCoefficients, target: tuple[int, int]) -> bool:
    """True when the chroma planes of ``coeffs`` are in the ``target`` layout (chroma factors) already."""
    try:
        return chroma_factors(coeffs.sampling_factors) == target
    except ValueError:  # a layout the maps do not cover: with_layout names it
        return False


def _decode(
    data: bytes,
    header: JpegHeader,
    chosen: str,
    options: ReadOptions,
    windows: Windows | None,
    downsample: tuple[int, int] | None,
) -> tuple[RawCoefficients, JpegHeader, str]:
    """Run the ``chosen`` backend; ``(raw, header, backend)``, the last two changed when libjpeg stops at
    damage under ``strict=False`` and the python decoder finishes the file (within its own budget)."""
    try:
        down = downsample if chosen == "libjpeg" else None
        raw = _backends.decode(
            data, header, chosen, options.order, windows, down, strict=options.strict, max_bytes=options.max_bytes
        )
        return raw, header, chosen
    except JpegTruncatedError as error:
        if options.strict or chosen != "libjpeg" or header.frame.arithmetic:  # the python decoder reads no arithmetic
            raise
        # libjpeg stops at some damage (e.g. a table cut by the end of the file) without returning
        # coefficients; the reference decoder keeps what precedes it. Recorded, never silent.
        header = parse_header(data, options.max_pixels)
        check_read(data, header, "python", options.strict, options.max_bytes)
        raw = _backends.decode(data, header, "python")
        note = f"libjpeg failed ({error}); decoded by the python backend"
        return replace(raw, warnings=(note, *raw.warnings)), header, "python"


def _planes(raw: RawCoefficients, windows: Windows | None, order: str) -> list[torch.Tensor]:
    """The float32 ``(64, rows, cols)`` planes of ``raw`` in ``order``, cut to ``windows``."""
    if raw.planes is not None and raw.order == order:
        return [torch.from_numpy(plane) for plane in raw.planes]  # already cut to the windows
    blocks = raw.blocks
    if windows is not None:
        blocks = [b[r0 : r0 + n, c0 : c0 + m] for b, (r0, c0, n, m) in zip(blocks, windows, strict=True)]
    return [_plane(b, table, order) for b, table in zip(blocks, raw.quant_tables, strict=True)]
