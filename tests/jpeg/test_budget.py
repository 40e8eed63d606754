"""Memory and work of a read bounded from the header, before allocation (issue 15): ``max_bytes``, the
short-data check, the block-decode bound, and no untyped ``MemoryError``."""

from __future__ import annotations

import io
import struct
import sys
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from freqnets.jpeg import (
    DEFAULT_MAX_BYTES,
    DCTCollate,
    DCTReadCollate,
    JpegTooLargeError,
    JpegTruncatedError,
    available_backends,
    read_dct,
)
from freqnets.jpeg._markers import parse_header
from freqnets.jpeg.budget import PYTHON_WORKSPACE, SHORT_DATA_MAX_BYTES, read_bytes_needed, scan_data_short

from .sandbox import run_cases

DECODERS = [b for b in available_backends() if b != "jpeg2dct"]
LIMIT = 256 << 20  # the bound for a file of a few kilobytes


def _jpeg(size, mode="RGB", flat=False, smooth=False, **save) -> bytes:
    rng = np.random.default_rng(3)
    pixels = np.full((*size, 3), 90, np.uint8) if flat else rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    if smooth:  # a gradient with mild noise (Pillow cannot write progressive files of pure noise this large)
        yy, xx = np.mgrid[: size[0], : size[1]]
        pixels = (pixels // 8 + ((xx + yy) % 200)[..., None]).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", **{"quality": 75, **save})
    return buffer.getvalue()


def _claim(data: bytes, height: int, width: int) -> bytes:
    """``data`` with its SOF's size fields replaced (a test-side marker walk)."""
    pos = 2
    while True:
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC2):
            return data[: pos + 5] + struct.pack(">HH", height, width) + data[pos + 9 :]
        pos += 2 + length


BOMBS = {  # the reproducers: a few hundred bytes claiming 9459x9459 (inside Pillow's pixel limit)
    "baseline-9459": _claim(_jpeg((16, 16)), 9459, 9459),
    "progressive-9459": _claim(_jpeg((8, 8), progressive=True), 9459, 9459),
    "baseline-4000": _claim(_jpeg((16, 16)), 4000, 4000),
    "progressive-5000": _claim(_jpeg((8, 8), progressive=True), 5000, 5000),
    "gray-progressive-9000": _claim(_jpeg((8, 8), "L", progressive=True), 9000, 9000),
}

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox reads /proc")
def test_small_file_claiming_a_huge_frame_costs_little() -> None:
    """Each reproducer, every backend, strict and lenient: < 256 MB of peak RSS and < 1 s of CPU."""
    cases = [(data, {"backend": b, "strict": s}) for data in BOMBS.values() for b in DECODERS for s in (True, False)]
    assert all(len(data) < 1500 for data, _ in cases)
    results = run_cases(cases, warm=_jpeg((16, 16)))
    for (_, options), result in zip(cases, results, strict=True):
        outcome = result["outcome"][0]
        assert outcome == "JpegTruncatedError" if options["strict"] else outcome in ("ok", "JpegTooLargeError"), result
        assert result["peak"] < LIMIT, (options, result)
        assert result["cpu"] < 1.0, (options, result)


@pytest.mark.parametrize("backend", DECODERS)
def test_strict_short_data_is_truncated_before_allocating(backend) -> None:
    with pytest.raises(JpegTruncatedError, match="first scan"):
        read_dct(BOMBS["baseline-9459"], backend=backend)
    with pytest.raises(JpegTooLargeError, match="too short for its frame"):
        read_dct(BOMBS["baseline-9459"], backend=backend, strict=False, max_bytes=None)
    lenient = read_dct(BOMBS["baseline-4000"], backend="libjpeg" if "libjpeg" in DECODERS else backend, strict=False)
    assert lenient.warnings and lenient.y.shape == (64, 500, 500)


COMPLETE = {  # complete files with the fewest bits per block: flat images with optimised Huffman codes
    "flat-420-optimized": _jpeg((512, 640), flat=True, optimize=True),
    "flat-444-optimized": _jpeg((256, 256), flat=True, optimize=True, subsampling=0),
    "flat-gray-optimized": _jpeg((1024, 512), "L", flat=True, optimize=True),
    "flat-progressive": _jpeg((512, 512), flat=True, progressive=True),
    "flat-gray-progressive": _jpeg((512, 512), "L", flat=True, progressive=True),
    "noise-1x1": _jpeg((1, 1)),
    "noise-restart": _jpeg((64, 80), restart_marker_blocks=1),
}


@pytest.mark.parametrize("name", list(COMPLETE))
def test_complete_files_are_never_short(name) -> None:
    """The lower bound on the first scan's bits holds for the tightest real files (1-2 bits a block)."""
    data = COMPLETE[name]
    header = parse_header(data)
    assert scan_data_short(data, header) is None
    for backend in DECODERS:
        assert read_dct(data, backend=backend).warnings == ()
    # the bound is tight enough to catch them cut to a tenth of their scan data
    cut = data[: header.first_scan.data_start + (len(data) - header.first_scan.data_start) // 10]
    if not header.frame.progressive and len(data) - header.first_scan.data_start > 64:
        assert scan_data_short(cut, header) is not None or len(cut) * 8 > 2 * header.coefficients // 64


@pytest.mark.parametrize("backend", DECODERS)
def test_max_bytes_is_checked_against_the_estimate(backend) -> None:
    data = _jpeg((200, 120))
    needed = read_bytes_needed(parse_header(data), backend, file_size=len(data))
    assert read_dct(data, backend=backend, max_bytes=needed).size == (200, 120)
    with pytest.raises(JpegTooLargeError, match=f"max_bytes={needed - 1}"):
        read_dct(data, backend=backend, max_bytes=needed - 1)
    assert read_dct(data, backend=backend, max_bytes=None).size == (200, 120)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="max_bytes"):
            read_dct(data, max_bytes=bad)
    assert DEFAULT_MAX_BYTES == 1 << 30 and SHORT_DATA_MAX_BYTES == LIMIT


@pytest.mark.parametrize("subsampling", [0, 2])
@pytest.mark.parametrize("progressive", [False, True])
def test_python_decoder_stays_within_its_estimate(subsampling, progressive) -> None:
    """tracemalloc sees the python decoder's arrays (array module, NumPy): the peak is within the budget."""
    data = _jpeg((256, 192), smooth=True, subsampling=subsampling, progressive=progressive, quality=95)
    estimate = read_bytes_needed(parse_header(data), "python", file_size=len(data))
    read_dct(data, backend="python")  # caches (Huffman lookups) outside the measurement
    tracemalloc.start()
    try:
        read_dct(data, backend="python")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= estimate, (peak, estimate)
    assert peak > (estimate - PYTHON_WORKSPACE) / 4  # and the estimate is not a blanket number


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox reads /proc")
def test_peak_rss_within_the_estimate() -> None:
    """Peak RSS growth of real reads (a 2400x2000 4:4:4 file; the python backend on a smaller one)."""
    big, small = _jpeg((2400, 2000), subsampling=0), _jpeg((600, 400), smooth=True, subsampling=0)
    # the smaller read first: a process reuses freed heap pages, so a read after a larger one shows no growth
    cases = [(small, {"backend": "python"})] + ([(big, {"backend": "libjpeg"})] if "libjpeg" in DECODERS else [])
    for (data, options), result in zip(cases, run_cases(cases, warm=_jpeg((16, 16))), strict=True):
        estimate = read_bytes_needed(parse_header(data), options["backend"], file_size=len(data))
        assert result["outcome"][0] == "ok", result
        assert estimate / 8 < result["peak"] <= estimate, (options, result["peak"], estimate)


def test_python_decoder_work_is_bounded() -> None:
    """A 600-byte progressive file claiming 2000x2000: the python decoder would visit every block of each
    scan; refused up front (typed), libjpeg (a hundred times faster per block) still reads it leniently."""
    data = _claim(_jpeg((8, 8), progressive=True), 2000, 2000)
    with pytest.raises(JpegTooLargeError, match="block decodes"):
        read_dct(data, backend="python", strict=False)
    if "libjpeg" in DECODERS:
        assert read_dct(data, strict=False).warnings


def test_memory_error_becomes_a_typed_error(monkeypatch) -> None:
    from freqnets.jpeg import _backends, reader

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(_backends, "decode", exhausted)
    monkeypatch.setattr(reader, "_read_fast", exhausted)  # the libjpeg backend's fast path (issue 17)
    with pytest.raises(JpegTooLargeError, match="not enough memory"):
        read_dct(_jpeg((16, 16)))


def test_read_collate_and_dataset_take_max_bytes(tmp_path) -> None:
    files = [_jpeg((32, 32)), _jpeg((32, 32))]
    with pytest.raises(JpegTooLargeError, match=r"sample 0.*max_bytes=1000"):
        DCTReadCollate(DCTCollate(), max_bytes=1000)([(f, i) for i, f in enumerate(files)])
    assert DCTReadCollate(DCTCollate(), max_bytes=None)([(f, i) for i, f in enumerate(files)])[0].shape[0] == 2
    from freqnets.jpeg import JpegFolderDataset

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.jpg").write_bytes(files[0])
    with pytest.raises(JpegTooLargeError, match="max_bytes=1000"):
        JpegFolderDataset(tmp_path, max_bytes=1000)[0]
