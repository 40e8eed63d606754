"""The header cache of ``read_dct`` (``_markers.HeaderCache``): a lookup gives exactly what a fresh parse gives.

Every case is compared with :func:`parse_header` on the same bytes: the same header, or the same
error type and message, so the cache can never let through a file that a fresh parse rejects.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from freqnets.jpeg import JpegError, JpegTooLargeError, read_dct
from freqnets.jpeg._markers import HeaderCache, parse_header


def _jpeg(size=(32, 32), seed=0, **save) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **{"quality": 75, **save})
    return buffer.getvalue()


def _outcome(parse, data: bytes, max_pixels):
    """The parsed header as comparable values, or the error's type and message."""
    try:
        h = parse(data, max_pixels)
    except JpegError as error:
        return type(error), str(error)
    t = h.tables
    return (h.frame, h.first_scan, h.subsampling, h.sampling_factors, h.coefficients, dict(t.quant), dict(t.dc),
            dict(t.ac), t.restart_interval, t.jfif, t.adobe_transform)


def _mutations(data: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    """Header bytes changed, cut or extended; the entropy-coded data left alone."""
    out = []
    for _ in range(count):
        buffer = bytearray(data)
        kind = rng.integers(3)
        if kind == 0:
            for position in rng.integers(0, min(len(buffer), 700), size=rng.integers(1, 3)):
                buffer[position] = int(rng.integers(256))
        elif kind == 1:
            del buffer[int(rng.integers(2, min(len(buffer), 800))) :]
        else:
            position = int(rng.integers(2, min(len(buffer), 700)))
            buffer[position:position] = bytes(rng.integers(0, 256, size=rng.integers(1, 4), dtype=np.uint8))
        out.append(bytes(buffer))
    return out


def test_cached_headers_equal_fresh_parses_on_mutated_files() -> None:
    seeds = [_jpeg(), _jpeg(seed=1), _jpeg((24, 40), progressive=True), _jpeg((17, 9), subsampling=0)]
    cache = HeaderCache(max_entries=8)
    for seed in seeds:  # warm: the originals' headers are cached
        assert _outcome(cache.parse, seed, None) == _outcome(parse_header, seed, None)
    rng = np.random.default_rng(7)
    cases = [m for seed in seeds for m in _mutations(seed, rng, 150)]
    hits = 0
    for data in cases:
        for max_pixels in (None, 1 << 20, 600):
            assert _outcome(cache.parse, data, max_pixels) == _outcome(parse_header, data, max_pixels)
    for data in cases:  # again, now with the mutants' own headers cached too
        expected = _outcome(parse_header, data, 1 << 20)
        assert _outcome(cache.parse, data, 1 << 20) == expected
        hits += not isinstance(expected[0], type)
    assert hits > 100  # many mutants are still valid headers, so the hit path ran


def test_same_header_other_scan_data_is_a_hit() -> None:
    first, second = _jpeg(seed=0), _jpeg(seed=1)  # same size, tables and encoder: identical header bytes
    end = parse_header(first).first_scan.data_start
    assert first[:end] == second[:end] and first != second
    cache = HeaderCache()
    assert cache.parse(second) is cache.parse(first)


def test_max_pixels_is_part_of_the_key() -> None:
    data = _jpeg()
    cache = HeaderCache()
    cache.parse(data, None)
    with pytest.raises(JpegTooLargeError, match="max_pixels=1000"):
        cache.parse(data, 1000)


def test_header_cut_short_is_not_served_from_the_cache() -> None:
    data = _jpeg()
    cache = HeaderCache()
    end = cache.parse(data).first_scan.data_start
    for cut in (end - 1, end - 10, 3):
        assert _outcome(cache.parse, data[:cut], None) == _outcome(parse_header, data[:cut], None)
        assert isinstance(_outcome(cache.parse, data[:cut], None)[0], type)


def test_cache_is_bounded() -> None:
    cache = HeaderCache(max_entries=3, max_header_bytes=4096)
    for width in range(8, 80, 8):  # a new size each time: new header bytes
        cache.parse(_jpeg((8, width)))
    assert len(cache._entries) <= 3
    big = bytearray(_jpeg())
    comment = b"\xff\xfe" + struct.pack(">H", 5002) + bytes(5000)  # a 5 kB COM segment
    big[2:2] = comment
    cache.parse(bytes(big))
    assert all(len(key) <= 4096 for key, _ in cache._entries)


def test_read_dct_results_equal_with_and_without_cache(monkeypatch) -> None:
    import freqnets.jpeg.reader as reader

    files = [_jpeg(seed=s) for s in range(4)]
    cached = [read_dct(f) for f in files + files]
    monkeypatch.setattr(reader, "HEADER_CACHE", HeaderCache(max_entries=0))  # max_entries=0 still parses
    for f, c in zip(files + files, cached, strict=True):
        fresh = read_dct(f)
        for a, b in zip(fresh.planes(), c.planes(), strict=True):
            assert a.dtype == b.dtype and bool((a == b).all())
        assert (fresh.size, fresh.subsampling, fresh.sampling_factors) == (c.size, c.subsampling, c.sampling_factors)
