"""Hostile and broken input: each gets the right typed error, fast, without large allocations.

Cases that could allocate or loop if a check regressed (huge headers) run in a subprocess under an
address-space limit and a timeout (``sandbox.py``), so a regression fails the test instead of taking
the machine down; the seeded mutation fuzzer is ``test_fuzz.py``.
"""

from __future__ import annotations

import io
import struct
import sys
import time

import numpy as np
import pytest
from PIL import Image

from freqnets.jpeg import (
    JpegError,
    JpegTooLargeError,
    JpegTruncatedError,
    JpegUnsupportedError,
    available_backends,
    read_dct,
)

from .sandbox import run_cases

DECODERS = [b for b in available_backends() if b != "jpeg2dct"]


def _jpeg(size=(47, 33), mode="RGB", **save) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **{"quality": 75, **save})
    return buffer.getvalue()


def _segments(data: bytes) -> dict[int, int]:
    """Offset of the first segment of each marker up to and including SOS (a test-side walk)."""
    offsets, pos = {}, 2
    while True:
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        offsets.setdefault(marker, pos)
        if marker == 0xDA:
            return offsets
        pos += 2 + length


def _patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


BASELINE = _jpeg()
SOF = _segments(BASELINE)[0xC0]  # FF C0 len(2) P(1) Y(2) X(2) Nf(1) [C H/V Tq]*Nf
SOS = _segments(BASELINE)[0xDA]  # FF DA len(2) Ns(1) [Cs Td/Ta]*Ns Ss Se AhAl


def _without_segment(data: bytes, marker: int) -> bytes:
    start = _segments(data)[marker]
    length = struct.unpack(">H", data[start + 2 : start + 4])[0]
    return data[:start] + data[start + 2 + length :]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    return buffer.getvalue()


def _two_components() -> bytes:
    """A 4-component (CMYK) file whose SOF claims 2 components, the payload cut to match."""
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(buffer, "JPEG")
    data = buffer.getvalue()
    sof = data.index(b"\xff\xc0")
    payload = struct.pack(">HBHHB", 8 + 6, 8, 16, 16, 2) + data[sof + 10 : sof + 16]
    return data[:sof + 2] + payload + data[sof + 2 + 8 + 12 :]


def _adobe_rgb() -> bytes:
    """A 3-component file marked RGB (Adobe APP14 transform 0, no JFIF)."""
    data = _without_segment(BASELINE, 0xE0)
    adobe = b"\xff\xee" + struct.pack(">H", 14) + b"Adobe" + b"\x00\x64\x00\x00\x00\x00\x00"
    return data[:2] + adobe + data[2:]


HOSTILE = [  # (id, bytes, error type, a phrase of the message)
    ("empty", b"", JpegError, "empty"),
    ("one-byte", b"\xff", JpegError, "not a JPEG"),
    ("random", np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), JpegError, "not a JPEG"),
    ("png", _png(), JpegError, "not a JPEG"),
    ("soi-only", b"\xff\xd8", JpegTruncatedError, "truncated"),
    ("soi-eoi", b"\xff\xd8\xff\xd9", JpegError, "no frame"),
    ("missing-sof", _without_segment(BASELINE, 0xC0), JpegError, "before the frame header"),
    ("12-bit", _patch(BASELINE, SOF + 4, b"\x0c"), JpegUnsupportedError, "12-bit"),
    ("two-components", _two_components(), JpegUnsupportedError, "2 components"),
    ("adobe-rgb", _adobe_rgb(), JpegUnsupportedError, "RGB"),
    ("arithmetic-lossless-sof11", _patch(BASELINE, SOF + 1, b"\xcb"), JpegUnsupportedError, "arithmetic"),
    ("lossless-sof3", _patch(BASELINE, SOF + 1, b"\xc3"), JpegUnsupportedError, "lossless"),
    ("hierarchical-sof5", _patch(BASELINE, SOF + 1, b"\xc5"), JpegUnsupportedError, "hierarchical"),
    ("width-0", _patch(BASELINE, SOF + 7, b"\x00\x00"), JpegError, "width is 0"),
    ("height-0-dnl", _patch(BASELINE, SOF + 5, b"\x00\x00"), JpegUnsupportedError, "DNL"),
    ("65500x65500", _patch(BASELINE, SOF + 5, struct.pack(">HH", 65500, 65500)), JpegTooLargeError, "max_pixels"),
    ("sampling-0", _patch(BASELINE, SOF + 11, b"\x02"), JpegError, "sampling factors"),
    ("sampling-5", _patch(BASELINE, SOF + 11, b"\x51"), JpegError, "sampling factors"),
    ("undefined-huffman", _patch(BASELINE, SOS + 8, b"\x33"), JpegError, "Huffman table 3, never defined"),
    ("undefined-quant", _patch(BASELINE, SOF + 12, b"\x03"), JpegError, "quantisation table 3, never defined"),
    ("scan-unknown-component", _patch(BASELINE, SOS + 5, b"\x09"), JpegError, "not in the frame"),
    ("sequential-bad-spectral", _patch(BASELINE, SOS + 11, b"\x05"), JpegError, "sequential scan"),
    ("segment-length-past-end", _patch(BASELINE, SOF + 2, b"\xff\xf0"), JpegTruncatedError, "truncated"),
]


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize(("data", "error", "reason"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_input_typed_error(data, error, reason, backend) -> None:
    start = time.perf_counter()
    with pytest.raises(error, match=reason) as raised:
        read_dct(data, backend=backend)
    assert isinstance(raised.value, ValueError)
    assert time.perf_counter() - start < 0.5


def test_huge_header_is_small_and_rejected_before_decoding() -> None:
    data = _patch(_jpeg((8, 8)), SOF + 5, struct.pack(">HH", 65500, 65500))
    assert len(data) < 1000  # the "700-byte file" of the issue
    with pytest.raises(JpegTooLargeError, match="max_pixels"):
        read_dct(data)
    with pytest.raises(JpegTooLargeError):
        read_dct(_jpeg((40, 40)), max_pixels=1599)
    assert read_dct(_jpeg((40, 40)), max_pixels=1600).size == (40, 40)


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize("progressive", [False, True])
def test_truncation_strict_and_lenient(backend, progressive) -> None:
    data = _jpeg((64, 48), progressive=progressive)
    scan_start = _segments(data)[0xDA] + 2 + 12  # past the first SOS header
    for cut in (2, 3, 20, SOF + 5, scan_start - 3, scan_start + 10, len(data) // 2, len(data) - 2, len(data) - 1):
        with pytest.raises(JpegTruncatedError):
            read_dct(data[:cut], backend=backend)
        if cut >= scan_start:
            lenient = read_dct(data[:cut], strict=False, backend=backend)
            assert lenient.warnings and lenient.y.shape == (64, 8, 6)
        else:
            with pytest.raises(JpegTruncatedError):
                read_dct(data[:cut], strict=False, backend=backend)


@pytest.mark.parametrize("backend", DECODERS)
def test_extraneous_bytes_and_bad_restart_are_corrupt(backend) -> None:
    data = _jpeg((32, 32), restart_marker_blocks=1)
    # libjpeg drops a few stray bytes that fit its bit buffer silently; 64 bytes it reports.
    garbage = data[:-2] + bytes(range(1, 65)) + data[-2:]
    with pytest.raises(JpegTruncatedError):
        read_dct(garbage, backend=backend)
    lenient = read_dct(garbage, strict=False, backend=backend)
    assert lenient.warnings
    reference = read_dct(data, backend=backend)
    assert all(bool((a == b).all()) for a, b in zip(lenient.planes(), reference.planes(), strict=True))
    scan = _segments(data)[0xDA]
    rst = data.index(b"\xff\xd1", scan)
    renumbered = _patch(data, rst, b"\xff\xd5")
    with pytest.raises(JpegTruncatedError):
        read_dct(renumbered, backend=backend)
    assert read_dct(renumbered, strict=False, backend=backend).warnings


def test_argument_errors() -> None:
    with pytest.raises(TypeError, match="source"):
        read_dct(12)
    with pytest.raises(TypeError, match="binary"):
        read_dct(io.StringIO("text"))
    with pytest.raises(TypeError, match="strict"):
        read_dct(BASELINE, strict=1)
    with pytest.raises(ValueError, match="max_pixels"):
        read_dct(BASELINE, max_pixels=0)
    with pytest.raises(ValueError, match="backend"):
        read_dct(BASELINE, backend="turbo")
    with pytest.raises(ValueError, match="order"):
        read_dct(BASELINE, order="row")


def test_unavailable_backend_raises(monkeypatch) -> None:
    from freqnets.jpeg import _backends

    monkeypatch.setattr(_backends, "_jpegc", None)
    monkeypatch.setattr(_backends, "has_jpeg2dct", lambda: False)
    assert read_dct(BASELINE).backend == "python"  # auto falls back to the reference decoder
    for name in ("libjpeg", "jpeg2dct"):
        with pytest.raises(JpegUnsupportedError, match=name):
            read_dct(BASELINE, backend=name)


@pytest.mark.skipif("jpeg2dct" not in available_backends(), reason="jpeg2dct not installed")
def test_jpeg2dct_refuses_layouts_it_would_reencode_and_sees_truncation() -> None:
    with pytest.raises(JpegUnsupportedError, match="re-encod"):
        read_dct(_jpeg(subsampling=0), backend="jpeg2dct")
    data = _jpeg((64, 48), subsampling=2)
    with pytest.raises(JpegTruncatedError):
        read_dct(data[: len(data) // 2], backend="jpeg2dct")
    assert read_dct(data[: len(data) // 2], backend="jpeg2dct", strict=False).warnings


# --- in a subprocess with a memory limit and a timeout (the mutation fuzzer is test_fuzz.py) -------------------------


def _huge_headers() -> list[tuple[bytes, int | None]]:
    small = _jpeg((8, 8))
    progressive = _jpeg((8, 8), progressive=True)
    sof2 = _segments(progressive)[0xC2]
    limit = 89_478_485
    return [
        (_patch(small, SOF + 5, struct.pack(">HH", 65500, 65500)), limit),
        (_patch(progressive, sof2 + 5, struct.pack(">HH", 65500, 65500)), limit),
        (_patch(small, SOF + 5, struct.pack(">HH", 65500, 1)), limit),
        (_patch(small, SOF + 5, struct.pack(">HH", 1, 65500)), limit),
        # max_pixels=None: the caller lifted the limit; still a typed error (out of memory), no crash.
        (_patch(small, SOF + 5, struct.pack(">HH", 65500, 65500)), None),
        (_patch(progressive, sof2 + 5, struct.pack(">HH", 65500, 65500)), None),
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox reads /proc (Linux)")
def test_huge_headers_in_memory_limited_subprocess() -> None:
    cases = [
        (data, {"backend": backend, "strict": strict, "max_pixels": limit})
        for data, limit in _huge_headers() for backend in DECODERS for strict in (True, False)
    ]  # fmt: skip
    results = run_cases(cases, warm=_jpeg((8, 8)))
    assert [r for r in results if not (r["outcome"][0] == "ok" or r["outcome"][0].startswith("Jpeg"))] == []
    assert sum(r["outcome"][0] == "JpegTooLargeError" for r in results) >= 4 * len(DECODERS)


def test_header_parse_is_independent_of_the_entropy_data() -> None:
    """parse_header stops at the first scan header: 20 MB of scan data after it cost nothing."""
    from freqnets.jpeg._markers import parse_header

    small = _jpeg((8, 8))
    big = small[:-2] + bytes(20 << 20) + small[-2:]
    times = []
    for _ in range(10):
        start = time.perf_counter()
        parse_header(big)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.005  # the fastest of 10: a busy machine delays some calls, never all


@pytest.mark.parametrize("backend", DECODERS)
def test_metadata_oddities_are_not_damage(backend) -> None:
    """An unknown JFIF revision or Adobe transform code is read (libjpeg only notes them)."""
    app0 = _segments(BASELINE)[0xE0]
    jfif3 = _patch(BASELINE, app0 + 9, b"\x03")  # FF E0 len "JFIF\0" major
    reference = read_dct(BASELINE, backend=backend)
    adobe7 = _patch(_adobe_rgb(), 17, b"\x07")  # FF EE len "Adobe" version flags0 flags1 transform
    for data in (jfif3, adobe7):
        result = read_dct(data, backend=backend)
        assert result.warnings == ()
        assert all(bool((a == b).all()) for a, b in zip(result.planes(), reference.planes(), strict=True))


@pytest.mark.parametrize("backend", DECODERS)
def test_too_many_scans_rejected(backend) -> None:
    """Over 1000 scans (a progressive file's scans repeated) would let a large frame burn CPU: rejected."""
    data = _jpeg((8, 8), "L", progressive=True)
    scan = _segments(data)[0xDA]
    repeated = data[:scan] + data[scan:-2] * 1001 + data[-2:]
    start = time.perf_counter()
    with pytest.raises(JpegError, match="more than 1000 scans"):
        read_dct(repeated, backend=backend)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("backend", DECODERS)
def test_second_scan_after_a_complete_sequential_scan_is_corrupt(backend) -> None:
    data = _jpeg((8, 8), "L")
    scan = _segments(data)[0xDA]
    with pytest.raises(JpegError):
        read_dct(data[:scan] + data[scan:-2] * 2 + data[-2:], backend=backend)
