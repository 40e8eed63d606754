"""The EXIF orientation tag of a JPEG file, read from its APP1 ``Exif`` segment without trusting it.

The header parser (:mod:`._markers`) records where the first APP1 segment starting ``Exif\\0\\0`` holds its
TIFF data; :func:`exif_orientation` reads tag 0x0112 (Orientation) of the TIFF structure's first IFD. The
work is bounded by the segment (at most 65,533 bytes: one pass over at most 5,461 IFD entries), every
offset is checked against it, and nothing is allocated from the file's numbers.

Malformed EXIF (a bad byte order mark, offsets outside the segment, an IFD cut short, an Orientation entry
of the wrong type or count, or a value outside 1..8) is **ignored**, as Pillow's ``exif_transpose`` and
browsers ignore it: the orientation is then 1 (as stored) and the reason is returned, for
:func:`~freqnets.jpeg.read_dct` to record in ``warnings``. It never raises: metadata is not image data.
"""

from __future__ import annotations

import struct

ORIENTATION_TAG = 0x0112
SHORT = 3  # TIFF field type of the Orientation value


def exif_orientation(data: bytes, segment: tuple[int, int] | None) -> tuple[int, str | None]:
    """``(orientation, note)``: the Orientation value 1..8 of the TIFF data ``data[start:end]`` (``segment``),
    and ``None``, or 1 and why the tag was ignored; ``(1, None)`` without EXIF or without the tag."""
    if segment is None:
        return 1, None
    start, end = segment
    tiff = data[start:end]
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1, "EXIF orientation ignored: no TIFF header in the Exif segment"
    order = "<" if tiff[:2] == b"II" else ">"
    magic, ifd = struct.unpack_from(order + "HI", tiff, 2)
    if magic != 42:
        return 1, "EXIF orientation ignored: the TIFF header's magic number is not 42"
    if ifd < 8 or ifd + 2 > len(tiff):
        return 1, "EXIF orientation ignored: the first IFD lies outside the Exif segment"
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    entries = ifd + 2
    if entries + 12 * count > len(tiff):
        return 1, "EXIF orientation ignored: the first IFD runs past the Exif segment"
    for entry in range(entries, entries + 12 * count, 12):
        tag, kind, n = struct.unpack_from(order + "HHI", tiff, entry)
        if tag != ORIENTATION_TAG:
            continue
        if kind != SHORT or n != 1:
            return 1, f"EXIF orientation ignored: the tag has type {kind} and count {n} (expected SHORT, 1)"
        (value,) = struct.unpack_from(order + "H", tiff, entry + 8)
        if not 1 <= value <= 8:
            return 1, f"EXIF orientation ignored: value {value} is not 1..8"
        return value, None
    return 1, None
