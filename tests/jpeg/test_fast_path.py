"""The libjpeg backend's fast path of read_dct (issue 17): bit for bit the general path's results and errors.

The general path (options checked per call, NumPy/torch wrappers around bytearrays, the dataclass's
``__init__``) is the reference: ``reader._read_fast`` is switched off to get it. The python backend is the
independent one. Also: the C decoder's own checks of Huffman tables (libjpeg's start_pass no longer runs for
sequential scans) give libjpeg's errors, and the DLPack planes equal the bytearray planes.
"""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.jpeg import JpegError, JpegTooLargeError, JpegTruncatedError, _backends, read_dct, reader
from freqnets.jpeg.coefficients import JpegCoefficients

from .jpeg_writer import encode_baseline, random_coefficients

pytestmark = pytest.mark.skipif(not _backends.has_libjpeg(), reason="the C extension is not built")


def _jpeg(size: tuple[int, int], mode: str = "RGB", seed: int = 0, **save) -> bytes:
    h, w = size
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(h, w, 3)), 0), 1)
    pixels = np.clip((smooth - smooth.min()) / np.ptp(smooth) * 255, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image.convert("L") if mode == "L" else image).save(buffer, "JPEG", **{"quality": 75, **save})
    return buffer.getvalue()


def _files() -> dict[str, bytes]:
    rng = np.random.default_rng(5)
    planes = [random_coefficients(rng, 3, 12), random_coefficients(rng, 3, 3), random_coefficients(rng, 3, 3)]
    quant = rng.integers(1, 40, (3, 64))
    return {
        "cifar-420": _jpeg((32, 32)),
        "420-odd": _jpeg((47, 33), subsampling=2),
        "422": _jpeg((47, 33), subsampling=1),
        "444": _jpeg((40, 56), subsampling=0),
        "gray": _jpeg((47, 33), "L"),
        "progressive": _jpeg((67, 91), progressive=True),
        "restart": _jpeg((67, 91), restart_marker_blocks=3),
        "photo-420": _jpeg((240, 320), seed=2, quality=90),
        "411-non-interleaved": encode_baseline(planes, [(4, 1), (1, 1), (1, 1)], (20, 90), quant, interleaved=False),
    }


FILES = _files()
OPTIONS = [  # read_dct keyword arguments
    {},
    {"order": "zigzag"},
    {"order": "zigzag", "chroma": "420"},
    {"chroma": "444"},  # upsampling: converted after reading (the general path)
    {"chroma": "422", "order": "zigzag"},
    {"crop": (4, 6)},
    {"crop": (28, 28), "chroma": "420", "order": "zigzag"},
    {"strict": False},
]


def _general(data: bytes, monkeypatch, **kwargs) -> JpegCoefficients:
    with monkeypatch.context() as patch:
        patch.setattr(reader, "_read_fast", lambda data, options: None)
        return read_dct(data, **kwargs)


def _assert_identical(a: JpegCoefficients, b: JpegCoefficients) -> None:
    assert type(a) is type(b) is JpegCoefficients
    for name in JpegCoefficients.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape, name
            assert x.is_contiguous() and y.is_contiguous(), name
            assert torch.equal(x, y), name  # float32 products of integers: bit for bit
        else:
            assert x == y, name
    assert vars(a).keys() == vars(b).keys()  # no attribute more or less than the dataclass's __init__ sets


@pytest.mark.parametrize("options", OPTIONS, ids=[str(o) for o in OPTIONS])
@pytest.mark.parametrize("name", sorted(FILES))
def test_fast_path_equals_general_path_and_python(name, options, monkeypatch) -> None:
    data = FILES[name]
    fast = read_dct(data, **options)
    again = read_dct(data, **options)  # from the plan cache
    _assert_identical(fast, _general(data, monkeypatch, **options))
    _assert_identical(fast, again)
    python = read_dct(data, backend="python", **options)
    for x, y in zip(fast.planes(), python.planes(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-3 if options.get("chroma") else 0)
    assert fast.backend == "libjpeg"


def test_fast_results_run_the_dataclass_checks(monkeypatch) -> None:
    # the fast path builds its results without __init__ (its frozen setattr costs a sixth of a small read) but
    # must still run the checks __init__ would
    data, served = FILES["cifar-420"], []
    fast = reader._read_fast

    def spy(*args):
        served.append(fast(*args))
        return served[-1]

    monkeypatch.setattr(reader, "_read_fast", spy)
    read_dct(data)
    assert served and served[-1] is not None  # this file is one the fast path reads

    def refuse(self):
        raise ValueError("checked")

    monkeypatch.setattr(JpegCoefficients, "__post_init__", refuse)
    with pytest.raises(ValueError, match="checked"):
        read_dct(data)


def test_results_own_their_memory() -> None:
    data = FILES["cifar-420"]
    a, b = read_dct(data), read_dct(data)
    reference = b.y.clone()
    a.y.fill_(7.0)
    a.quant_tables.zero_()
    assert torch.equal(b.y, reference) and b.quant_tables.abs().sum() > 0
    del b
    c = read_dct(data)
    assert torch.equal(c.y, reference)


def test_equal_arguments_of_other_types_are_still_refused() -> None:
    # 1 == True == 1.0 share a hash: the cache of checked options must not let them through
    data = FILES["cifar-420"]
    read_dct(data, strict=True, max_pixels=4000, max_bytes=1 << 25)
    with pytest.raises(TypeError, match="strict"):
        read_dct(data, strict=1, max_pixels=4000, max_bytes=1 << 25)
    read_dct(data, max_pixels=4000)
    with pytest.raises(ValueError, match="max_pixels"):
        read_dct(data, max_pixels=4.0e3)
    with pytest.raises(ValueError, match="max_bytes"):
        read_dct(data, max_bytes=True)
    with pytest.raises(ValueError, match="crop"):
        read_dct(data, crop=(4.0, 4))
    with pytest.raises(ValueError, match="crop"):
        read_dct(data, crop=[4, 4, 4])
    assert read_dct(data, crop=[4, 4]).y.shape == read_dct(data, crop=(4, 4)).y.shape


def test_limits_and_damage_as_the_general_path(monkeypatch) -> None:
    data = FILES["photo-420"]
    for kwargs, error in (({"max_bytes": 100_000}, JpegTooLargeError), ({"max_pixels": 1000}, JpegTooLargeError)):
        with pytest.raises(error) as fast:
            read_dct(data, **kwargs)
        with pytest.raises(error) as general:
            _general(data, monkeypatch, **kwargs)
        assert str(fast.value) == str(general.value)
    cut = data[: len(data) // 2]
    with pytest.raises(JpegTruncatedError) as fast:
        read_dct(cut)
    with pytest.raises(JpegTruncatedError) as general:
        _general(cut, monkeypatch)
    assert str(fast.value) == str(general.value)
    _assert_identical(read_dct(cut, strict=False), _general(cut, monkeypatch, strict=False))
    # far too short for its first scan: refused under strict, read within the lower limit otherwise
    tiny = data[:700]
    for strict in (True, False):
        try:
            expected = _general(tiny, monkeypatch, strict=strict)
        except JpegError as error:
            with pytest.raises(type(error), match=f"^{re.escape(str(error))}$"):
                read_dct(tiny, strict=strict)
        else:
            _assert_identical(read_dct(tiny, strict=strict), expected)


# --- the C decoder's checks of Huffman tables (sequential scans skip libjpeg's start_pass) ------------------------


def _dht_offsets(data: bytes) -> list[int]:
    """Offsets of the table class/id byte of each DHT table in ``data``."""
    offsets, pos = [], 2
    while data[pos] == 0xFF and data[pos + 1] != 0xDA:
        marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker == 0xC4:
            table = pos + 4
            while table < pos + 2 + length:
                offsets.append(table)
                table += 17 + sum(data[table + 1 : table + 17])
        pos += 2 + length
    return offsets


def _bad_tables() -> dict[str, bytes]:
    base = _jpeg((16, 16), subsampling=2)
    dc, ac = _dht_offsets(base)[0], _dht_offsets(base)[1]  # Pillow writes the luma DC table, then luma AC
    assert base[dc] == 0x00 and base[ac] == 0x10
    out = {}
    data = bytearray(base)
    counts = list(data[dc + 1 : dc + 17])
    for _ in range(2):  # two of the longest codes become 1-bit codes: the second is all ones
        counts[max(i for i, n in enumerate(counts) if n)] -= 1
        counts[0] += 1
    data[dc + 1 : dc + 17] = bytes(counts)
    out["code space overflow"] = bytes(data)
    data = bytearray(base)
    data[dc + 17] = 16  # a DC magnitude category past 15
    out["dc symbol 16"] = bytes(data)
    data = bytearray(base)
    counts = list(data[ac + 1 : ac + 17])
    counts[max(i for i, n in enumerate(counts) if n)] -= 1  # the longest AC code moves to length 2: overflow
    counts[1] += 1
    data[ac + 1 : ac + 17] = bytes(counts)
    out["ac code space overflow"] = bytes(data)
    return out


@pytest.mark.parametrize("name", sorted(_bad_tables()))
def test_bad_huffman_tables_give_libjpegs_errors(name) -> None:
    data = _bad_tables()[name]
    read = _backends._jpegc.read_coefficients
    outcomes = []
    for libjpeg_huffman in (False, True):
        try:
            _, _, warnings = read(data, 1 << 26, 100, False, libjpeg_huffman=libjpeg_huffman)
        except RuntimeError as error:
            outcomes.append(("error", error.args[0]))
        else:
            outcomes.append(("read", bool(warnings)))
    ours, theirs = outcomes
    assert ours == theirs == ("error", "Bogus Huffman table definition")
    with pytest.raises(JpegError, match="Bogus Huffman table definition"):
        read_dct(data)


def test_cached_tables_are_checked_once_per_content() -> None:
    # a bad table after many good reads (its content not cached) still fails; good reads after it still work
    good = FILES["cifar-420"]
    for _ in range(3):
        read_dct(good)
    with pytest.raises(JpegError, match="Bogus Huffman table"):
        read_dct(_bad_tables()["code space overflow"])
    assert read_dct(good).y.shape == (64, 4, 4)


def test_dlpack_planes_equal_bytearray_planes() -> None:
    read = _backends._jpegc.read_coefficients
    for data in FILES.values():
        for zigzag in (False, True):
            planes, tables, _ = read(data, 1 << 26, 100, zigzag)
            dl_planes, dl_tables, _ = read(data, 1 << 26, 100, zigzag, dlpack=True)
            n = len(planes)
            np.testing.assert_array_equal(
                torch.from_dlpack(dl_tables).numpy(), np.frombuffer(tables, np.uint16).reshape(n, 64)
            )
            for (rows, cols, raw), (dl_rows, dl_cols, capsule) in zip(planes, dl_planes, strict=True):
                assert (rows, cols) == (dl_rows, dl_cols)
                tensor = torch.from_dlpack(capsule)
                assert tensor.shape == (64, rows, cols) and tensor.dtype == torch.float32
                np.testing.assert_array_equal(tensor.numpy(), np.frombuffer(raw, np.float32).reshape(64, rows, cols))
    # capsules nobody takes free their buffers (run under a memory checker this would show a leak otherwise)
    for _ in range(100):
        read(FILES["photo-420"], 1 << 26, 100, False, dlpack=True)


# --- DCTReadCollate's planned batches (match_headers, read_planned) ---------------------------------------------


def _collate_files() -> list[bytes]:
    return [
        FILES["cifar-420"], FILES["420-odd"], FILES["444"], FILES["gray"], FILES["progressive"], FILES["422"],
        FILES["411-non-interleaved"],  # read_dct's conversion: the general path
        FILES["photo-420"][: len(FILES["photo-420"]) * 2 // 3],  # damaged: the general path, lenient
    ]  # fmt: skip


@pytest.mark.parametrize("layout", ["stacked", "planes"])
@pytest.mark.parametrize("normalize", ["none", "float32", "float64"])
@pytest.mark.parametrize("threads", [1, 3])
def test_planned_batches_equal_read_dct_then_collate(layout, normalize, threads) -> None:
    from freqnets.jpeg import DCTCollate, DCTReadCollate

    stats = {
        "none": None,
        "float32": (torch.linspace(-3, 3, 192), torch.linspace(0.5, 4, 192)),
        "float64": (torch.linspace(-3, 3, 192, dtype=torch.float64), torch.linspace(0.5, 4, 192, dtype=torch.float64)),
    }[normalize]
    collate = DCTCollate(layout, 20, 6, "420", normalize=stats, grid=(6, 8))
    files = _collate_files()
    samples = [(data, i) for i, data in enumerate(files)]
    reader_collate = DCTReadCollate(collate, strict=False, threads=threads)
    got = reader_collate(samples)
    coeffs = [read_dct(d, order="zigzag", chroma="420", crop=(6, 8), strict=False) for d in files]
    want = collate(list(zip(coeffs, range(len(files)), strict=True)))
    again = reader_collate(samples[::-1])  # known headers, another order
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    for a, b in zip(again, want, strict=True):
        assert torch.equal(a, b.flip(0))


def test_planned_batches_forget_headers_past_their_limit(monkeypatch) -> None:
    from freqnets.jpeg import DCTCollate, DCTReadCollate

    collate = DCTReadCollate(DCTCollate("planes", grid=(4, 4)))
    monkeypatch.setattr(DCTReadCollate, "MAX_HEADERS", 2)
    files = [_jpeg((32, 32), seed=0, quality=q) for q in (50, 60, 70, 80, 90)]  # five distinct headers
    for _ in range(2):
        batch = collate([(d, 0) for d in files])
        assert len(collate._known) <= 2 + len(files)
        for i, data in enumerate(files):
            c = read_dct(data, order="zigzag", chroma="420", crop=(4, 4))
            assert torch.equal(batch.y[i], c.y)


def test_read_planned_refuses_plans_and_buffers_that_do_not_fit() -> None:
    read = _backends._jpegc.read_planned
    data = FILES["cifar-420"]
    y, c = np.zeros(64 * 16, np.float32), np.zeros(128 * 4, np.float32)
    kernel = bytes(512)
    good = (1 << 26, None, 2, 2, [(0, 0, 64, 16, 4, 4, 4), (1, 0, 64, 4, 2, 1, 1), (1, 256, 64, 4, 2, 1, 1)], 0, 0, 1)
    # chroma 2x2 blocks averaged to 1x1 (a zero kernel: zeros), luma written
    assert read([data], [0], [good], y, c, 64 * 16, 128 * 4, 1, 100, True, kernel, 1 << 30, 1) == [0]
    assert y.any() and not c.any()
    y[:] = 0
    bad_plans = [
        (1 << 26, None, 2, 2, [(0, 1, 64, 16, 4, 4, 4)], 0, 0, 1),  # one float past the sample
        (1 << 26, None, 3, 2, [(0, 0, 64, 16, 4, 4, 4)], 0, 0, 1),  # factor 3
        (1 << 26, None, 2, 2, [(2, 0, 64, 16, 4, 4, 4)], 0, 0, 1),  # no third buffer
        (1 << 26, None, 2, 2, [(0, 0, 65, 16, 4, 4, 4)], 0, 0, 1),  # 65 channels
        (1 << 26, [(0, 0, 4, 4), (0, 0, 2, 2)], 2, 2, [(0, 0, 64, 16, 4, 4, 4)], 0, 0, 1),  # windows != outs
    ]
    for plan in bad_plans:
        with pytest.raises(ValueError, match="read_planned"):
            read([data], [0], [plan], y, c, 64 * 16, 128 * 4, 1, 100, True, kernel, 1 << 30, 1)
    with pytest.raises(ValueError, match="fewer samples"):
        read([data, data], [0, 0], [good], y, c, 64 * 16, 128 * 4, 1, 100, True, kernel, 1 << 30, 1)
    with pytest.raises(ValueError, match="indices"):
        read([data], [1], [good], y, c, 64 * 16, 128 * 4, 1, 100, True, kernel, 1 << 30, 1)
    with pytest.raises(ValueError, match="finish"):  # x too small for the stacked batch
        finish = (np.zeros(10, np.float32), 64, 64, 4, 4, 2, 2, 2, 2, None, None)
        read([data], [0], [good], y, c, 64 * 16, 128 * 4, 1, 100, True, kernel, 1 << 30, 1, finish)
    assert not y.any() and not c.any()  # nothing was written by the refused calls
    assert read([data], [-1], [], y, c, 64 * 16, 128 * 4, 1, 100, True, kernel, 1 << 30, 1) == [-1]
    assert _backends._jpegc.match_headers([data, b"\xff\xd8", data[:10]], [data[:200], data[:100]]) == [0, -1, -1]
