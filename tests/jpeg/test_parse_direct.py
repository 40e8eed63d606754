"""The C parse of a file's header for the direct path (``_jpegc.parse_direct``, issue 17): the header facts of
Python's ``parse_header`` for every file it takes, and never a header ``parse_header`` refuses.

``read_dct``'s fast path plans a file from this parse alone (no Python parse) when it takes the file, so its
figures must be ``parse_header``'s (compared on every generated layout and the shared data sets) and it must
decline every header ``parse_header`` raises on (then ``parse_header`` runs and raises as before): checked on
crafted headers (pixel and allocation limits, RGB colour guesses) and on thousands of mutated headers, where
``read_dct``'s outcome (result or error type and message) is also compared with the Python-parse route.
"""

from __future__ import annotations

import gc
import struct

import numpy as np
import pytest
import torch

from freqnets.jpeg import JpegError, JpegTooLargeError, _backends, read_dct, reader
from freqnets.jpeg._markers import HeaderCache, _drop_oldest, frame_of, parse_header
from freqnets.jpeg.budget import scan_data_short

from .jpeg_writer import encode_baseline, random_coefficients
from .mutate import mutations, pillow_jpeg, seeds
from .test_direct import GENERATED, SHARED, _assert_identical, _zip_jpegs

pytestmark = pytest.mark.skipif(not _backends.has_libjpeg(), reason="the C extension is not built")

MAX_PIXELS = 89_478_485


def _python_facts(data: bytes, max_pixels: int | None = MAX_PIXELS) -> tuple:
    """What parse_direct returns besides its capsule, from parse_header."""
    header = parse_header(data, max_pixels)
    short = scan_data_short(b"", header)
    grids = tuple((c.height_in_blocks, c.width_in_blocks) for c in header.frame.components)
    bits = 0 if short is None else short[0]
    return header.first_scan.data_start, header.coefficients, bits, header.sampling_factors, grids, header.frame


def _c_facts(data: bytes, max_pixels: int | None = MAX_PIXELS) -> tuple | None:
    parsed = _backends.parse_direct(data, max_pixels)
    if parsed is None:
        return None
    frame = frame_of(parsed[-1])
    assert tuple(parsed[-1][4]) == tuple(tuple(c) for c in frame.components)  # every field is read back
    return (*parsed[1:-1], frame)


def _python_outcome(data: bytes, max_pixels: int | None = MAX_PIXELS):
    try:
        return _python_facts(data, max_pixels)
    except JpegError as error:
        return type(error), str(error)


def _check_file(data: bytes, max_pixels: int | None = MAX_PIXELS) -> bool:
    """parse_direct takes only what parse_header accepts, with its facts; True when it took the file."""
    facts = _c_facts(data, max_pixels)
    if facts is None:
        return False
    assert facts == _python_facts(data, max_pixels)
    return True


def _same_reads(data: bytes, monkeypatch, **options) -> None:
    """read_dct's outcome with the C parse planning the file and without it (the Python parse, as before)."""

    def outcome():
        reader._LAST = None
        try:
            return read_dct(data, **options)
        except JpegError as error:
            return type(error), str(error)

    with_c = outcome()
    with monkeypatch.context() as patch:
        patch.setattr(reader, "_parse_direct", None)
        without = outcome()
    if isinstance(with_c, tuple) or isinstance(without, tuple):
        assert with_c == without
    else:
        _assert_identical(with_c, without)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_layouts_have_parse_headers_facts(name, monkeypatch) -> None:
    data = GENERATED[name]
    assert _check_file(data), name
    for options in ({}, {"crop": (2, 3)}, {"crop": (28, 28), "chroma": "420", "order": "zigzag"}, {"chroma": "444"}):
        _same_reads(data, monkeypatch, **options)
    assert _check_file(data, None) and _check_file(data, 10**30)
    # the capsule reads the file as the capsule made from parse_header's figures does
    header = parse_header(data)
    capsule = _backends.parse_direct(data, MAX_PIXELS)[0]
    reference = _backends.direct_header(data[: header.first_scan.data_start], header)
    read = _backends._jpegc.read_direct
    for zigzag in (False, True):
        for a, b in zip(read(data, capsule, zigzag), read(data, reference, zigzag), strict=True):
            assert torch.equal(torch.from_dlpack(a), torch.from_dlpack(b))


@pytest.mark.parametrize(("archive", "count"), [("cifar10-jpeg/test.zip", 1000), ("imagenet-sample/images.zip", 500)])
def test_shared_data_has_parse_headers_facts(archive, count) -> None:
    files = _zip_jpegs(SHARED / archive, count)
    taken = sum(_check_file(data) for data in files)
    assert taken >= 0.9 * len(files)


def test_files_it_does_not_read_are_declined() -> None:
    assert _c_facts(pillow_jpeg((32, 32))) is not None
    for data in (pillow_jpeg((32, 32), progressive=True), pillow_jpeg((16, 24), "CMYK")):
        assert _c_facts(data) is None
        parse_header(data)  # the Python parse reads them (for the libjpeg path)
    rng = np.random.default_rng(3)
    planes = [random_coefficients(rng, 2, 2) for _ in range(3)]
    separate = encode_baseline(planes, [(1, 1)] * 3, (16, 16), rng.integers(1, 40, (3, 64)), interleaved=False)
    assert _c_facts(separate) is None and parse_header(separate)  # one scan per component


def _sof_offset(data: bytes) -> int:
    return data.index(b"\xff\xc0")


def _with_size(data: bytes, height: int, width: int) -> bytes:
    at = _sof_offset(data) + 5
    return data[:at] + struct.pack(">HH", height, width) + data[at + 4 :]


def test_pixel_and_allocation_limits_decline_as_parse_header_raises() -> None:
    data = pillow_jpeg((32, 48))
    assert _check_file(data, 32 * 48) and _c_facts(data, 32 * 48 - 1) is None
    assert _python_outcome(data, 32 * 48 - 1)[0] is JpegTooLargeError
    # frames at libjpeg's largest dimension (a few bytes claiming them): the limit decides, as in parse_header
    for height, width in ((65500, 65500), (65500, 1), (1, 65500), (40000, 3000)):
        big = _with_size(data, height, width)
        # (2**64 // 6 + 1 and up: limits whose 6 * max_pixels would wrap in 64 bits)
        for max_pixels in (None, MAX_PIXELS, height * width, height * width - 1, 2**64 // 6 + 1, 2**63 - 1, 10**30):
            python = _python_outcome(big, max_pixels)
            assert _c_facts(big, max_pixels) == (python if not isinstance(python[0], type) else None)
    # check_allocation: a 1-pixel-tall frame of 1x4, 1x4, 1x2-sampled components is mostly MCU padding (80
    # coefficients per pixel): refused from about 57,000 pixels wide (the limit's fixed slack covers narrower ones)
    rng = np.random.default_rng(5)
    planes = [random_coefficients(rng, rows, 1) for rows in (4, 4, 2)]
    sliver = encode_baseline(planes, [(1, 4), (1, 4), (1, 2)], (32, 8), rng.integers(1, 40, (3, 64)))
    outcomes = set()
    for width in (8, 50000, 56000, 57000, 57500, 58000, 65500):
        wide = _with_size(sliver, 1, width)
        for max_pixels in (None, MAX_PIXELS, 100):
            python = _python_outcome(wide, max_pixels)
            outcomes.add(python[0] if isinstance(python[0], type) else "read")
            assert _c_facts(wide, max_pixels) == (python if not isinstance(python[0], type) else None), width
    assert outcomes == {"read", JpegTooLargeError}
    with pytest.raises(ValueError, match="max_pixels"):
        _backends.parse_direct(data, -1)
    with pytest.raises(TypeError):
        _backends.parse_direct(bytearray(data), None)


def _colour_variants() -> list[bytes]:
    """3-component files with and without JFIF and Adobe markers, component ids R, G, B or others."""
    base = pillow_jpeg((16, 16), quality=90)
    assert base[2:4] == b"\xff\xe0"  # Pillow writes JFIF APP0 first
    app0_end = 4 + struct.unpack(">H", base[4:6])[0]
    bare = base[:2] + base[app0_end:]
    sof = _sof_offset(bare) + 10  # the first component's id byte
    rgb_ids = bare[:sof] + b"R" + bare[sof + 1 : sof + 3] + b"G" + bare[sof + 4 : sof + 6] + b"B" + bare[sof + 7 :]
    sos = rgb_ids.index(b"\xff\xda") + 5  # the scan's component ids name the frame's
    rgb_ids = rgb_ids[:sos] + b"R" + rgb_ids[sos + 1 : sos + 2] + b"G" + rgb_ids[sos + 3 : sos + 4] + b"B" + rgb_ids[sos + 5 :]

    def adobe(transform: int, length: int = 14) -> bytes:  # an APP14 segment; shorter than 14: no transform byte
        payload = (b"Adobe" + bytes(6) + bytes([transform]) + bytes(max(0, length - 14)))[: length - 2]
        return b"\xff\xee" + struct.pack(">H", length) + payload

    jfif = base[2:app0_end]
    out = [base, bare, rgb_ids, bare[:2] + b"\xff\xe0\x00\x06JFIF" + bare[2:]]  # APP0 too short to be JFIF
    for body in (bare, rgb_ids):
        for transform in (0, 1, 2):
            out.append(body[:2] + adobe(transform) + body[2:])
            out.append(body[:2] + adobe(transform) + adobe(1 - min(transform, 1)) + body[2:])  # the last one counts
            out.append(body[:2] + jfif + adobe(transform) + body[2:])
        out.append(body[:2] + adobe(0, 13) + body[2:])  # too short to name a transform
        out.append(body[:2] + b"\xff\xe0\x00\x07JFIX\x00" + body[2:])  # not JFIF
    return out


def test_rgb_colour_guesses_decline_as_parse_header_raises(monkeypatch) -> None:
    refused = 0
    for data in _colour_variants():
        python = _python_outcome(data)
        if isinstance(python[0], type):
            refused += 1
            assert _c_facts(data) is None and "RGB" in python[1]
        else:
            assert _c_facts(data) == python
        _same_reads(data, monkeypatch)
    assert refused >= 6  # the comparisons above include refusals


def _header_mutations(data: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    """Bytes of the header changed (one byte set at random, or a run of them), cut inside it, or a segment's length
    changed: the damage a header parser sees."""
    end = parse_header(data).first_scan.data_start
    out = []
    for _ in range(count):
        kind = rng.integers(4)
        at = int(rng.integers(0, end))
        if kind == 0:
            out.append(data[:at] + bytes([int(rng.integers(256))]) + data[at + 1 :])
        elif kind == 1:
            run = int(rng.integers(1, 6))
            out.append(data[:at] + bytes(rng.integers(0, 256, run, dtype=np.uint8)) + data[at + run :])
        elif kind == 2:
            out.append(data[:at])
        else:
            markers = [i for i in range(2, end - 3) if data[i] == 0xFF and data[i + 1] not in (0x00, 0xFF)]
            i = markers[int(rng.integers(len(markers)))] + 2
            length = (data[i] << 8 | data[i + 1]) + int(rng.choice([-3, -2, -1, 1, 2, 64, -64]))
            out.append(data[:i] + struct.pack(">H", length % 65536) + data[i + 2 :])
    return out


def test_mutated_headers_are_declined_or_parse_headers(monkeypatch) -> None:
    rng = np.random.default_rng(29)
    files = [GENERATED[name] for name in ("420-32x32", "444-optimized", "422-restart-rows", "gray-13x29", "411")]
    files += [pillow_jpeg((24, 40), exif=b"Exif\x00\x00MM\x00*" + bytes(8)), pillow_jpeg((16, 16), "L")]
    taken = declined = 0
    for data in files:
        for mutated in _header_mutations(data, rng, 400):
            for max_pixels in (MAX_PIXELS, None):
                if _check_file(mutated, max_pixels):
                    taken += 1
                else:
                    declined += 1
    assert taken > 500 and declined > 500  # both sides are exercised
    for data in files:  # and read_dct's outcomes through either parse, for a share of them
        for mutated in _header_mutations(data, rng, 40):
            _same_reads(mutated, monkeypatch)
            _same_reads(mutated, monkeypatch, strict=False, chroma="420")
            _same_reads(mutated, monkeypatch, crop=(2, 3), order="zigzag")


def test_fuzzer_mutations_read_as_with_the_python_parse(monkeypatch) -> None:
    rng = np.random.default_rng(31)
    count = 0
    for seed in seeds().values():
        for _, data in mutations(seed, rng, 12):
            _check_file(data)
            _same_reads(data, monkeypatch)
            _same_reads(data, monkeypatch, strict=False, order="zigzag")
            _same_reads(data, monkeypatch, crop=(28, 28), chroma="420")
            count += 1
    assert count >= 60


def _fresh_caches(monkeypatch) -> HeaderCache:
    cache = HeaderCache()
    monkeypatch.setattr(reader, "HEADER_CACHE", cache)
    for name, value in (("_PLANS", {}), ("_DIRECT_PLANS", {}), ("_SEEN", {}), ("_DIRECT_ENDS", ()), ("_LAST", None)):
        monkeypatch.setattr(reader, name, value)
    return cache


def test_a_photo_set_leaves_no_headers_in_the_caches(monkeypatch) -> None:
    # every photo has a new header: the direct path keeps only the last plan and the hashes of headers seen once
    # (a dict of ints, which the garbage collector does not track); files it declines still go through the header
    # cache
    cache = _fresh_caches(monkeypatch)
    for seed in range(12):
        read_dct(pillow_jpeg((24 + seed, 40), seed=seed))
    assert len(cache._entries) == 0 and len(reader._PLANS) == 0 and len(reader._DIRECT_PLANS) == 0
    assert len(reader._SEEN) == 12 and not gc.is_tracked(reader._SEEN)
    read_dct(pillow_jpeg((24, 40), progressive=True))
    assert len(cache._entries) == 1 and len(reader._PLANS) == 1


def test_headers_that_come_back_are_planned_once_more_then_found(monkeypatch) -> None:
    # a few headers in turn (say two image sizes in a shuffled data set): the C parse runs on a header's first and
    # second sighting, then its plan is found by its bytes; the reads are those of the Python-parse route
    _fresh_caches(monkeypatch)
    files = [pillow_jpeg((32, 32), seed=1), pillow_jpeg((32, 40)), pillow_jpeg((40, 32), quality=50),
             pillow_jpeg((16, 16), "L"), pillow_jpeg((32, 32), seed=2)]  # fmt: skip  (the first and last: one header)
    calls = []
    parse = _backends.parse_direct
    monkeypatch.setattr(_backends, "parse_direct", lambda *args: calls.append(1) or parse(*args))
    want = {}
    for data in files:
        with monkeypatch.context() as patch:
            patch.setattr(reader, "_parse_direct", None)
            want[data] = read_dct(data)
    reader._LAST = None
    for _ in range(6):
        for data in files:
            _assert_identical(read_dct(data), want[data])
    assert len(calls) == 2 * 4 and len(reader._DIRECT_PLANS) == 4
    # other options: plans of their own, kept at once (the header bytes came back); options with a crop are made
    # per call, so their plans are never found again and not kept
    for data in files * 3:
        _assert_identical(read_dct(data, order="zigzag"), want[data].to_order("zigzag"))
    assert len(calls) == 2 * 4 + 4 and len(reader._DIRECT_PLANS) == 8
    for data in files * 3:
        read_dct(data, crop=(2, 2))
    assert len(calls) == 2 * 4 + 4 + 3 * 5 and len(reader._DIRECT_PLANS) == 8


def test_evicting_the_oldest_entry_tolerates_a_concurrent_eviction() -> None:
    entries = {"a": 1, "b": 2}
    _drop_oldest(entries)
    assert entries == {"b": 2}
    _drop_oldest({})  # nothing to evict (another thread emptied it): no error

    class Raced(dict):  # another thread removed the oldest key between the lookup and the removal
        def __iter__(self):
            return iter(["gone", *super().__iter__()])

    raced = Raced(b=2)
    _drop_oldest(raced)  # (``del entries[oldest]`` raised KeyError here)
    assert raced == {"b": 2}

    class Changing(dict):  # ... or changed the dict while it was being iterated
        def __iter__(self):
            raise RuntimeError("dictionary changed size during iteration")

    _drop_oldest(Changing(b=2))
