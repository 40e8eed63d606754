"""JPEG marker parsing in pure Python: frame, tables and scan headers, validated before any decoding.

Every backend of :func:`freqnets.jpeg.read_dct` runs :func:`parse_header` first (the one exception: files the
C extension's direct path reads, whose header ``_jpegc.parse_direct`` parses with the same refusing checks,
declining the rest to this parser; see docs/jpeg.md, "The direct path"). It walks the
marker segments from SOI to the first SOS (O(header) work, no allocation that depends on the
claimed image size) and rejects, with a typed :class:`~freqnets.jpeg.JpegError`, everything the
readers do not decode: 12-bit or lossless frames, hierarchical files, RGB colour, sizes over
``max_pixels``, bad sampling factors and Huffman tables a scan needs but that were never defined.
Arithmetic-coded frames (SOF9 sequential, SOF10 progressive) are parsed here and decoded by the libjpeg
backend only (the python decoder refuses them); 4-component frames are CMYK or YCCK (:func:`colour_model`).

:func:`read_segment` is the same table parser for the segments between later scans; the pure
Python decoder uses it to follow progressive files scan by scan.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..transforms import zigzag_indices
from .chroma import subsampling_name
from .coefficients import JpegError, JpegTooLargeError, JpegTruncatedError, JpegUnsupportedError

# Pillow's Image.MAX_IMAGE_PIXELS: the default decompression-bomb limit.
DEFAULT_MAX_PIXELS = 89_478_485

SOI, EOI, SOS, DQT, DHT, DRI, DNL, COM = 0xD8, 0xD9, 0xDA, 0xDB, 0xC4, 0xDD, 0xDC, 0xFE
RST0, RST7 = 0xD0, 0xD7
APP0, APP14, APP15 = 0xE0, 0xEE, 0xEF
SOF_HUFFMAN = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
SOF_LOSSLESS = {0xC3}
SOF_HIERARCHICAL = {0xC5, 0xC6, 0xC7}
SOF_ARITHMETIC = {0xC9: "extended", 0xCA: "progressive"}  # the DCT ones libjpeg decodes
SOF_ARITHMETIC_OTHER = {0xCB: "lossless", 0xCD: "hierarchical", 0xCE: "hierarchical", 0xCF: "hierarchical"}
APP1 = 0xE1
DAC = 0xCC  # arithmetic conditioning tables
EXP = 0xDF  # hierarchical expand reference components

# ZIGZAG_TO_NATURAL[k]: the row-major index of the k-th coefficient a JPEG file stores.
ZIGZAG_TO_NATURAL = zigzag_indices(8).numpy()

# libjpeg's limit on the blocks of one MCU of an interleaved scan (JPEG's B.2.3 allows 10).
MAX_BLOCKS_IN_MCU = 10
# Scans one file may hold before it is rejected as a CPU bomb (libjpeg-turbo's tools suggest 500).
MAX_SCANS = 1000


class Component(NamedTuple):
    """One frame component: its id byte, sampling factors, quantisation table and block grid."""

    ident: int
    h: int
    v: int
    tq: int
    width_in_blocks: int  # blocks that cover the component's own pixel area
    height_in_blocks: int


class Frame(NamedTuple):
    """The SOF segment: coding process, precision, size in pixels and the components."""

    process: str  # "baseline", "extended" or "progressive"
    precision: int
    height: int
    width: int
    components: tuple[Component, ...]
    h_max: int
    v_max: int
    mcus_x: int  # MCUs across an interleaved scan
    mcus_y: int
    arithmetic: bool = False  # arithmetic-coded (SOF9/SOF10) instead of Huffman-coded

    @property
    def progressive(self) -> bool:
        return self.process == "progressive"


class HuffmanTable(NamedTuple):
    """A DHT table: ``counts[i]`` codes of length ``i + 1`` and the symbols in code order.

    Only its size is checked here; the decoders check the code space when they build it.
    """

    counts: bytes
    symbols: bytes


class Scan(NamedTuple):
    """An SOS header: component indices (into the frame), their table ids, spectral band and approximation."""

    components: tuple[int, ...]
    dc_tables: tuple[int, ...]
    ac_tables: tuple[int, ...]
    ss: int
    se: int
    ah: int
    al: int
    data_start: int  # offset of the first entropy-coded byte


@dataclass(slots=True)
class TableState:
    """The tables and settings in force at some point of the file (they may change between scans)."""

    quant: dict[int, bytes] = field(default_factory=dict)  # id -> the DQT entry (precision byte + zigzag values)
    dc: dict[int, HuffmanTable] = field(default_factory=dict)
    ac: dict[int, HuffmanTable] = field(default_factory=dict)
    restart_interval: int = 0
    jfif: bool = False
    adobe_transform: int | None = None
    exif: tuple[int, int] | None = None  # (start, end) in the file of the first APP1 "Exif" payload's TIFF data


@dataclass(slots=True)
class JpegHeader:
    """Everything up to the first scan: the frame, the tables in force and the first scan header."""

    frame: Frame
    tables: TableState
    first_scan: Scan
    subsampling: str
    sampling_factors: tuple[tuple[int, int], ...]  # (h, v) per component
    coefficients: int = 0  # coefficients of the MCU-padded planes (check_allocation)
    colour: str = "ycbcr"  # colour_model(): "grayscale", "ycbcr", "cmyk" or "ycck"


def _u16(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


def next_marker(data: bytes, pos: int) -> tuple[int, int]:
    """The marker at ``pos`` (fill bytes ``0xFF`` allowed before it): ``(marker, position after it)``.

    Raises:
        JpegTruncatedError: the data ends before a marker.
        JpegError: ``pos`` is not at a marker.
    """
    n = len(data)
    if pos >= n:
        raise JpegTruncatedError("JPEG data ends before the next marker (truncated file)")
    if data[pos] != 0xFF:
        raise JpegError(f"corrupt JPEG: expected a marker at byte {pos}, found 0x{data[pos]:02X}")
    while pos < n and data[pos] == 0xFF:
        pos += 1
    if pos >= n:
        raise JpegTruncatedError("JPEG data ends inside a marker (truncated file)")
    return data[pos], pos + 1


def segment_payload(data: bytes, pos: int, marker: int) -> tuple[bytes, int]:
    """The payload of the length-prefixed segment whose length field starts at ``pos``, and the end."""
    if pos + 2 > len(data):
        raise JpegTruncatedError(f"JPEG data ends inside the length of marker 0x{marker:02X} (truncated file)")
    length = _u16(data, pos)
    if length < 2:
        raise JpegError(f"corrupt JPEG: marker 0x{marker:02X} has an invalid length {length}")
    end = pos + length
    if end > len(data):
        raise JpegTruncatedError(f"JPEG data ends inside the segment of marker 0x{marker:02X} (truncated file)")
    return data[pos + 2 : end], end


def quant_table(entry: bytes) -> np.ndarray:
    """A DQT entry (precision/id byte, then 64 values in zigzag order) -> ``(64,)`` int32, natural order."""
    raw = np.frombuffer(entry, dtype=">u2" if entry[0] >> 4 else np.uint8, count=64, offset=1)
    table = np.empty(64, dtype=np.int32)
    table[ZIGZAG_TO_NATURAL] = raw
    return table


def _parse_dqt(payload: bytes, tables: TableState) -> None:
    pos, end = 0, len(payload)
    while pos < end:
        pq, tq = payload[pos] >> 4, payload[pos] & 15
        if pq > 1 or tq > 3:
            raise JpegError(f"corrupt JPEG: DQT table precision {pq} / id {tq} (expected 0-1 / 0-3)")
        size = 1 + 64 * (pq + 1)
        if pos + size > end:
            raise JpegError("corrupt JPEG: DQT segment shorter than its tables")
        tables.quant[tq] = payload[pos : pos + size]
        pos += size


def _parse_dht(payload: bytes, tables: TableState) -> None:
    pos, end = 0, len(payload)
    while pos < end:
        if pos + 17 > end:
            raise JpegError("corrupt JPEG: DHT segment shorter than its code counts")
        tc, th = payload[pos] >> 4, payload[pos] & 15
        if tc > 1 or th > 3:
            raise JpegError(f"corrupt JPEG: DHT table class {tc} / id {th} (expected 0-1 / 0-3)")
        counts = payload[pos + 1 : pos + 17]
        total = sum(counts)
        pos += 17
        if total > 256 or pos + total > end:
            raise JpegError(f"corrupt JPEG: DHT table lists {total} symbols, more than the segment holds or 256")
        (tables.ac if tc else tables.dc)[th] = HuffmanTable(counts, payload[pos : pos + total])
        pos += total


# Markers that may not appear between segments (RSTn, SOI, EOI are handled by the callers).
_UNEXPECTED = frozenset([0x00, 0x01, SOI, EOI, *range(RST0, RST7 + 1), *range(0x02, 0xC0)])


def read_segment(data: bytes, marker: int, pos: int, tables: TableState) -> int:
    """Parse one table/misc segment (DQT, DHT, DRI, APPn, COM) at ``pos`` into ``tables``; the end.

    DAC (arithmetic conditioning) segments are skipped: libjpeg reads and checks them itself.

    Raises:
        JpegUnsupportedError: DNL, hierarchical EXP.
        JpegTruncatedError: the segment runs past the end of the data.
        JpegError: any other marker that may not appear here, or a corrupt segment.
    """
    if marker in _UNEXPECTED:
        raise JpegError(f"corrupt JPEG: unexpected marker 0x{marker:02X} at byte {pos - 2}")
    if marker == DNL:
        raise JpegUnsupportedError("JPEG with a DNL marker (height defined after the first scan) is not supported")
    if marker == EXP:
        raise JpegUnsupportedError("hierarchical JPEG (EXP marker) is not supported")
    n = len(data)
    if pos + 2 > n:
        raise JpegTruncatedError(f"JPEG data ends inside the length of marker 0x{marker:02X} (truncated file)")
    length = (data[pos] << 8) | data[pos + 1]
    end = pos + length
    if length < 2:
        raise JpegError(f"corrupt JPEG: marker 0x{marker:02X} has an invalid length {length}")
    if end > n:
        raise JpegTruncatedError(f"JPEG data ends inside the segment of marker 0x{marker:02X} (truncated file)")
    if marker == DHT:
        _parse_dht(data[pos + 2 : end], tables)
    elif marker == DQT:
        _parse_dqt(data[pos + 2 : end], tables)
    elif marker == DRI:
        if length != 4:
            raise JpegError("corrupt JPEG: DRI segment must hold 2 bytes")
        tables.restart_interval = (data[pos + 2] << 8) | data[pos + 3]
    elif marker == APP0:
        if data[pos + 2 : pos + 7] == b"JFIF\x00" and length >= 7:
            tables.jfif = True
    elif marker == APP14 and length >= 14 and data[pos + 2 : pos + 7] == b"Adobe":
        tables.adobe_transform = data[pos + 13]
    elif marker == APP1 and tables.exif is None and length >= 8 and data[pos + 2 : pos + 8] == b"Exif\x00\x00":
        tables.exif = (pos + 8, end)
    return end


def _parse_sof(marker: int, payload: bytes, max_pixels: int | None) -> Frame:
    if len(payload) < 6:
        raise JpegError("corrupt JPEG: SOF segment shorter than 6 bytes")
    precision, height, width, n = payload[0], _u16(payload, 1), _u16(payload, 3), payload[5]
    if precision != 8:
        raise JpegUnsupportedError(f"{precision}-bit JPEG is not supported (only 8-bit samples)")
    if height == 0:
        raise JpegUnsupportedError("JPEG height 0 (defined later by a DNL marker) is not supported")
    if width == 0:
        raise JpegError("corrupt JPEG: image width is 0")
    if max_pixels is not None and width * height > max_pixels:
        raise JpegTooLargeError(
            f"JPEG claims {width}x{height} = {width * height} pixels, more than max_pixels={max_pixels}"
        )
    if n not in (1, 3, 4):
        raise JpegUnsupportedError(f"JPEG with {n} components is not supported (only greyscale, YCbCr, CMYK or YCCK)")
    if len(payload) != 6 + 3 * n:
        raise JpegError(f"corrupt JPEG: SOF segment length {len(payload)} does not match {n} components")
    raw = []
    for i in range(6, 6 + 3 * n, 3):
        ident, hv, tq = payload[i], payload[i + 1], payload[i + 2]
        h, v = hv >> 4, hv & 15
        if not (1 <= h <= 4 and 1 <= v <= 4):
            raise JpegError(f"corrupt JPEG: sampling factors {h}x{v} of component {i // 3 - 2} (each must be 1-4)")
        if tq > 3:
            raise JpegError(f"corrupt JPEG: component {i // 3 - 2} uses quantisation table {tq} (must be 0-3)")
        for other in raw:
            if other[0] == ident:
                raise JpegError(f"corrupt JPEG: duplicate component id {ident}")
        raw.append((ident, h, v, tq))
    h_max = max([r[1] for r in raw])
    v_max = max([r[2] for r in raw])
    components = tuple(
        [
            Component(ident, h, v, tq, -(-width * h // (8 * h_max)), -(-height * v // (8 * v_max)))
            for ident, h, v, tq in raw
        ]
    )
    mcus_x, mcus_y = -(-width // (8 * h_max)), -(-height // (8 * v_max))
    process, arithmetic = (SOF_ARITHMETIC[marker], True) if marker in SOF_ARITHMETIC else (SOF_HUFFMAN[marker], False)
    return Frame(process, precision, height, width, components, h_max, v_max, mcus_x, mcus_y, arithmetic)


def frame_of(fields: tuple) -> Frame:
    """The :class:`Frame` of ``fields`` (``Frame``'s fields in order, its components as tuples of
    :class:`Component`'s fields), as the C extension's header parse returns them (``_jpegc.parse_direct``)."""
    return Frame(*fields[:4], tuple([Component(*c) for c in fields[4]]), *fields[5:])


def check_allocation(frame: Frame, max_pixels: int | None) -> int:
    """Coefficients the decoders allocate (MCU-padded planes); raise when out of proportion to the image."""
    mcus = frame.mcus_x * frame.mcus_y
    total = sum(mcus * c.h * c.v * 64 for c in frame.components)
    # Three full-resolution planes hold 3 coefficients per pixel; MCU padding adds at most a few times
    # that on slivers, so 6 per pixel plus a fixed slack bounds every valid frame.
    limit = 6 * (frame.width * frame.height) + (1 << 22)
    if total > limit or (max_pixels is not None and total > 6 * max_pixels + (1 << 22)):
        raise JpegTooLargeError(f"JPEG frame needs {total} coefficients, out of proportion to its size")
    return total


def parse_scan(payload: bytes, frame: Frame, tables: TableState, data_start: int) -> Scan:
    """Parse and validate an SOS header against the frame and the tables in force."""
    if len(payload) < 1:
        raise JpegError("corrupt JPEG: empty SOS segment")
    n = payload[0]
    if not 1 <= n <= 4 or len(payload) != 4 + 2 * n:
        raise JpegError(f"corrupt JPEG: SOS segment with {n} components and length {len(payload)}")
    ids = [c.ident for c in frame.components]
    indices, dc_ids, ac_ids = [], [], []
    for i in range(n):
        ident, tables_byte = payload[1 + 2 * i], payload[2 + 2 * i]
        if ident not in ids:
            raise JpegError(f"corrupt JPEG: scan names component id {ident}, not in the frame")
        index = ids.index(ident)
        if index in indices:
            raise JpegError(f"corrupt JPEG: scan names component id {ident} twice")
        indices.append(index)
        dc_ids.append(tables_byte >> 4)
        ac_ids.append(tables_byte & 15)
    ss, se, ah, al = payload[1 + 2 * n], payload[2 + 2 * n], payload[3 + 2 * n] >> 4, payload[3 + 2 * n] & 15
    if frame.progressive:
        bad = se > 63 or ss > se or al > 13 or (ss == 0 and se != 0) or (ss > 0 and n != 1)
        if bad or (ah != 0 and al != ah - 1):
            raise JpegError(f"corrupt JPEG: invalid progressive scan Ss={ss} Se={se} Ah={ah} Al={al}, {n} components")
    elif ss != 0 or se != 63 or ah != 0 or al != 0:
        raise JpegError(f"corrupt JPEG: sequential scan with Ss={ss} Se={se} Ah={ah} Al={al} (must be 0, 63, 0, 0)")
    if n > 1 and sum(frame.components[i].h * frame.components[i].v for i in indices) > MAX_BLOCKS_IN_MCU:
        raise JpegError(f"corrupt JPEG: interleaved scan MCU has more than {MAX_BLOCKS_IN_MCU} blocks")
    for index, dc, ac in zip(indices, dc_ids, ac_ids, strict=True):
        comp = frame.components[index]
        if comp.tq not in tables.quant:
            raise JpegError(f"corrupt JPEG: component {index} uses quantisation table {comp.tq}, never defined")
        if frame.arithmetic:
            continue  # conditioning tables have defaults (T.81 F.1.4.4.1.4); libjpeg checks the ids
        needs_dc = ss == 0 and ah == 0  # DC refinement scans carry raw bits only
        needs_ac = ss > 0 or not frame.progressive  # progressive DC scans code no AC coefficients
        if needs_dc and (dc > 3 or dc not in tables.dc):
            raise JpegError(f"corrupt JPEG: scan uses DC Huffman table {dc}, never defined")
        if needs_ac and (ac > 3 or ac not in tables.ac):
            raise JpegError(f"corrupt JPEG: scan uses AC Huffman table {ac}, never defined")
    return Scan(tuple(indices), tuple(dc_ids), tuple(ac_ids), ss, se, ah, al, data_start)


def _check_colour(frame: Frame, tables: TableState) -> None:
    """Reject 3-component files that are RGB, as libjpeg's colour-space guess decides."""
    if len(frame.components) != 3 or tables.jfif:
        return
    if tables.adobe_transform is not None:
        if tables.adobe_transform == 0:
            raise JpegUnsupportedError("RGB JPEG (Adobe transform 0) is not supported (only YCbCr)")
        return
    if tuple(c.ident for c in frame.components) == (ord("R"), ord("G"), ord("B")):
        raise JpegUnsupportedError("RGB JPEG (component ids R, G, B) is not supported (only YCbCr)")


def colour_model(frame: Frame, tables: TableState) -> str:
    """The colour model of a frame, as libjpeg guesses it: ``"grayscale"`` (1 component), ``"ycbcr"`` (3; RGB
    files are refused by the parser), ``"cmyk"`` or ``"ycck"`` (4 components: YCCK when an Adobe APP14 marker
    says transform 2, or any transform code but 0, for which libjpeg assumes YCCK; CMYK otherwise)."""
    n = len(frame.components)
    if n == 1:
        return "grayscale"
    if n == 3:
        return "ycbcr"
    return "ycck" if tables.adobe_transform not in (None, 0) else "cmyk"


def parse_header(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> JpegHeader:
    """Parse and validate everything from SOI to the first scan header.

    Args:
        data: the whole JPEG file.
        max_pixels: reject frames with more pixels (checked on the SOF, before any allocation);
            ``None`` for no limit.

    Returns:
        The frame, the tables in force at the first scan, the first scan and the subsampling name.

    Raises:
        JpegError: not a JPEG, corrupt or truncated headers; ``JpegTooLargeError``,
            ``JpegUnsupportedError`` and ``JpegTruncatedError`` for those reasons.
    """
    if len(data) == 0:
        raise JpegError("empty input: no JPEG data")
    if len(data) < 2 or data[0] != 0xFF or data[1] != SOI:
        raise JpegError(f"not a JPEG file: starts with {bytes(data[:4])!r}, expected the SOI marker FF D8")
    tables = TableState()
    frame: Frame | None = None
    pos, n = 2, len(data)
    while True:
        if pos + 1 < n and data[pos] == 0xFF and data[pos + 1] != 0xFF:
            marker, pos = data[pos + 1], pos + 2
        else:
            marker, pos = next_marker(data, pos)
        if marker in (DQT, DHT) or APP0 <= marker <= APP15 or marker == COM:
            pos = read_segment(data, marker, pos, tables)
        elif marker in SOF_HUFFMAN or marker in SOF_ARITHMETIC:
            if frame is not None:
                raise JpegError("corrupt JPEG: more than one SOF marker")
            payload, pos = segment_payload(data, pos, marker)
            frame = _parse_sof(marker, payload, max_pixels)
            coefficients = check_allocation(frame, max_pixels)
        elif marker in SOF_ARITHMETIC_OTHER:
            kind = SOF_ARITHMETIC_OTHER[marker]
            raise JpegUnsupportedError(f"{kind} arithmetic-coded JPEG (SOF{marker - 0xC0}) is not supported")
        elif marker in SOF_LOSSLESS:
            raise JpegUnsupportedError("lossless JPEG (SOF3) is not supported")
        elif marker in SOF_HIERARCHICAL:
            raise JpegUnsupportedError(f"hierarchical JPEG (SOF{marker - 0xC0}) is not supported")
        elif marker == SOS:
            if frame is None:
                raise JpegError("corrupt JPEG: scan (SOS) before the frame header (SOF)")
            payload, pos = segment_payload(data, pos, marker)
            _check_colour(frame, tables)
            scan = parse_scan(payload, frame, tables, pos)
            factors = tuple([(c.h, c.v) for c in frame.components])
            colour = colour_model(frame, tables)
            return JpegHeader(frame, tables, scan, subsampling_name(factors), factors, coefficients, colour)
        elif marker == EOI:
            raise JpegError("corrupt JPEG: no frame/scan before EOI" if frame is None else "JPEG has no scan")
        else:
            pos = read_segment(data, marker, pos, tables)


def _drop_oldest(entries: dict) -> None:
    """Remove the oldest entry of ``entries`` (insertion order). Safe when threads evict at once: another thread
    may have removed that entry, or changed the dict, between the lookup and the removal."""
    with contextlib.suppress(StopIteration, RuntimeError):
        entries.pop(next(iter(entries)), None)


class HeaderCache:
    """:func:`parse_header` results of recent files, keyed on their exact header bytes.

    :func:`parse_header` reads only ``data[:first_scan.data_start]`` (SOI up to the end of the first
    SOS segment), so a file that starts with exactly the bytes of a header parsed before, under the
    same ``max_pixels``, has exactly that header: the lookup is exact, never a guess. Data sets whose
    files share their headers (same encoder, quality, tables and size, e.g. CIFAR-10) then skip the
    parse. Only successful parses are stored (errors are raised again by every call), only headers
    of at most ``max_header_bytes``, and at most ``max_entries`` of them (oldest evicted first).

    The returned :class:`JpegHeader` is shared between calls: callers must not modify it (the pure
    Python decoder changes its ``tables`` while decoding, so it parses its own).
    """

    def __init__(self, max_entries: int = 64, max_header_bytes: int = 4096, max_shapes: int = 4) -> None:
        self.max_entries, self.max_header_bytes, self.max_shapes = max_entries, max_header_bytes, max_shapes
        self._entries: dict[tuple[bytes, int | None], JpegHeader] = {}
        # (header length, offset of its SOS marker) of recent entries, newest first: where to look.
        self._shapes: tuple[tuple[int, int], ...] = ()

    def parse(self, data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> JpegHeader:
        """:func:`parse_header` ``(data, max_pixels)``, from the cache when ``data``'s header bytes were seen."""
        n = len(data)
        for end, sos in self._shapes:
            if n >= end and data[sos] == 0xFF and data[sos + 1] == SOS:
                header = self._entries.get((data[:end], max_pixels))
                if header is not None:
                    return header
        header = parse_header(data, max_pixels)
        scan = header.first_scan
        end = scan.data_start
        if end <= self.max_header_bytes and self.max_entries > 0:
            sos = end - (6 + 2 * len(scan.components)) - 2  # FF DA, the length field, the payload
            if len(self._entries) >= self.max_entries:
                _drop_oldest(self._entries)
            self._entries[(bytes(data[:end]), max_pixels)] = header
            if (end, sos) not in self._shapes:
                self._shapes = ((end, sos), *self._shapes)[: self.max_shapes]
        return header
