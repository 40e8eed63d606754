"""A seeded generator of mutated JPEG files for the fuzz tests (test-side marker walk, no freqnets code).

Each mutation takes a valid seed file and damages it the way a hostile or broken file would:
bit flips, truncation at (and around) every marker, huge and zero frame sizes, bad segment
lengths, bad quantisation and Huffman tables, bad sampling factors, bad scan parameters, many
scans, and marker bytes inside the entropy-coded data. ``mutations(seed, rng, n)`` returns
``(kind, bytes)`` pairs; the same ``rng`` seed gives the same files.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Callable

import numpy as np
from PIL import Image


def pillow_jpeg(size: tuple[int, int], mode: str = "RGB", seed: int = 0, **save) -> bytes:
    """A JPEG of a smooth image with noise, ``size = (height, width)``, written by Pillow (libjpeg)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size[0], : size[1]]
    pixels = (rng.integers(0, 64, (*size, 3)) + ((xx * 3 + yy * 2) % 192)[..., None]).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", **{"quality": 75, **save})
    return buffer.getvalue()


def seeds() -> dict[str, bytes]:
    """Small valid files of every structure the decoders handle."""
    return {
        "420-restart": pillow_jpeg((24, 40), restart_marker_blocks=2),
        "444-progressive": pillow_jpeg((24, 40), progressive=True, subsampling=0),
        "420-progressive": pillow_jpeg((32, 48), progressive=True),
        "422-optimized": pillow_jpeg((16, 40), subsampling=1, optimize=True),
        "gray": pillow_jpeg((17, 9), "L"),
        "gray-progressive": pillow_jpeg((24, 16), "L", progressive=True),
        "cmyk": pillow_jpeg((16, 24), "CMYK"),
        "exif-orientation-6": pillow_jpeg((24, 40), exif=_exif_orientation(6)),
        **_arithmetic_seeds(),
    }


def _exif_orientation(value: int) -> bytes:
    """An APP1 Exif payload whose first IFD holds one entry: Orientation (SHORT, 1) = ``value``."""
    return b"Exif\x00\x00II" + struct.pack("<HIHHHIHHI", 42, 8, 1, 0x0112, 3, 1, value, 0, 0)


def _arithmetic_seeds() -> dict[str, bytes]:
    """Arithmetic-coded twins (libjpeg's re-encoding, see arithmetic.py) where a transcoder builds here."""
    from .arithmetic import transcoder

    transcode = transcoder()
    if transcode is None:
        return {}
    return {
        "arith-420-restart": transcode(pillow_jpeg((24, 40), seed=3, restart_marker_blocks=2)),
        "arith-444-progressive": transcode(pillow_jpeg((24, 40), seed=4, subsampling=0), progressive=True),
    }


def windowed_seeds() -> dict[str, bytes]:
    """Files spanning many 4 kB chunks, read with ``crop`` (libjpeg's early-stopping source)."""
    return {
        "420-restart-big": pillow_jpeg((200, 160), seed=1, quality=90, restart_marker_blocks=4),
        "444-big": pillow_jpeg((200, 160), seed=2, quality=90, subsampling=0),
    }


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(marker, offset of FF, segment length)`` of every marker segment, including later scans' headers.

    Walks the headers up to the first SOS, then finds the markers after it (entropy-coded data holds no
    FF followed by anything but 00 or a restart marker). Lengths are 0 for markers without one.
    """
    found, pos, n = [], 2, len(data)
    while pos + 4 <= n and data[pos] == 0xFF:
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        found.append((marker, pos, length))
        pos += 2 + length
        if marker == 0xDA:
            break
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            return found
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x00 or 0xD0 <= marker <= 0xD7:  # stuffed byte or restart marker: no length
            if marker:
                found.append((marker, pos, 0))
            pos += 2
            continue
        length = 0 if marker == 0xD9 or pos + 4 > n else struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        found.append((marker, pos, length))
        pos += 2 + length


SOF_MARKERS = (0xC0, 0xC1, 0xC2, 0xC9, 0xCA)  # the frames the readers decode (Huffman, arithmetic)


def _first(found, markers) -> tuple[int, int, int] | None:
    return next((s for s in found if s[0] in markers), None)


def _random(rng, *args) -> int:
    return int(rng.integers(*args))


def bit_flips(data, found, rng) -> bytes:
    out = bytearray(data)
    for _ in range(_random(rng, 1, 9)):
        position = _random(rng, 2, len(out))
        out[position] ^= 1 << _random(rng, 8)
    return bytes(out)


def truncate_at_marker(data, found, rng) -> bytes:
    _, offset, length = found[_random(rng, len(found))]
    cut = offset + [0, 1, 2, 3, 4, 2 + length, 2 + length // 2][_random(rng, 7)]
    return data[: max(2, min(cut, len(data) - 1))]


def frame_size(data, found, rng) -> bytes:
    sof = _first(found, SOF_MARKERS)
    height, width = [(0, _random(rng, 1, 65536)), (_random(rng, 1, 65536), 0), (65535, 65535),
                     (_random(rng, 2048, 65536), _random(rng, 2048, 65536)), (1, 65535), (65535, 1),
                     (_random(rng, 1, 300), _random(rng, 1, 300))][_random(rng, 7)]  # fmt: skip
    return data[: sof[1] + 5] + struct.pack(">HH", height, width) + data[sof[1] + 9 :]


def segment_length(data, found, rng) -> bytes:
    _, offset, length = found[_random(rng, len(found))]
    if offset + 4 > len(data):
        return data[:-1]
    new = [0, 1, 2, 3, 0xFFFF, max(0, length - 1), min(0xFFFF, length + 1), _random(rng, 65536)][_random(rng, 8)]
    return data[: offset + 2] + struct.pack(">H", new) + data[offset + 4 :]


def bad_quant_table(data, found, rng) -> bytes:
    dqt = _first(found, (0xDB,))
    out = bytearray(data)
    start = dqt[1] + 4
    choice = _random(rng, 4)
    if choice == 0:  # zero steps
        for k in range(_random(rng, 1, 64)):
            out[start + 1 + k] = 0
    elif choice == 1:  # 16-bit precision flag on an 8-bit table
        out[start] |= 0x10
    elif choice == 2:  # table id past 3
        out[start] = (out[start] & 0xF0) | _random(rng, 4, 16)
    else:  # random steps
        for _ in range(_random(rng, 1, 8)):
            out[start + 1 + _random(rng, 64)] = _random(rng, 256)
    return bytes(out)


def bad_huffman_table(data, found, rng) -> bytes:
    tables = [s for s in found if s[0] == 0xC4]
    if not tables:
        return bit_flips(data, found, rng)
    _, offset, length = tables[_random(rng, len(tables))]
    out = bytearray(data)
    start = offset + 4
    choice = _random(rng, 4)
    if choice == 0:  # code counts that overflow the code space
        for k in range(16):
            out[start + 1 + k] = 0xFF if k < 4 else out[start + 1 + k]
    elif choice == 1:  # class / id out of range
        out[start] = _random(rng, 256)
    elif choice == 2:  # symbols past 15 (DC) or random
        for k in range(start + 17, min(offset + 2 + length, len(out))):
            out[k] = _random(rng, 256)
    else:  # no codes at all
        for k in range(16):
            out[start + 1 + k] = 0
    return bytes(out)


def bad_sampling(data, found, rng) -> bytes:
    sof = _first(found, SOF_MARKERS)
    components = data[sof[1] + 9]
    out = bytearray(data)
    index = sof[1] + 10 + 3 * _random(rng, max(1, components)) + 1
    if index < len(out):
        out[index] = [0x00, 0x05, 0x50, 0x31, 0x13, 0x44, 0x41, 0x14, 0x33, _random(rng, 256)][_random(rng, 10)]
    return bytes(out)


def bad_scan_header(data, found, rng) -> bytes:
    scans = [s for s in found if s[0] == 0xDA]
    _, offset, length = scans[_random(rng, len(scans))]
    out = bytearray(data)
    end = offset + 2 + length  # Ss, Se, AhAl are the last three bytes of the SOS segment
    field = end - 3 + _random(rng, 3) if _random(rng, 3) else offset + 4 + _random(rng, max(1, length - 2))
    if field < len(out):
        out[field] = _random(rng, 256)
    return bytes(out)


def many_scans(data, found, rng) -> bytes:
    """Repeat the scans (SOS to before EOI) many times: CPU and progression bombs."""
    first = _first(found, (0xDA,))
    end = data.rfind(b"\xff\xd9")
    end = len(data) if end < first[1] else end
    copies = [2, 5, 50, 400, 1001][_random(rng, 5)]
    return data[: first[1]] + data[first[1] : end] * copies + data[end:]


def marker_in_scan(data, found, rng) -> bytes:
    first = _first(found, (0xDA,))
    position = _random(rng, first[1] + 2 + first[2], len(data))
    marker = [0xD0 + _random(rng, 8), 0xD9, 0xDA, 0xC4, 0xDB, 0xDD, _random(rng, 0xC0, 0x100)][_random(rng, 7)]
    return data[:position] + bytes([0xFF, marker]) + data[position:]


def header_bytes(data, found, rng) -> bytes:
    first = _first(found, (0xDA,))
    out = bytearray(data)
    for _ in range(_random(rng, 1, 4)):
        out[_random(rng, 2, first[1] + 2 + first[2])] = _random(rng, 256)
    return bytes(out)


KINDS: dict[str, Callable[[bytes, list, np.random.Generator], bytes]] = {
    "bit-flips": bit_flips,
    "truncate-at-marker": truncate_at_marker,
    "frame-size": frame_size,
    "segment-length": segment_length,
    "bad-quant-table": bad_quant_table,
    "bad-huffman-table": bad_huffman_table,
    "bad-sampling": bad_sampling,
    "bad-scan-header": bad_scan_header,
    "many-scans": many_scans,
    "marker-in-scan": marker_in_scan,
    "header-bytes": header_bytes,
}


def mutations(seed: bytes, rng: np.random.Generator, count: int) -> list[tuple[str, bytes]]:
    """``count`` mutated copies of ``seed``, kinds in turn (so every kind appears), positions from ``rng``."""
    found = segments(seed)
    names = list(KINDS)
    out = []
    for i in range(count):
        kind = names[i % len(names)]
        mutated = KINDS[kind](seed, found, rng)
        if _random(rng, 4) == 0:  # sometimes two mutations on top of each other
            # (skipped when the first mutation removed what the second one changes)
            with contextlib.suppress(TypeError, IndexError, ValueError, struct.error):
                mutated = KINDS[names[_random(rng, len(names))]](mutated, segments(mutated), rng)
        out.append((kind, mutated))
    return out
