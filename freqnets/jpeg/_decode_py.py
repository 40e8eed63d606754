"""The reference decoder: a JPEG's quantised DCT coefficients in pure Python/NumPy (no inverse DCT).

It follows ITU-T T.81 (the JPEG standard): Huffman decoding of sequential scans (F.2.2) and of
progressive scans with spectral selection and successive approximation (G.1.2: DC first and
refinement, AC first with end-of-band runs, AC refinement), restart intervals, interleaved and
non-interleaved scans and any sampling factors. It is slow (one Python step per Huffman symbol) but
always available and short enough to read; the compiled backend must agree with it bit for bit.

Corrupt or truncated entropy-coded data is handled like libjpeg: the MCU in which the data runs
out is completed with zero bits, the rest of its restart interval stays zero, decoding goes on at
the next restart marker or scan, and the reason is recorded (under ``strict=True`` the caller turns
any such warning into :class:`~freqnets.jpeg.JpegTruncatedError`).
"""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._markers import (
    EOI,
    MAX_SCANS,
    RST0,
    RST7,
    SOS,
    ZIGZAG_TO_NATURAL,
    Frame,
    HuffmanTable,
    JpegHeader,
    Scan,
    TableState,
    next_marker,
    parse_scan,
    quant_table,
    read_segment,
    segment_payload,
)
from .coefficients import JpegError, JpegTooLargeError, JpegTruncatedError, JpegUnsupportedError

# A marker inside entropy-coded data: 0xFF (fill bytes allowed) then a byte that is neither 0 nor 0xFF.
_MARKER = re.compile(rb"\xff+[^\x00\xff]")
_STUFFED = re.compile(rb"\xff+\x00")
_NATURAL = tuple(int(i) for i in ZIGZAG_TO_NATURAL)


@dataclass(frozen=True)
class RawCoefficients:
    """What every backend decodes: quantised coefficients per component and the tables used.

    Attributes:
        blocks: per component, ``(height_in_blocks, width_in_blocks, 64)`` int16, natural order
            (empty when a backend returns ``planes`` instead).
        quant_tables: ``(n_components, 64)`` int32, natural order (the table latched at each
            component's first scan, as libjpeg does).
        warnings: the corrupt-data conditions met, in order (empty for a valid file).
        planes: per component, the finished ``(64, height_in_blocks, width_in_blocks)`` float32
            dequantised planes in ``order``, when the backend computes them itself.
        order: the channel order of ``planes``.
    """

    blocks: tuple[np.ndarray, ...]
    quant_tables: np.ndarray
    warnings: tuple[str, ...]
    planes: tuple[np.ndarray, ...] | None = None
    order: str = "natural"


class _Corrupt(Exception):
    """Corrupt entropy-coded data inside one restart interval (internal)."""


@lru_cache(maxsize=64)
def _lookup(table: HuffmanTable) -> list[int]:
    """A 16-bit lookahead table: ``(code length << 8) | symbol`` for every 16-bit window, 0 if invalid.

    Raises:
        JpegError: the code counts overflow the code space (T.81 C: canonical codes).
    """
    code = 0
    for length, count in enumerate(table.counts, start=1):
        code += count
        if code > (1 << length):
            raise JpegError("corrupt JPEG: DHT code counts exceed the code space")
        code <<= 1
    lut = [0] * 65536
    code, k = 0, 0
    for length, count in enumerate(table.counts, start=1):
        span = 1 << (16 - length)
        for _ in range(count):
            start = code * span
            lut[start : start + span] = [(length << 8) | table.symbols[k]] * span
            code += 1
            k += 1
        code <<= 1
    return lut


class _BitReader:
    """MSB-first bits of one unstuffed entropy-coded segment; past its end it reads zero bits."""

    __slots__ = ("acc", "data", "nbits", "pad", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.acc, self.nbits, self.pad = data, 0, 0, 0, 0

    def _fill(self, need: int) -> None:
        data, pos, acc, nbits = self.data, self.pos, self.acc, self.nbits
        end = len(data)
        while nbits < need:
            if pos < end:
                acc = (acc << 8) | data[pos]
                pos += 1
            else:
                acc <<= 8
                self.pad += 8
            nbits += 8
        self.pos, self.acc, self.nbits = pos, acc, nbits

    def bits(self, n: int) -> int:
        if n == 0:
            return 0
        if self.nbits < n:
            self._fill(n)
        self.nbits -= n
        value = self.acc >> self.nbits
        self.acc &= (1 << self.nbits) - 1
        return value

    def huffman(self, lut: list[int]) -> int:
        if self.nbits < 16:
            self._fill(16)
        entry = lut[self.acc >> (self.nbits - 16)]
        if not entry:
            raise _Corrupt("Corrupt JPEG data: bad Huffman code")
        self.nbits -= entry >> 8
        self.acc &= (1 << self.nbits) - 1
        return entry & 0xFF

    def receive_extend(self, s: int) -> int:
        """``s`` bits as a signed magnitude-category value (T.81 F.2.2.1, EXTEND)."""
        if s == 0:
            return 0
        value = self.bits(s)
        return value if value >= 1 << (s - 1) else value - (1 << s) + 1

    def overrun(self) -> bool:
        """True once bits past the end of the segment were consumed."""
        return self.nbits < self.pad

    def extraneous(self) -> bool:
        """True when whole bytes are left unread (beyond the final partial byte)."""
        return (len(self.data) - self.pos) * 8 + self.nbits - self.pad >= 8


def _entropy_segments(data: bytes, start: int) -> tuple[list[tuple[bytes, int | None]], int]:
    """Split a scan's entropy-coded data at restart markers.

    Returns:
        ``[(unstuffed bytes, RST number following it or None), ...]`` and the offset of the marker
        that ends the scan (``len(data)`` when the file ends first).
    """
    segments = []
    pos = start
    while True:
        match = _MARKER.search(data, pos)
        end = len(data) if match is None else match.start()
        raw = data[pos:end]
        segment = _STUFFED.sub(b"\xff", raw) if b"\xff" in raw else bytes(raw)
        if match is None:
            segments.append((segment, None))
            return segments, end
        marker = data[match.end() - 1]
        if RST0 <= marker <= RST7:
            segments.append((segment, marker - RST0))
            pos = match.end()
        else:
            segments.append((segment, None))
            return segments, end


class _ScanDecoder:
    """Decodes one scan into the padded coefficient arrays of the components it covers."""

    def __init__(self, frame: Frame, scan: Scan, tables: TableState, coefs: list[array], cols: list[int]):
        self.frame, self.scan, self.coefs, self.cols = frame, scan, coefs, cols
        self.dc_luts = [_lookup(tables.dc[t]) if self._needs_dc() else None for t in scan.dc_tables]
        self.ac_luts = [_lookup(tables.ac[t]) if self._needs_ac() else None for t in scan.ac_tables]
        if self._needs_dc() and any(max(tables.dc[t].symbols, default=0) > 15 for t in scan.dc_tables):
            raise JpegError("corrupt JPEG: DC Huffman table with a symbol over 15")
        self.pred = [0] * len(scan.components)
        self.eobrun = 0
        if not frame.progressive:
            self.decode_block = self._sequential
        elif scan.ss == 0:
            self.decode_block = self._dc_first if scan.ah == 0 else self._dc_refine
        else:
            self.decode_block = self._ac_first if scan.ah == 0 else self._ac_refine

    def _needs_dc(self) -> bool:
        return self.scan.ss == 0 and self.scan.ah == 0

    def _needs_ac(self) -> bool:
        return self.scan.se > 0

    def mcu_count(self) -> int:
        scan, frame = self.scan, self.frame
        if len(scan.components) == 1:
            comp = frame.components[scan.components[0]]
            return comp.width_in_blocks * comp.height_in_blocks
        return frame.mcus_x * frame.mcus_y

    def mcu_blocks(self, mcu: int) -> list[tuple[int, int]]:
        """``[(slot in scan, offset of the block's coefficient 0), ...]`` for MCU number ``mcu``."""
        scan, frame = self.scan, self.frame
        if len(scan.components) == 1:
            ci = scan.components[0]
            comp = frame.components[ci]
            row, col = divmod(mcu, comp.width_in_blocks)
            return [(0, (row * self.cols[ci] + col) * 64)]
        my, mx = divmod(mcu, frame.mcus_x)
        out = []
        for slot, ci in enumerate(scan.components):
            comp = frame.components[ci]
            for yy in range(comp.v):
                base_row = (my * comp.v + yy) * self.cols[ci]
                out.extend((slot, (base_row + mx * comp.h + xx) * 64) for xx in range(comp.h))
        return out

    def restart(self) -> None:
        self.pred = [0] * len(self.scan.components)
        self.eobrun = 0

    # One block each; ``coef`` is the component's flat array and ``base`` the block's offset.
    def _sequential(self, bits: _BitReader, slot: int, coef: array, base: int) -> None:
        s = bits.huffman(self.dc_luts[slot])
        self.pred[slot] += bits.receive_extend(s)
        coef[base] = self.pred[slot]
        lut = self.ac_luts[slot]
        k = 1
        while k < 64:
            rs = bits.huffman(lut)
            r, s = rs >> 4, rs & 15
            if s:
                k += r
                if k > 63:
                    raise _Corrupt("Corrupt JPEG data: AC coefficient index past 63")
                coef[base + _NATURAL[k]] = bits.receive_extend(s)
            elif r != 15:
                break
            else:
                k += 15
            k += 1

    def _dc_first(self, bits: _BitReader, slot: int, coef: array, base: int) -> None:
        s = bits.huffman(self.dc_luts[slot])
        self.pred[slot] += bits.receive_extend(s)
        coef[base] = self.pred[slot] * (1 << self.scan.al)

    def _dc_refine(self, bits: _BitReader, slot: int, coef: array, base: int) -> None:
        if bits.bits(1):
            coef[base] |= 1 << self.scan.al

    def _ac_first(self, bits: _BitReader, slot: int, coef: array, base: int) -> None:
        if self.eobrun > 0:
            self.eobrun -= 1
            return
        scan, lut = self.scan, self.ac_luts[slot]
        k = scan.ss
        while k <= scan.se:
            rs = bits.huffman(lut)
            r, s = rs >> 4, rs & 15
            if s:
                k += r
                if k > scan.se:
                    raise _Corrupt("Corrupt JPEG data: AC coefficient index past the spectral band")
                coef[base + _NATURAL[k]] = bits.receive_extend(s) * (1 << scan.al)
            elif r == 15:
                k += 15
            else:
                self.eobrun = (1 << r) + bits.bits(r) - 1
                break
            k += 1

    def _ac_refine(self, bits: _BitReader, slot: int, coef: array, base: int) -> None:
        scan = self.scan
        p1, m1 = 1 << scan.al, -1 << scan.al
        k, se = scan.ss, scan.se
        if self.eobrun == 0:
            lut = self.ac_luts[slot]
            while k <= se:
                rs = bits.huffman(lut)
                r, s = rs >> 4, rs & 15
                if s:
                    if s != 1:
                        raise _Corrupt("Corrupt JPEG data: AC refinement value of size other than 1")
                    s = p1 if bits.bits(1) else m1
                elif r != 15:
                    self.eobrun = (1 << r) + bits.bits(r)
                    break
                # Skip r zero-history coefficients, refining the nonzero ones passed on the way.
                while k <= se:
                    index = base + _NATURAL[k]
                    value = coef[index]
                    if value:
                        if bits.bits(1) and not value & p1:
                            coef[index] = value + (p1 if value >= 0 else m1)
                    else:
                        r -= 1
                        if r < 0:
                            break
                    k += 1
                if s:
                    if k > se:
                        raise _Corrupt("Corrupt JPEG data: AC refinement index past the spectral band")
                    coef[base + _NATURAL[k]] = s
                k += 1
        if self.eobrun > 0:
            # Inside an end-of-band run: only correction bits for the already-nonzero coefficients.
            while k <= se:
                index = base + _NATURAL[k]
                value = coef[index]
                if value and bits.bits(1) and not value & p1:
                    coef[index] = value + (p1 if value >= 0 else m1)
                k += 1
            self.eobrun -= 1


def _check_progression(scan: Scan, coef_bits: list[list[int]], warnings: list[str]) -> None:
    """Record libjpeg's "bogus progression" condition (a scan that does not follow the previous ones)."""
    for ci in scan.components:
        bits = coef_bits[ci]
        if scan.ss > 0 and bits[0] < 0:
            warnings.append(f"Corrupt JPEG data: AC scan of component {ci} before its DC scan")
        for k in range(scan.ss, scan.se + 1):
            expected = max(bits[k], 0)
            if scan.ah != expected:
                warnings.append(f"Corrupt JPEG data: inconsistent progression sequence for component {ci}")
                break
        for k in range(scan.ss, scan.se + 1):
            bits[k] = scan.al


def _decode_scan(decoder: _ScanDecoder, data: bytes, restart_interval: int, warnings: list[str]) -> int:
    """Decode one scan's entropy-coded data; record corrupt-data reasons; the offset of the next marker."""
    scan = decoder.scan
    segments, end = _entropy_segments(data, scan.data_start)
    total = decoder.mcu_count()
    interval = restart_interval if restart_interval > 0 else total
    n_intervals = max(1, -(-total // interval))
    if len(segments) > n_intervals:
        warnings.append("Corrupt JPEG data: more restart markers than restart intervals (extraneous data)")
    for index in range(n_intervals):
        if index >= len(segments):
            warnings.append("Corrupt JPEG data: premature end of data segment (missing restart interval)")
            break
        segment, rst = segments[index]
        if index + 1 < n_intervals and rst is not None and rst != index % 8:
            warnings.append(f"Corrupt JPEG data: restart marker {rst} where {index % 8} was expected")
        decoder.restart()
        bits = _BitReader(segment)
        try:
            for mcu in range(index * interval, min(total, (index + 1) * interval)):
                for slot, base in decoder.mcu_blocks(mcu):
                    decoder.decode_block(bits, slot, decoder.coefs[scan.components[slot]], base)
                if bits.overrun():
                    raise _Corrupt("Corrupt JPEG data: premature end of data segment")
        except _Corrupt as reason:
            warnings.append(str(reason))
            continue
        if bits.extraneous():
            warnings.append("Corrupt JPEG data: extraneous bytes before marker")
    return end


def decode(data: bytes, header: JpegHeader) -> RawCoefficients:
    """Decode every scan of ``data`` (already parsed up to the first scan by ``parse_header``).

    Args:
        data: the whole JPEG file.
        header: ``parse_header(data, ...)``.

    Returns:
        The quantised coefficients (cropped to each component's block grid) and the warnings.

    Raises:
        JpegUnsupportedError: an unsupported marker after the first scan (corrupt segments after
            the first scan are recorded as warnings instead, keeping what was decoded).
    """
    frame, tables = header.frame, header.tables
    n = len(frame.components)
    cols = [frame.mcus_x * c.h for c in frame.components]
    rows = [frame.mcus_y * c.v for c in frame.components]
    # zero-filled int32 arrays allocated in place (array("i", bytes(n)) would hold a second copy while building)
    coefs = [array("i", [0]) * (64 * r * c) for r, c in zip(rows, cols, strict=True)]
    latched: list[np.ndarray | None] = [None] * n
    coef_bits = [[-1] * 64 for _ in range(n)]
    warnings: list[str] = []
    scan = header.first_scan
    # libjpeg's rule: a sequential file whose first scan holds every component has no other scan.
    single_scan = not frame.progressive and len(scan.components) == n
    scans = 0
    while True:
        scans += 1
        if scans > MAX_SCANS:
            raise JpegError(f"JPEG has more than {MAX_SCANS} scans")
        for ci in scan.components:
            if latched[ci] is None:
                latched[ci] = quant_table(tables.quant[frame.components[ci].tq])
        if frame.progressive:
            _check_progression(scan, coef_bits, warnings)
        try:
            decoder = _ScanDecoder(frame, scan, tables, coefs, cols)
        except JpegError as error:  # a bad table for a later scan: keep what the earlier scans gave
            if scan is header.first_scan:
                raise
            warnings.append(f"Corrupt JPEG data: {error}")
            break
        pos = _decode_scan(decoder, data, tables.restart_interval, warnings)
        scan = None
        try:
            while scan is None:
                marker, pos = next_marker(data, pos)
                if marker == EOI:
                    break
                if marker == SOS:
                    if single_scan:
                        raise JpegError("corrupt JPEG: second scan in a sequential JPEG whose first had all components")
                    payload, pos = segment_payload(data, pos, marker)
                    scan = parse_scan(payload, frame, tables, pos)
                else:
                    pos = read_segment(data, marker, pos, tables)
        except JpegTruncatedError:
            warnings.append("Premature end of JPEG file")
            scan = None
        except (JpegUnsupportedError, JpegTooLargeError):
            raise
        except JpegError as error:  # a corrupt segment after some scans: keep what was decoded
            warnings.append(f"Corrupt JPEG data: {error}")
            scan = None
        if scan is None:
            break
    quant = np.stack([
        latched[i] if latched[i] is not None else quant_table(tables.quant.get(c.tq, bytes(65)))
        for i, c in enumerate(frame.components)
    ]).astype(np.int32)
    blocks = tuple(
        np.frombuffer(coef, dtype=np.int32).reshape(r, c, 64)[: comp.height_in_blocks, : comp.width_in_blocks]
        .astype(np.int16)
        for coef, r, c, comp in zip(coefs, rows, cols, frame.components, strict=True)
    )
    return RawCoefficients(blocks, quant, tuple(warnings))
