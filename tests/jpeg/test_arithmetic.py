"""Arithmetic-coded JPEGs (SOF9 sequential, SOF10 progressive; issue 17) are read by the libjpeg backend.

References: the Huffman-coded twin of the same file. ``jpegtran -arithmetic`` (or the same libjpeg calls in
``arith_transcode.c``) changes only the entropy coding, so every plane, table and description must be
identical; Pillow's own decode of the arithmetic file must equal its decode of the twin. The python decoder
refuses these files with a typed error; strict reading stays strict (libjpeg's warnings -> typed errors).
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.jpeg import (
    DCTCollate,
    DCTReadCollate,
    JpegError,
    JpegTooLargeError,
    JpegTruncatedError,
    JpegUnsupportedError,
    _backends,
    read_dct,
)
from freqnets.jpeg._markers import parse_header
from freqnets.jpeg.budget import SHORT_DATA_MAX_BYTES, arithmetic_sparse

from .arithmetic import transcoder

TRANSCODE = transcoder()
pytestmark = [
    pytest.mark.skipif(not _backends.has_libjpeg(), reason="the C extension is not built"),
    pytest.mark.skipif(TRANSCODE is None, reason="neither jpegtran nor a C compiler with the libjpeg headers"),
]


def _pillow_jpeg(size: tuple[int, int], mode: str = "RGB", seed: int = 0, **save) -> bytes:
    """A textured image ``size = (height, width)`` saved by Pillow."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    channels = [128 + 80 * np.sin(xx / (4.0 + c) + c) * np.cos(yy / 6.0) + rng.normal(0, 15, (h, w)) for c in range(3)]
    pixels = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save)
    return buffer.getvalue()


FILES = {
    "420": _pillow_jpeg((37, 53), quality=80),
    "444": _pillow_jpeg((40, 24), quality=90, subsampling=0),
    "422": _pillow_jpeg((33, 70), quality=70, subsampling=1),
    "gray": _pillow_jpeg((29, 45), "L", quality=75),
    "restarts": _pillow_jpeg((64, 96), quality=85, restart_marker_blocks=3),
}


def _same(a, b) -> None:
    assert len(a.planes()) == len(b.planes())
    for x, y in zip(a.planes(), b.planes(), strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.quant_tables, b.quant_tables)
    assert (a.size, a.subsampling, a.sampling_factors) == (b.size, b.subsampling, b.sampling_factors)


@pytest.mark.parametrize("progressive", [False, True], ids=["sof9", "sof10"])
@pytest.mark.parametrize("name", list(FILES))
def test_arithmetic_equals_its_huffman_twin(name, progressive) -> None:
    huffman = FILES[name]
    arithmetic = TRANSCODE(huffman, progressive=progressive)
    assert b"\xff\xca" in arithmetic if progressive else b"\xff\xc9" in arithmetic  # the SOF marker says so
    header = parse_header(arithmetic)
    assert header.frame.arithmetic and header.frame.progressive == progressive
    expected = read_dct(huffman, backend="python")  # the reference decoder of the Huffman twin
    for options in ({}, {"order": "zigzag"}, {"crop": (2, 4)}, {"chroma": "420"}, {"strict": False}):
        got = read_dct(arithmetic, **options)
        assert got.backend == "libjpeg" and got.warnings == ()
        _same(got, read_dct(huffman, **options))
        if not options:
            _same(got, expected)
    # Pillow's libjpeg decodes both to the same pixels (the re-encoding is lossless)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(arithmetic))), np.asarray(Image.open(io.BytesIO(huffman))))


def test_arithmetic_from_huffman_progressive_source() -> None:
    huffman = _pillow_jpeg((48, 40), quality=60, progressive=True)
    _same(read_dct(TRANSCODE(huffman)), read_dct(huffman, backend="python"))


@pytest.mark.parametrize("backend", ["python", "jpeg2dct"])
def test_other_backends_refuse_arithmetic_with_a_typed_error(backend) -> None:
    if backend not in _backends.available_backends():
        pytest.skip(f"{backend} not available")
    with pytest.raises(JpegUnsupportedError, match="arithmetic-coded JPEG is read by backend='libjpeg' only"):
        read_dct(TRANSCODE(FILES["420"]), backend=backend)


@pytest.mark.parametrize("progressive", [False, True], ids=["sof9", "sof10"])
def test_truncated_arithmetic_strict_and_lenient(progressive) -> None:
    data = TRANSCODE(FILES["420"], progressive=progressive)
    whole = read_dct(data)
    for cut in (len(data) - 2, len(data) * 2 // 3, parse_header(data).first_scan.data_start + 4):
        with pytest.raises(JpegTruncatedError, match="Premature end"):
            read_dct(data[:cut])
        lenient = read_dct(data[:cut], strict=False)
        assert lenient.backend == "libjpeg" and "Premature end of JPEG file" in lenient.warnings
        assert lenient.y.shape == whole.y.shape


def test_corrupt_arithmetic_data_gives_typed_errors_or_coefficients() -> None:
    """Mutated entropy-coded data: a freqnets error (a ValueError) or a result of the header's shape, never
    another exception; arithmetic codes have no invalid code words, so some damage decodes (as with libjpeg)."""
    data = TRANSCODE(FILES["444"], progressive=True)
    start = parse_header(data).first_scan.data_start
    rng = np.random.default_rng(5)
    outcomes = {"error": 0, "read": 0}
    for _ in range(200):
        mutated = bytearray(data)
        for offset in rng.integers(start, len(data) - 2, 3):
            mutated[offset] = int(rng.integers(0, 256))
        for strict in (True, False):
            try:
                got = read_dct(bytes(mutated), strict=strict)
            except ValueError:
                outcomes["error"] += 1
            else:
                assert got.y.shape == (64, 5, 3)
                outcomes["read"] += 1
    assert outcomes["error"] > 0 and outcomes["read"] > 0


def test_other_arithmetic_processes_keep_their_typed_errors() -> None:
    data = TRANSCODE(FILES["gray"])
    sof = data.index(b"\xff\xc9")
    for marker, reason in ((0xCB, "lossless arithmetic"), (0xCD, "hierarchical arithmetic")):
        patched = data[: sof + 1] + bytes([marker]) + data[sof + 2 :]
        with pytest.raises(JpegUnsupportedError, match=reason):
            read_dct(patched)
    twelve_bit = data[: sof + 4] + b"\x0c" + data[sof + 5 :]
    with pytest.raises(JpegUnsupportedError, match="12-bit"):
        read_dct(twelve_bit)


def test_short_arithmetic_file_claiming_a_large_frame_costs_at_most_the_short_data_budget() -> None:
    """No lower bound on arithmetic-coded data per block: a flat 4096x4096 image takes about a kilobyte and
    reads whole (strict too); a file that short claiming a larger frame is read within SHORT_DATA_MAX_BYTES
    (refused before allocating when it needs more), whatever max_bytes says; max_bytes still applies below it."""
    buffer = io.BytesIO()
    Image.new("L", (4096, 4096), 77).save(buffer, "JPEG", quality=90)
    data = TRANSCODE(buffer.getvalue())
    assert len(data) < 4096 and arithmetic_sparse(data, parse_header(data))
    got = read_dct(data)
    assert got.y.shape == (64, 512, 512) and got.warnings == ()
    assert torch.equal(got.y, read_dct(buffer.getvalue()).y)
    with pytest.raises(JpegTooLargeError, match="max_bytes"):
        read_dct(data, max_bytes=32 << 20)
    sof = data.index(b"\xff\xc9")
    huge = data[: sof + 5] + struct.pack(">HH", 9000, 9000) + data[sof + 9 :]  # 81 MP, under max_pixels
    for strict in (True, False):
        for max_bytes in (None, 1 << 30):
            with pytest.raises(JpegTooLargeError, match=f"{SHORT_DATA_MAX_BYTES} for an arithmetic-coded file"):
                read_dct(huge, strict=strict, max_bytes=max_bytes)
    # a photo-like arithmetic file is far above the sparse threshold
    assert not arithmetic_sparse(TRANSCODE(FILES["420"]), parse_header(TRANSCODE(FILES["420"])))


def test_read_collate_reads_arithmetic_files_into_the_batch() -> None:
    files = [TRANSCODE(_pillow_jpeg((32, 32), seed=s, quality=80), progressive=bool(s % 2)) for s in range(4)]
    collate = DCTCollate(grid=(4, 4))
    batch = DCTReadCollate(collate, threads=2)([(data, i) for i, data in enumerate(files)])
    expected = collate([(read_dct(data, order="zigzag"), i) for i, data in enumerate(files)])
    assert torch.equal(batch.y, expected.y) and torch.equal(batch.cbcr, expected.cbcr)


def test_conditioning_tables_are_checked_by_libjpeg() -> None:
    """DAC segments (arithmetic conditioning): valid ones read; a table index past 31 or DC bounds L > U are a
    typed error (libjpeg's checks; an AC Kx only selects statistics bins and libjpeg takes any byte)."""
    data = TRANSCODE(FILES["gray"])
    sof = data.index(b"\xff\xc9")
    cases = [(b"\x00\x10", None), (b"\x10\x05", None), (b"\x00\x0f", "Bogus DAC value"), (b"\x20\x05", "DAC index")]
    for tables, error in cases:
        dac = b"\xff\xcc" + struct.pack(">H", 2 + len(tables)) + tables  # Tc/Tb, then U/L (DC) or Kx (AC)
        patched = data[:sof] + dac + data[sof:]
        if error is None:
            assert read_dct(patched).y.shape == read_dct(data).y.shape
        else:
            with pytest.raises(JpegError, match=error):
                read_dct(patched)
