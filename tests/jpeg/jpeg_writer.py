"""A minimal baseline JPEG *entropy encoder* for tests: known quantised coefficients -> JPEG bytes.

Independent of freqnets' readers: it writes T.81 baseline files (SOF0, Huffman, one table pair)
straight from integer coefficients, so a reader must give back exactly those coefficients, with
no IDCT rounding in the way. It covers what Pillow cannot write: non-interleaved scans, any
sampling factors (4:4:0, 4:1:1, ...), restart intervals of any length.

The Huffman tables are deliberately simple and valid: every DC category 0-11 gets a 4-bit code
and every AC run/size symbol an 8-bit code (canonical codes never use the all-ones code).
"""

from __future__ import annotations

import struct

import numpy as np

ZIGZAG = np.array(
    [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
     28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
     54, 47, 55, 62, 63]
)  # fmt: skip  # T.81 Figure A.6: natural index of the k-th zigzag coefficient

DC_SYMBOLS = list(range(12))
AC_SYMBOLS = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)]


def _category(value: int) -> int:
    return int(abs(value)).bit_length()


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.n += length
        while self.n >= 8:
            self.n -= 8
            byte = (self.acc >> self.n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)  # byte stuffing
        self.acc &= (1 << self.n) - 1

    def flush(self) -> bytes:
        if self.n:
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1 bits
        data = bytes(self.out)
        self.out = bytearray()
        return data


def _write_value(bits: _BitWriter, value: int, size: int) -> None:
    if size:
        bits.write(value if value >= 0 else value + (1 << size) - 1, size)


def _encode_block(bits: _BitWriter, block: np.ndarray, pred: int) -> int:
    zz = [int(v) for v in block[ZIGZAG]]
    diff = zz[0] - pred
    size = _category(diff)
    bits.write(DC_SYMBOLS.index(size), 4)
    _write_value(bits, diff, size)
    run = 0
    last = max((k for k in range(1, 64) if zz[k]), default=0)
    for k in range(1, last + 1):
        if zz[k] == 0:
            run += 1
            continue
        while run >= 16:
            bits.write(AC_SYMBOLS.index(0xF0), 8)
            run -= 16
        size = _category(zz[k])
        bits.write(AC_SYMBOLS.index((run << 4) | size), 8)
        _write_value(bits, zz[k], size)
        run = 0
    if last < 63:
        bits.write(AC_SYMBOLS.index(0x00), 8)  # EOB
    return zz[0]


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _dht(table_class: int, symbols: list[int], length: int) -> bytes:
    counts = [0] * 16
    counts[length - 1] = len(symbols)
    return bytes([(table_class << 4) | 0]) + bytes(counts) + bytes(symbols)


def encode_baseline(
    planes: list[np.ndarray],
    factors: list[tuple[int, int]],
    size: tuple[int, int],
    quant: np.ndarray,
    *,
    interleaved: bool = True,
    restart_interval: int = 0,
    redefine: dict[int, np.ndarray] | None = None,
) -> bytes:
    """Baseline JPEG holding exactly the given quantised coefficients.

    Args:
        planes: per component, ``(rows, cols, 64)`` ints in natural order covering at least the
            MCU-padded block grid (``mcus_y * v`` x ``mcus_x * h``); |value| < 1024, DC diffs < 2048.
        factors: ``(h, v)`` sampling factors per component.
        size: ``(height, width)`` in pixels.
        quant: ``(n_components, 64)`` table values (1-255) in natural order, one table per component.
        interleaved: one scan for all components (else one scan per component).
        restart_interval: MCUs between restart markers (0: none).
        redefine: ``{table id: new table}`` written (DQT) after the first scan; a component whose
            first scan comes later must be dequantised with the new table (T.81 B.2.4.1).
    """
    height, width = size
    n = len(planes)
    h_max, v_max = max(f[0] for f in factors), max(f[1] for f in factors)
    mcus_x, mcus_y = -(-width // (8 * h_max)), -(-height // (8 * v_max))
    out = bytearray(b"\xff\xd8")
    for i in range(n):
        out += _segment(0xDB, bytes([i]) + bytes(int(q) for q in np.asarray(quant[i])[ZIGZAG]))
    sof = struct.pack(">BHHB", 8, height, width, n)
    for i, (h, v) in enumerate(factors):
        sof += bytes([i + 1, (h << 4) | v, i])
    out += _segment(0xC0, sof)
    out += _segment(0xC4, _dht(0, DC_SYMBOLS, 4) + _dht(1, AC_SYMBOLS, 8))
    if restart_interval:
        out += _segment(0xDD, struct.pack(">H", restart_interval))
    scans = [list(range(n))] if interleaved else [[i] for i in range(n)]
    for number, scan in enumerate(scans):
        if number == 1 and redefine:
            for table_id, table in redefine.items():
                out += _segment(0xDB, bytes([table_id]) + bytes(int(q) for q in np.asarray(table)[ZIGZAG]))
        sos = bytes([len(scan)]) + b"".join(bytes([i + 1, 0x00]) for i in scan) + bytes([0, 63, 0])
        out += _segment(0xDA, sos)
        if len(scan) == 1:
            (ci,) = scan
            h, v = factors[ci]
            bx, by = -(-width * h // (8 * h_max)), -(-height * v // (8 * v_max))
            mcus = [[(ci, r, c)] for r in range(by) for c in range(bx)]
        else:
            mcus = [
                [(ci, my * factors[ci][1] + y, mx * factors[ci][0] + x)
                 for ci in scan for y in range(factors[ci][1]) for x in range(factors[ci][0])]
                for my in range(mcus_y) for mx in range(mcus_x)
            ]  # fmt: skip
        bits = _BitWriter()
        pred = [0] * n
        for index, mcu in enumerate(mcus):
            if restart_interval and index and index % restart_interval == 0:
                out += bits.flush() + bytes([0xFF, 0xD0 + (index // restart_interval - 1) % 8])
                pred = [0] * n
            for ci, r, c in mcu:
                pred[ci] = _encode_block(bits, planes[ci][r, c], pred[ci])
        out += bits.flush()
    out += b"\xff\xd9"
    return bytes(out)


def random_coefficients(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Sparse JPEG-like quantised coefficients ``(rows, cols, 64)``: big DC, decaying AC, zero runs."""
    frequency = np.add.outer(np.arange(8), np.arange(8)).reshape(64)
    scale = 60.0 / (1 + frequency) ** 1.5
    values = np.rint(rng.normal(size=(rows, cols, 64)) * scale).astype(np.int64)
    values[rng.random((rows, cols, 64)) < 0.5] = 0
    values[..., 0] = rng.integers(-1000, 1000, size=(rows, cols))
    values[..., 63] = np.where(rng.random((rows, cols)) < 0.2, rng.integers(-1000, 1000, size=(rows, cols)), 0)
    return values
