"""Decoder backends of :func:`freqnets.jpeg.read_dct`; each returns :class:`RawCoefficients`.

* ``"libjpeg"``: the compiled extension ``freqnets.jpeg._jpegc`` (Apache-2.0, ours) calling
  libjpeg-turbo's ``jpeg_read_coefficients`` (IJG/BSD licences). Built by ``pip install`` where
  the libjpeg headers exist; the fastest and the default.
* ``"python"``: the pure Python/NumPy reference decoder (:mod:`._decode_py`), always available.
* ``"jpeg2dct"``: Uber's jpeg2dct package where installed (**non-commercial licence**, so
  never chosen by ``"auto"``). It re-encodes every colour file that is not 4:2:0 at quality 100
  before reading it, and reports no corrupt-data warnings; freqnets therefore uses it only for
  4:2:0 and greyscale files and raises :class:`JpegUnsupportedError` for the others.

All three return identical coefficients for every valid file (tested).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import numpy as np
import torch

from ._decode_py import RawCoefficients
from ._decode_py import decode as decode_python
from ._markers import MAX_SCANS, JpegHeader, quant_table
from .budget import WORK_ALLOWANCE, WORK_PER_BYTE, scan_data_short
from .chroma import Windows
from .coefficients import JpegError, JpegTooLargeError, JpegTruncatedError, JpegUnsupportedError
from .resample import downsample_kernel

BACKENDS = ("auto", "libjpeg", "python", "jpeg2dct")
_BENIGN_WARNINGS = ("Warning: unknown JFIF revision", "Unknown Adobe color transform")
OVER_MAX_BYTES = "over max_bytes:"  # how the C reader's message for a file over max_bytes starts

try:
    from . import _jpegc
except ImportError:  # built without the libjpeg headers
    _jpegc = None


def has_libjpeg() -> bool:
    """True when the compiled libjpeg backend was built."""
    return _jpegc is not None


def has_jpeg2dct() -> bool:
    """True when the ``jpeg2dct`` package is importable (checked without importing it)."""
    return importlib.util.find_spec("jpeg2dct") is not None


def available_backends() -> tuple[str, ...]:
    """The backends that can run here, fastest first (``"auto"`` picks the first permissive one)."""
    names = ["libjpeg"] if has_libjpeg() else []
    names.append("python")
    if has_jpeg2dct():
        names.append("jpeg2dct")
    return tuple(names)


def resolve_backend(backend: str) -> str:
    """The concrete backend for ``backend``; raises when a requested one is not available here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "libjpeg" if has_libjpeg() else "python"
    if backend == "libjpeg" and not has_libjpeg():
        raise JpegUnsupportedError(
            "backend='libjpeg' is not available: freqnets.jpeg._jpegc was not built (install the libjpeg "
            "headers, e.g. libjpeg62-turbo-dev or libjpeg-turbo-devel, then reinstall freqnets)"
        )
    if backend == "jpeg2dct" and not has_jpeg2dct():
        raise JpegUnsupportedError("backend='jpeg2dct' is not available: pip install 'freqnets[jpeg]'")
    return backend


def read_libjpeg(
    data: bytes,
    header: JpegHeader,
    zigzag: bool,
    windows: Windows | None = None,
    downsample: tuple[int, int] | None = None,
    outs: list | None = None,
    strict: bool = False,
    max_bytes: int | None = None,
) -> tuple[list, bytes, list[str]]:
    """The C extension's ``read_coefficients`` with libjpeg's memory capped to what the frame's
    coefficient arrays need; returns its ``(planes, quant_tables, warnings)`` without libjpeg's notes on
    metadata (JWRN_JFIF_MAJOR, JWRN_ADOBE_XFORM: not damage). Raises its ``RuntimeError(message, warnings)``.
    ``downsample`` ``(1, 1)`` is no downsampling; ``outs``: see ``_jpegc.read_coefficients``.
    ``strict``: refuse (raised, the reason also in the warnings) before allocating a file whose entropy-coded
    data is too short for its first scan, e.g. a few KB claiming a huge frame. ``max_bytes``: refuse (message
    starting with :data:`OVER_MAX_BYTES`) a file whose coefficient arrays and planes, computed from the frame
    header, would take more bytes; ``None``: no limit."""
    down = None if downsample is None or downsample == (1, 1) else (*downsample, _kernel_bytes())
    planes, quant, warnings = _jpegc.read_coefficients(
        data, libjpeg_memory(header.coefficients), MAX_SCANS, zigzag, windows, down, outs, strict=strict,
        max_bytes=max_bytes or 0,
    )  # fmt: skip
    return planes, quant, [w for w in warnings if not w.startswith(_BENIGN_WARNINGS)]


# The direct path of the C extension (single-scan sequential files decoded without libjpeg's framework, see
# _jpegc.c): used by read_dct's fast path and DCTReadCollate when True; tests switch it off to get the libjpeg
# path's results to compare with.
DIRECT = True


def direct_header(prefix: bytes, header: JpegHeader) -> object:
    """The C extension's parse of a header for its direct path (``_jpegc.direct_header``: a capsule), or ``None``
    when that path does not read such files. ``prefix``: the header's bytes, SOI to the end of the first SOS
    segment; ``header``: their parse here (the C parse must give the same block grids). The capsule also holds
    :func:`~.budget.check_read`'s figures for such files, which ``_jpegc.read_direct`` checks per file."""
    dims = [(c.height_in_blocks, c.width_in_blocks) for c in header.frame.components]
    short = scan_data_short(b"", header)  # (bits needed, 0) when the first scan has a lower bound
    first_scan_bits = 0 if short is None else short[0]
    blocks = header.coefficients // 64
    allowance, per_byte = WORK_ALLOWANCE["libjpeg"], WORK_PER_BYTE["libjpeg"]
    return _jpegc.direct_header(prefix, dims, first_scan_bits, blocks, allowance, per_byte)


def parse_direct(data: bytes, max_pixels: int | None) -> tuple | None:
    """The C extension's parse of ``data``'s header for its direct path, without :func:`~._markers.parse_header`:
    ``None`` (declined) unless the direct path reads such files and ``parse_header(data, max_pixels)`` accepts
    the header (then it has the same figures), else ``(capsule, data_start, coefficients, first_scan_bits,
    sampling_factors, grids, frame)``: :func:`direct_header`'s capsule, where the scan data starts,
    ``JpegHeader.coefficients``, the bits :func:`~.budget.scan_data_short` says the first scan needs,
    ``JpegHeader.sampling_factors``, each component's ``(rows, columns)`` block grid, and the fields of the
    :class:`~._markers.Frame` (its components as the fields of each :class:`~._markers.Component`; see
    :func:`~._markers.frame_of`). A declined file goes to ``parse_header``, which raises its typed error or parses
    it for the other paths."""
    return _jpegc.parse_direct(data, max_pixels, WORK_ALLOWANCE["libjpeg"], WORK_PER_BYTE["libjpeg"])


def libjpeg_memory(coefficients: int) -> int:
    """libjpeg's memory cap for a file: its int16 MCU-padded coefficient arrays (``coefficients`` of them:
    ``JpegHeader.coefficients``) + working memory."""
    return 2 * coefficients + (16 << 20)


def decode_libjpeg(
    data: bytes,
    header: JpegHeader,
    order: str = "natural",
    windows: Windows | None = None,
    downsample: tuple[int, int] | None = None,
    strict: bool = False,
    max_bytes: int | None = None,
) -> RawCoefficients:
    """Decode with libjpeg's ``jpeg_read_coefficients``; the C code dequantises and lays out the planes.

    libjpeg's memory is capped to what the frame's coefficient arrays need. ``windows``: per component
    ``(first row, first column, rows, columns)`` of its block grid to lay out (``None``: all of it).
    ``downsample``: ``None`` or ``(dh, dv)`` in {1, 2}: average the chroma planes (components 1, 2) by
    ``dh x dv`` pixels in the DCT domain while writing them (:func:`~.resample.downsample_kernel`).
    ``strict``, ``max_bytes``: see :func:`read_libjpeg` (over ``max_bytes``: :class:`JpegTooLargeError`).
    """
    try:
        planes, quant, warnings = read_libjpeg(
            data, header, order == "zigzag", windows, downsample, strict=strict, max_bytes=max_bytes
        )
    except RuntimeError as error:
        message, warnings = error.args
        if message.startswith(OVER_MAX_BYTES):
            raise JpegTooLargeError(f"{message[len(OVER_MAX_BYTES) :].strip()} (max_bytes)") from None
        # libjpeg's JERR_OUT_OF_MEMORY text is "Insufficient memory (case N)".
        if message.startswith("Insufficient memory"):
            frame = header.frame
            raise JpegTooLargeError(f"not enough memory to decode a {frame.width}x{frame.height} JPEG") from None
        # A fatal error after corrupt-data warnings (e.g. a table cut by the end of the file) is damage.
        kind = JpegTruncatedError if warnings else JpegError
        raise kind(f"corrupt JPEG (libjpeg: {'; '.join([*warnings, message])})") from None
    frame = header.frame
    if len(planes) != len(frame.components):
        raise JpegError(f"corrupt JPEG: libjpeg read {len(planes)} components, the header {len(frame.components)}")
    arrays = []
    for index, (rows, cols, raw) in enumerate(planes):
        if windows is None:
            comp = frame.components[index]
            want = comp.height_in_blocks, comp.width_in_blocks
        else:
            want = windows[index][2:]
        if index and downsample is not None:
            want = -(-want[0] // downsample[1]), -(-want[1] // downsample[0])
        if (rows, cols) != want:
            raise JpegError("corrupt JPEG: libjpeg's block grid differs from the header's")
        arrays.append(np.frombuffer(raw, dtype=np.float32).reshape(64, rows, cols))
    tables = np.frombuffer(quant, dtype=np.uint16).reshape(len(planes), 64).astype(np.int32)
    return RawCoefficients((), tables, tuple(warnings), planes=tuple(arrays), order=order)


@lru_cache(maxsize=1)
def _kernel_bytes() -> bytes:
    """The 2-pixel DCT-domain averaging map ``(8, 16)`` as float32 bytes, for the C reader."""
    return downsample_kernel(2).to(torch.float32).numpy().tobytes()


def decode_jpeg2dct(data: bytes, header: JpegHeader) -> RawCoefficients:
    """Decode with jpeg2dct (4:2:0 and greyscale only: it re-encodes other layouts at quality 100)."""
    if header.sampling_factors not in (((2, 2), (1, 1), (1, 1)),) and header.subsampling != "gray":
        raise JpegUnsupportedError(
            f"backend='jpeg2dct' cannot read {header.subsampling} files without re-encoding them at quality 100; "
            "use backend='libjpeg' or 'python'"
        )
    from jpeg2dct.numpy import loads

    channels = 1 if header.subsampling == "gray" else 3
    try:
        bands = loads(data, normalized=False, channels=channels)
    except Exception as error:  # jpeg2dct raises bare RuntimeError/std::runtime_error messages
        raise JpegError(f"corrupt JPEG (jpeg2dct: {error})") from None
    blocks = tuple(np.asarray(band, dtype=np.int16) for band in bands[:channels])
    for band, comp in zip(blocks, header.frame.components, strict=True):
        if band.shape != (comp.height_in_blocks, comp.width_in_blocks, 64):
            raise JpegError(
                f"jpeg2dct returned a {band.shape} plane, the header says {comp.height_in_blocks}x"
                f"{comp.width_in_blocks} blocks"
            )
    # jpeg2dct does not expose the quantisation tables; without DQT between scans they are the header's.
    tables = np.stack([quant_table(header.tables.quant[c.tq]) for c in header.frame.components])
    # jpeg2dct reports no corrupt-data warnings. Entropy-coded data never holds FF D9, so a file whose
    # EOI marker is missing after the first scan was cut: the one damage freqnets can still see here.
    warnings = () if data.rfind(b"\xff\xd9") > header.first_scan.data_start else ("Premature end of JPEG file",)
    return RawCoefficients(blocks, tables, warnings)


def decode(
    data: bytes,
    header: JpegHeader,
    backend: str,
    order: str = "natural",
    windows: Windows | None = None,
    downsample: tuple[int, int] | None = None,
    strict: bool = False,
    max_bytes: int | None = None,
) -> RawCoefficients:
    """Run the concrete ``backend`` (see :func:`resolve_backend`); ``order`` and ``windows`` are hints for
    ``planes`` (backends returning ``blocks`` return whole grids; the caller cuts the windows).
    ``downsample``, ``strict`` and ``max_bytes`` are for the libjpeg backend only (see :func:`read_libjpeg`)."""
    if backend == "libjpeg":
        return decode_libjpeg(data, header, order, windows, downsample, strict=strict, max_bytes=max_bytes)
    if header.frame.arithmetic:
        raise JpegUnsupportedError(
            f"arithmetic-coded JPEG is read by backend='libjpeg' only, not by backend={backend!r}"
        )
    if backend == "jpeg2dct":
        return decode_jpeg2dct(data, header)
    return decode_python(data, header)
