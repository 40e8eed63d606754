"""What one read may cost, known from the header before anything is allocated.

A JPEG header states the frame's size; a hostile file states a large one and carries almost no
data. Every read therefore checks, before it allocates or decodes:

* **Bytes** (:func:`read_bytes_needed`): the float32 planes :func:`~freqnets.jpeg.read_dct` returns
  plus the decoder's working arrays (libjpeg's int16 coefficient arrays; the python decoder's int32
  arrays and int16 copies; jpeg2dct's), at most ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`).
* **Data for the first scan** (:func:`scan_data_short`): every block of the first scan costs at
  least one bit (a DC code; two in a sequential scan: DC and an AC code), so a file with fewer bits
  of scan data than that cannot be complete. ``strict=True`` rejects it as truncated before
  allocating; ``strict=False`` still reads it (the missing part is zero) but within at most
  :data:`SHORT_DATA_MAX_BYTES`, so a file of a few kilobytes never costs more than that.
  Arithmetic-coded scans have no such bound (an adaptive binary decision may cost far less than a
  bit: a flat 4096x4096 image takes about a kilobyte), so they are never refused as short; instead a
  file with less than :data:`ARITHMETIC_SPARSE_BITS` bits of scan data per block of its first scan
  is read (``strict`` or not) within :data:`SHORT_DATA_MAX_BYTES` too (:func:`arithmetic_sparse`):
  flat images up to about 40 megapixels still read, and a few kilobytes never cost more than that.
* **Work** (:func:`block_decodes`): scans x blocks (the scans counted by their SOS markers, which
  entropy-coded data cannot contain), bounded per backend in proportion to the file's size plus a
  fixed allowance, so that end-of-band runs (one code covering 32,767 blocks) in many scans do not
  keep a decoder busy for seconds on a small file.

All limits raise :class:`~freqnets.jpeg.JpegTooLargeError` naming the figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .coefficients import JpegTooLargeError, JpegTruncatedError

if TYPE_CHECKING:
    from ._markers import JpegHeader
    from .chroma import Windows

#: Default ``max_bytes`` of :func:`~freqnets.jpeg.read_dct`: 1 GiB, enough for every 4:2:0 frame of
#: Pillow's default pixel limit (89.5 MP: 0.54 GB of float32 planes, 0.27 GB of libjpeg's arrays).
DEFAULT_MAX_BYTES = 1 << 30
#: The most a read of a file whose scan data is too short for its frame may cost (``strict=False``).
SHORT_DATA_MAX_BYTES = 256 << 20
#: Bits of scan data per block below which an arithmetic-coded file is read within SHORT_DATA_MAX_BYTES
#: (photos take tens of bits per block; only near-flat images come below it).
ARITHMETIC_SPARSE_BITS = 1 / 8
# libjpeg's own working memory besides the coefficient arrays (Huffman tables, buffers; the C
# extension caps libjpeg at the arrays plus this)
LIBJPEG_WORKSPACE = 16 << 20
# the python decoder's Huffman lookup tables (512 kB each, up to 8 in a file) and Python objects
PYTHON_WORKSPACE = 4 << 20
# Block decodes (scans x blocks) allowed per byte of the file, and a fixed allowance, per backend:
# the python decoder visits about a million blocks a second, libjpeg about a hundred times more.
# A legitimate file codes each block's DC in at least one bit, so these allow 16 (python) and
# 512 (C) scans per block of such a file.
WORK_PER_BYTE = {"python": 16 * 8, "libjpeg": 512 * 8, "jpeg2dct": 512 * 8}
WORK_ALLOWANCE = {"python": 1 << 18, "libjpeg": 1 << 26, "jpeg2dct": 1 << 26}


def output_coefficients(header: JpegHeader, windows: Windows | None) -> int:
    """Coefficients of the planes a read returns (the windows', or the components' whole grids)."""
    if windows is not None:
        return 64 * sum(rows * cols for _, _, rows, cols in windows)
    return 64 * sum(c.height_in_blocks * c.width_in_blocks for c in header.frame.components)


def read_bytes_needed(header: JpegHeader, backend: str, windows: Windows | None = None, file_size: int = 0) -> int:
    """Peak bytes a read of ``header``'s frame allocates with ``backend``: planes plus working arrays.

    ``header.coefficients`` counts the MCU-padded arrays the decoders hold while decoding; ``file_size``:
    the file's length (the python decoder holds unstuffed copies of its scan data).
    """
    padded, out = header.coefficients, output_coefficients(header, windows)
    if backend == "libjpeg":
        return libjpeg_bytes_needed(padded, out)
    if backend == "python":  # int32 arrays while decoding, int16 blocks, float32 planes, scan data, tables
        return 4 * padded + 2 * out + 4 * out + 2 * file_size + PYTHON_WORKSPACE
    # jpeg2dct: libjpeg's int16 arrays, its int16 output, our int16 copy, float32 planes
    return 2 * padded + 2 * out + 2 * out + 4 * out + LIBJPEG_WORKSPACE


def libjpeg_bytes_needed(padded: int, out: int) -> int:
    """:func:`read_bytes_needed` of the libjpeg backend from the counts: ``padded`` coefficients of the MCU-padded
    arrays (``JpegHeader.coefficients``), ``out`` of the planes returned (:func:`output_coefficients`)."""
    return 2 * padded + 4 * out + LIBJPEG_WORKSPACE  # int16 arrays inside libjpeg, float32 planes written by C


def scan_data_short(data: bytes, header: JpegHeader) -> tuple[int, int] | None:
    """``(bits needed, bits held)`` when the first scan cannot fit in the rest of the file, else ``None``.

    The first scan codes every block of its components (the MCU-padded ones too when interleaved;
    counted without them here, a lower bound) with at least one Huffman code for the DC value and,
    in a sequential scan, one for the AC values (an end-of-block code at the least). Progressive
    scans of AC bands can code a run of 32,767 empty blocks in one code: no bound from those. Nor from
    arithmetic-coded data: an adaptive binary decision may cost far less than a bit, any short scan may be whole.
    """
    scan, frame = header.first_scan, header.frame
    if frame.arithmetic or (frame.progressive and (scan.ss > 0 or scan.ah > 0)):
        return None
    blocks = sum(frame.components[i].height_in_blocks * frame.components[i].width_in_blocks for i in scan.components)
    needed = blocks * (1 if frame.progressive else 2)
    held = 8 * max(0, len(data) - scan.data_start)
    return (needed, held) if held < needed else None


def arithmetic_sparse(data: bytes, header: JpegHeader) -> bool:
    """True for an arithmetic-coded file with less than :data:`ARITHMETIC_SPARSE_BITS` bits of scan data (the
    rest of the file) per block of its first scan: it may be a few bytes claiming a large frame."""
    frame, scan = header.frame, header.first_scan
    if not frame.arithmetic:
        return False
    blocks = sum(frame.components[i].height_in_blocks * frame.components[i].width_in_blocks for i in scan.components)
    return 8 * max(0, len(data) - scan.data_start) < blocks * ARITHMETIC_SPARSE_BITS


def block_decodes(data: bytes, header: JpegHeader) -> int:
    """Scans x blocks: an upper bound on the blocks the decoders visit (SOS markers counted in ``data``)."""
    # the first scan, and each SOS marker after it (scan data holds no FF DA; metadata before it may)
    scans = 1 + data.count(b"\xff\xda", header.first_scan.data_start)
    return scans * (header.coefficients // 64)


def check_read(data: bytes, header: JpegHeader, backend: str, strict: bool, max_bytes: int | None,
               windows: Windows | None = None) -> None:  # fmt: skip
    """Raise before a read that would exceed its budget (module docstring).

    Raises:
        JpegTruncatedError: ``strict`` and the scan data is too short for the first scan.
        JpegTooLargeError: the read would need more than ``max_bytes`` (or :data:`SHORT_DATA_MAX_BYTES`
            for short data), or more block decodes than ``backend`` is allowed for a file of this size.
    """
    frame = header.frame
    limit, reason = max_bytes, f"max_bytes={max_bytes}"
    short = scan_data_short(data, header)
    if short is not None:
        needed_bits, held_bits = short
        if strict:
            raise JpegTruncatedError(
                f"truncated JPEG: its first scan codes blocks needing at least {needed_bits} bits, the file holds "
                f"{held_bits} bits after the scan header ({frame.width}x{frame.height} claimed)"
            )
        if limit is None or limit > SHORT_DATA_MAX_BYTES:
            limit, reason = SHORT_DATA_MAX_BYTES, f"{SHORT_DATA_MAX_BYTES} for a file too short for its frame"
    elif arithmetic_sparse(data, header) and (limit is None or limit > SHORT_DATA_MAX_BYTES):
        limit, reason = SHORT_DATA_MAX_BYTES, f"{SHORT_DATA_MAX_BYTES} for an arithmetic-coded file this short"
    if limit is not None:
        # only the libjpeg backend lays out just the windows; the others decode whole planes and cut
        needed = read_bytes_needed(header, backend, windows if backend == "libjpeg" else None, len(data))
        if needed > limit:
            raise JpegTooLargeError(
                f"reading this {frame.width}x{frame.height} JPEG with backend={backend!r} needs {needed} bytes, "
                f"more than {reason}"
            )
    work = block_decodes(data, header)
    allowed = WORK_ALLOWANCE[backend] + WORK_PER_BYTE[backend] * len(data)
    if work > allowed:
        raise JpegTooLargeError(
            f"JPEG of {len(data)} bytes asks for {work} block decodes (scans x blocks), more than backend="
            f"{backend!r} allows for its size ({allowed})"
        )
