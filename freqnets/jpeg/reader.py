"""Read a JPEG file's DCT coefficients directly: no inverse DCT, no colour conversion, no re-encoding.

>>> from freqnets.jpeg import read_dct
>>> coefs = read_dct("photo.jpg")                       # doctest: +SKIP
>>> coefs.y.shape, coefs.cb.shape, coefs.subsampling     # doctest: +SKIP
(torch.Size([64, 47, 63]), torch.Size([64, 24, 32]), '4:2:0')
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import BinaryIO, NamedTuple

import numpy as np
import torch

from . import _backends
from ._backends import available_backends  # re-exported by freqnets.jpeg
from ._decode_py import RawCoefficients
from ._markers import (
    DEFAULT_MAX_PIXELS,
    MAX_SCANS,
    ZIGZAG_TO_NATURAL,
    HeaderCache,
    JpegHeader,
    _drop_oldest,
    frame_of,
    parse_header,
)
from .budget import (
    DEFAULT_MAX_BYTES,
    WORK_ALLOWANCE,
    WORK_PER_BYTE,
    check_read,
    libjpeg_bytes_needed,
    scan_data_short,
)
from .chroma import (
    _NAMES,
    Windows,
    block_windows,
    chroma_factors,
    chroma_grid,
    crop_windows,
    downsample_factors,
    layout_factors,
    subsampling_name,
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
    options = _checked_options(strict, max_pixels, backend, order, crop, chroma, max_bytes, exif_orientation)
    # resolve_backend's choice for "auto" and "libjpeg" without its call (a few percent of a CIFAR-sized read)
    libjpeg = (options.backend == "auto" or options.backend == "libjpeg") and _backends.has_libjpeg()
    chosen = "libjpeg" if libjpeg else _backends.resolve_backend(options.backend)
    data = source if type(source) is bytes else _read_source(source)
    if chosen == "libjpeg" and not options.exif_orientation:  # read_bytes' first step, without its frames
        try:
            coeffs = _read_fast(data, options)
        except MemoryError:
            raise _out_of_memory(data) from None
        if coeffs is not None:
            return coeffs
    return read_bytes(data, options, chosen, fast=False)


# Options checked before, by the exact arguments of read_dct (see _checked_options).
_OPTIONS: dict[tuple, ReadOptions] = {}
_MAX_OPTIONS = 64
# (strict, max_pixels, backend, order, chroma, max_bytes, exif_orientation, options) of the last call without a crop
_LAST_OPTIONS: tuple | None = None


def _checked_options(strict, max_pixels, backend, order, crop, chroma, max_bytes, exif_orientation) -> ReadOptions:
    """:class:`ReadOptions` of read_dct's arguments, from a small cache when the same arguments were checked
    before (building and checking them costs a fifth of a CIFAR-sized read)."""
    # The same objects as the last call's (the usual case: defaults or one call site's constants) are the same
    # options, whatever their classes; the identity tests cost less than the key below.
    global _LAST_OPTIONS
    last = _LAST_OPTIONS
    if (
        last is not None and crop is None and strict is last[0] and max_pixels is last[1] and backend is last[2]
        and order is last[3] and chroma is last[4] and max_bytes is last[5] and exif_orientation is last[6]
    ):  # fmt: skip
        return last[7]
    # The classes are part of the key: 1 == True == 1.0 hash alike, but only some of them are valid. A crop is
    # read through ReadOptions every time (a tuple's items could be of any class).
    key = None
    if crop is None:
        key = (strict, max_pixels, backend, order, chroma, max_bytes, exif_orientation, strict.__class__,
               max_pixels.__class__, max_bytes.__class__, exif_orientation.__class__)  # fmt: skip
        try:
            options = _OPTIONS[key]
        except (KeyError, TypeError):  # TypeError: an unhashable argument, refused by ReadOptions below
            pass
        else:
            _LAST_OPTIONS = (strict, max_pixels, backend, order, chroma, max_bytes, exif_orientation, options)
            return options
    options = ReadOptions(strict, max_pixels, backend, order, crop, chroma, max_bytes, exif_orientation)
    if key is not None:
        if len(_OPTIONS) >= _MAX_OPTIONS:
            _OPTIONS.clear()
        _OPTIONS[key] = options
        _LAST_OPTIONS = (strict, max_pixels, backend, order, chroma, max_bytes, exif_orientation, options)
    return options


def read_bytes(data: bytes, options: ReadOptions, backend: str | None = None, fast: bool = True) -> JpegCoefficients:
    """:func:`read_dct` of a whole file's bytes with checked ``options``; ``backend``: the concrete backend
    when the caller resolved it already (:func:`~._backends.resolve_backend`); ``fast=False``: without the
    libjpeg backend's fast path (the caller tried it)."""
    chosen = backend or _backends.resolve_backend(options.backend)
    try:
        return _read(data, options, chosen, fast)
    except MemoryError:  # the budget is an estimate: what it misses still gets a freqnets error
        raise _out_of_memory(data) from None


def _out_of_memory(data: bytes) -> JpegTooLargeError:
    return JpegTooLargeError(
        f"not enough memory to read this JPEG ({len(data)} bytes); a lower max_bytes refuses it before allocating"
    )


def _read(data: bytes, options: ReadOptions, chosen: str, fast: bool = True) -> JpegCoefficients:
    if fast and chosen == "libjpeg" and not options.exif_orientation:
        coeffs = _read_fast(data, options)
        if coeffs is not None:
            return coeffs
    # The python decoder updates the header's tables while it reads later scans: it gets its own parse.
    header = (
        parse_header(data, options.max_pixels) if chosen == "python" else HEADER_CACHE.parse(data, options.max_pixels)
    )
    orientation, exif_note = exif_orientation(data, header.tables.exif) if options.exif_orientation else (1, None)
    windows, size, keep = None, (header.frame.height, header.frame.width), None
    if options.crop is not None and orientation != 1:  # the turned image's window, read in the stored image
        *box, keep = turned_window(header.frame, options.crop, orientation)
        windows, size = block_windows(header.frame, *box)
    elif options.crop is not None:
        windows, size = crop_windows(header.frame, options.crop)
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


# --- the fast path of the libjpeg backend -----------------------------------------------------------------------------
#
# On a CIFAR-sized file (32x32) decoding takes about as long as the Python around it in the general path
# (_read below: options, header, windows, budget, NumPy and torch wrappers, the result object). The fast path
# gives the same results with less: what depends only on the header and the options is computed once per
# (header, options) pair (a _Plan), the C reader hands back each plane as a DLPack capsule that becomes a
# tensor in one call, and the result object is filled directly. Anything unusual (a budget limit reached,
# an error, corrupt-data warnings, a layout the C reader does not convert) goes to the general path, which
# reads the file again and reports or recovers exactly as before.


class _Plan(NamedTuple):
    """What a libjpeg read of files with one header under one :class:`ReadOptions` needs, known in advance."""

    fast: bool  # False: the general path handles these files (a limit, a conversion after reading, ...)
    windows: Windows | None
    down: tuple | None  # the C reader's downsample argument
    dims: list[tuple[int, int]]  # the (rows, columns) of each plane libjpeg must return
    max_memory: int
    data_start: int  # of the first scan's entropy-coded data
    first_scan_bits: int  # the fewest bits of data that can hold the first scan (0: no bound)
    blocks: int  # blocks of the MCU-padded planes (one scan's work)
    fields: dict  # the result's fields that do not depend on the file's data
    direct: object  # _jpegc.direct_header's capsule for these header bytes, or None (see _backends.direct_header)
    zigzag: bool  # channels in zigzag order


# the C extension's direct path (None where it is not built: plans then hold no direct header)
_read_direct = getattr(_backends._jpegc, "read_direct", None)
_parse_direct = getattr(_backends._jpegc, "parse_direct", None)
_new_object, _set_attribute = object.__new__, object.__setattr__  # (module globals: cheaper than attribute lookups)
# torch.from_dlpack without its checks for objects with __dlpack__ (the C reader hands over capsules): a quarter of
# the call's cost; the public function where torch lacks the private one.
_from_dlpack = getattr(torch._C, "_from_dlpack", torch.from_dlpack)
# what _jpegc.read_direct builds its results with (the class and each capsule's conversion to a tensor; see _result)
_DIRECT_RESULT = (JpegCoefficients, _from_dlpack)
# (header bytes, options, plan) of the last file read by the fast path
_LAST: tuple[bytes, ReadOptions, _Plan] | None = None
# (id(header), id(options)) -> (header, options, plan): the entry holds both, so neither id can be reused by
# another object while it is cached (headers come from HEADER_CACHE, options mostly from _OPTIONS).
_PLANS: dict[tuple[int, int], tuple[JpegHeader, ReadOptions, _Plan]] = {}
_MAX_PLANS = 256
# Plans made from the C header parse whose header bytes came back (see _find_plan): (header bytes, id(options)) ->
# (options, plan), oldest first; the lengths of their headers and where their SOS marker starts, newest first (where
# a file's header bytes are looked for); the hashes of header bytes seen once (of at most _MAX_REMEMBERED_HEADER).
_DIRECT_PLANS: dict[tuple[bytes, int], tuple[ReadOptions, _Plan]] = {}
_DIRECT_ENDS: tuple[tuple[int, int], ...] = ()
_MAX_DIRECT_ENDS = 4
_SEEN: dict[int, None] = {}
_MAX_SEEN = 256
_MAX_REMEMBERED_HEADER = 4096
# JpegCoefficients' fields with their defaults (see _read_fast); all defaults are immutable.
_DEFAULT_FIELDS = {
    f.name: f.default if f.default is not MISSING else f.default_factory()
    for f in fields(JpegCoefficients)
    if f.default is not MISSING or f.default_factory is not MISSING
}


def _plan(header: JpegHeader, options: ReadOptions, prefix: bytes) -> _Plan:
    """The :class:`_Plan` of ``header`` read with ``options`` by the libjpeg backend (as :func:`_read` reads it);
    ``prefix``: the header's bytes (SOI to the end of the first SOS segment)."""
    frame = header.frame
    windows, size = (None, (frame.height, frame.width))
    if options.crop is not None:
        windows, size = crop_windows(frame, options.crop)
    # 4-component files (CMYK/YCCK) and arithmetic-coded ones, with budget rules of their own, take the general path
    readable = len(frame.components) in (1, 3) and not frame.arithmetic
    grids = [(c.height_in_blocks, c.width_in_blocks) for c in frame.components]
    short = scan_data_short(b"", header)  # (bits needed, 0) when the first scan has a lower bound
    first_scan_bits = 0 if short is None else short[0]
    plan = _new_plan(
        options, size, header.sampling_factors, header.subsampling, grids, windows, header.coefficients,
        header.first_scan.data_start, first_scan_bits, readable, None,
    )  # fmt: skip
    if not plan.fast:
        return plan
    return plan._replace(direct=_backends.direct_header(prefix, header))


def _direct_plan(data: bytes, options: ReadOptions) -> _Plan | None:
    """The :class:`_Plan` of ``data`` read with ``options`` from the C extension's parse of its header alone
    (:func:`~._backends.parse_direct`), or ``None`` when that parse declines the file (then its header is parsed by
    :func:`~._markers.parse_header`, which raises or returns what :func:`_plan` needs). A photo set has a new header
    in every file: this replaces the Python parse, the plan from it and the second, C parse of the same bytes with
    one C parse; the plan is kept only as the last one (:data:`_LAST`)."""
    parsed = _backends.parse_direct(data, options.max_pixels)
    if parsed is None:
        return None
    direct, data_start, coefficients, first_scan_bits, factors, grids, frame = parsed
    windows, size = None, (frame[2], frame[3])
    if options.crop is not None:
        windows, size = crop_windows(frame_of(frame), options.crop)
    return _new_plan(
        options, size, factors, subsampling_name(factors), grids, windows, coefficients, data_start, first_scan_bits,
        True, direct,
    )  # fmt: skip


def _new_plan(
    options: ReadOptions,
    size: tuple[int, int],
    factors: tuple[tuple[int, int], ...],
    subsampling: str,
    grids: list[tuple[int, int]],
    windows: Windows | None,
    coefficients: int,
    data_start: int,
    first_scan_bits: int,
    readable: bool,
    direct: object,
) -> _Plan:
    """The :class:`_Plan` of files with a header of these figures (:class:`JpegHeader`'s: ``size`` in pixels,
    sampling ``factors``, ``subsampling``, each component's block ``grids``, ``coefficients``; where the scan data
    starts, the bits the first scan needs at least) read with ``options`` through ``windows`` (``crop``'s, or
    ``None``); ``readable``: the C readers take such files (1 or 3 components, Huffman-coded); ``direct``: the
    direct path's capsule or ``None``."""
    colour = subsampling != "gray"
    downsample = None
    if options.target is not None and colour:
        downsample = downsample_factors(factors, options.target)
    if windows is not None:
        grids = [w[2:] for w in windows]
    dims = [grids[0]] + [
        (-(-rows // downsample[1]), -(-cols // downsample[0])) if downsample is not None else (rows, cols)
        for rows, cols in grids[1:]
    ]
    result = {
        **_DEFAULT_FIELDS,
        "cb": None,
        "cr": None,
        "size": size,
        "subsampling": subsampling,
        "sampling_factors": factors,
        "order": options.order,
        "backend": "libjpeg",
    }
    # what _read and with_layout do: the planes of a converted file are described in the target layout
    converts = options.target is not None and colour and downsample != (1, 1)
    fast = readable and (not converts or downsample is not None)
    if converts and fast:
        fast = len(factors) == 3 and dims[1] == chroma_grid(*dims[0], options.target)
        result.update(
            subsampling=_NAMES[options.target],
            sampling_factors=(options.target, (1, 1), (1, 1)),
            stored_subsampling=subsampling,
        )
    # check_read's limits that do not depend on the file's length; those that do are checked per file
    if options.max_bytes is not None:
        out = 64 * sum([rows * cols for rows, cols in grids])
        fast = fast and libjpeg_bytes_needed(coefficients, out) <= options.max_bytes
    down = None if downsample is None or downsample == (1, 1) else (*downsample, _backends._kernel_bytes())
    # (positional: a NamedTuple's keyword call costs a few microseconds more, paid per photo)
    return _Plan(
        fast, windows, down, dims, _backends.libjpeg_memory(coefficients), data_start, first_scan_bits,
        coefficients // 64, result, direct if fast else None, options.order == "zigzag",
    )  # fmt: skip


def _find_plan(data: bytes, options: ReadOptions) -> tuple[_Plan, bytes]:
    """The plan of a file whose header differs from the last file's, and its header bytes. A header the direct path
    reads: its plan from the C parse (one parse), kept only once the same header bytes came back (_DIRECT_PLANS:
    a photo set, whose headers are all new, leaves nothing behind for the garbage collector to walk). Else (the C
    parse declines it): the Python parse through the header cache, which raises the header's typed errors."""
    global _DIRECT_ENDS
    for end, sos in _DIRECT_ENDS:  # (a file whose SOS marker is elsewhere has other header bytes: no slice, no hash)
        if len(data) >= end and data[sos] == 0xFF and data[sos + 1] == 0xDA:
            prefix = data[:end]
            entry = _DIRECT_PLANS.get((prefix, id(options)))
            if entry is not None and entry[0] is options:
                return entry[1], prefix
    plan = _direct_plan(data, options) if _parse_direct is not None else None
    if plan is not None:
        prefix = data[: plan.data_start]
        # (options with a crop are made per call, never found again by identity: their plans are not kept)
        if len(prefix) <= _MAX_REMEMBERED_HEADER and options.crop is None:
            seen = hash(prefix)
            if seen not in _SEEN:  # a first sighting: only the hash is kept (the dict stays untracked by gc)
                if len(_SEEN) >= _MAX_SEEN:
                    _SEEN.clear()
                _SEEN[seen] = None
            else:
                if len(_DIRECT_PLANS) >= _MAX_PLANS:
                    _drop_oldest(_DIRECT_PLANS)
                _DIRECT_PLANS[(prefix, id(options))] = options, plan
                # where its SOS marker is: FF DA, the length field, 1 + 2 bytes per component and 3 bytes
                shape = len(prefix), len(prefix) - 6 - 2 * len(plan.dims) - 2
                if shape not in _DIRECT_ENDS:
                    _DIRECT_ENDS = (shape, *_DIRECT_ENDS)[:_MAX_DIRECT_ENDS]
        return plan, prefix
    header = HEADER_CACHE.parse(data, options.max_pixels)
    entry = _PLANS.get((id(header), id(options)))
    if entry is None or entry[0] is not header or entry[1] is not options:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        entry = header, options, _plan(header, options, data[: header.first_scan.data_start])
        _PLANS[(id(header), id(options))] = entry
    return entry[2], data[: entry[2].data_start]


def _read_fast(data: bytes, options: ReadOptions) -> JpegCoefficients | None:
    """:func:`_read` with the libjpeg backend for the usual files, or ``None``: the general path must read it."""
    global _LAST
    last = _LAST
    # the plan of the previous file when this one starts with the same header bytes under the same options
    # (the header parser reads nothing else, so the header is the same: the usual case in a data set)
    if last is not None and last[1] is options and data.startswith(last[0]):
        plan = last[2]
    else:
        plan, prefix = _find_plan(data, options)
        _LAST = prefix, options, plan
    if not plan.fast:
        return None
    if plan.direct is not None and _backends.DIRECT:
        # the direct path: the usual files without libjpeg's framework; it checks the budget limits below itself
        # (None: over them, or not a file it reads exactly as libjpeg would without a warning: see below)
        # (the C call builds the result as _result does: its Python was a sixth of a CIFAR-sized read)
        coeffs = _read_direct(data, plan.direct, plan.zigzag, plan.windows, plan.down, plan.fields, _DIRECT_RESULT)
        if coeffs is not None:
            return coeffs
    # check_read's limits that depend on the file: data too short for the first scan (refused, or read within
    # a lower limit), more scans x blocks than the file's size allows (counted only when the file is long
    # enough to hold that many SOS markers, two bytes each)
    size = len(data)
    if 8 * (size - plan.data_start) < plan.first_scan_bits:
        return None
    allowed = WORK_ALLOWANCE["libjpeg"] + WORK_PER_BYTE["libjpeg"] * size
    if (1 + (size - plan.data_start) // 2) * plan.blocks > allowed and (
        (1 + data.count(b"\xff\xda", plan.data_start)) * plan.blocks > allowed
    ):
        return None
    try:
        planes, quant, warnings = _backends._jpegc.read_coefficients(
            data, plan.max_memory, MAX_SCANS, plan.zigzag, plan.windows, plan.down,
            strict=options.strict, max_bytes=options.max_bytes or 0, dlpack=True,
        )  # fmt: skip
    except RuntimeError:
        return None
    if warnings or [(rows, cols) for rows, cols, _ in planes] != plan.dims:
        return None
    return _result(plan, [capsule for _, _, capsule in planes] + [quant])


def _result(plan: _Plan, capsules) -> JpegCoefficients:
    """The result of a fast read: ``capsules`` are the DLPack planes then the quantisation tables. (The direct
    path's C call builds the same object itself: ``_jpegc.read_direct(..., plan.fields, _DIRECT_RESULT)``.)"""
    values = plan.fields.copy()  # every field (see _plan); a new dict per result
    if len(capsules) == 4:
        y, cb, cr, quant = capsules
        values["cb"] = _from_dlpack(cb)
        values["cr"] = _from_dlpack(cr)
    else:
        y, quant = capsules
    values["y"] = _from_dlpack(y)
    values["quant_tables"] = _from_dlpack(quant)
    # The frozen dataclass's __init__ sets each of its fifteen fields through object.__setattr__, which costs a
    # sixth of a CIFAR-sized read: the object gets its attribute dict directly, the same dict __init__ builds,
    # and then the same checks __init__ would run (__post_init__).
    coeffs = _new_object(JpegCoefficients)
    _set_attribute(coeffs, "__dict__", values)
    coeffs.__post_init__()
    return coeffs
