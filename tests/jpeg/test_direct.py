"""The direct decode path of the C extension (issue 17): bit for bit the libjpeg path, and the libjpeg path whenever
anything is unusual.

``_jpegc.read_direct`` decodes single-scan sequential Huffman files without libjpeg's framework. The reference is
the same read with the direct path switched off (``_backends.DIRECT = False``: libjpeg's
``jpeg_read_coefficients`` with the strict decoder, the path it replaces), checked here to be bit for bit the
same planes, fields and warnings for every file the direct path takes, and the same results or errors (type and
message, strict and lenient) for damaged files, which it must leave to that path. Batches of ``DCTReadCollate``
likewise. The python backend, the independent reference of both, is compared in test_fast_path.py.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.jpeg import DCTCollate, DCTReadCollate, JpegCoefficients, JpegError, _backends, read_dct, reader
from freqnets.jpeg._markers import parse_header

from .jpeg_writer import encode_baseline, random_coefficients
from .mutate import mutations, pillow_jpeg, seeds
from .test_fast_path import _assert_identical

pytestmark = pytest.mark.skipif(not _backends.has_libjpeg(), reason="the C extension is not built")

SHARED = Path(os.environ.get("FREQNETS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))

OPTIONS = [  # read_dct keyword arguments: whole planes, channel order, windows (early stop), chroma conversion
    {},
    {"order": "zigzag"},
    {"crop": (2, 3)},
    {"chroma": "420", "order": "zigzag"},
    {"crop": (28, 28), "chroma": "420", "order": "zigzag"},
    {"strict": False},
]


def _outcome(data: bytes, direct: bool, **options):
    """read_dct's result, or its exception's (type, message), with the direct path on or off."""
    saved = _backends.DIRECT
    _backends.DIRECT = direct
    try:
        return read_dct(data, **options)
    except JpegError as error:
        return type(error), str(error)
    finally:
        _backends.DIRECT = saved


def _same(data: bytes, **options) -> None:
    direct, libjpeg = _outcome(data, True, **options), _outcome(data, False, **options)
    if isinstance(libjpeg, tuple) or isinstance(direct, tuple):
        assert direct == libjpeg
    else:
        _assert_identical(direct, libjpeg)


def _taken(data: bytes, zigzag: bool = False) -> bool:
    """True when the direct path reads the whole file (it gives up on anything unusual)."""
    header = parse_header(data)
    capsule = _backends.direct_header(data[: header.first_scan.data_start], header)
    return capsule is not None and _backends._jpegc.read_direct(data, capsule, zigzag) is not None


def _pillow(size: tuple[int, int], mode: str = "RGB", seed: int = 0, **save) -> bytes:
    """A photo-like image (smooth, with noise), so every quality keeps many AC coefficients."""
    h, w = size
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(h, w, 3)), 0), 1)
    pixels = (smooth - smooth.min()) / max(np.ptp(smooth), 1e-9) * 200 + rng.integers(0, 56, (h, w, 3))
    image = Image.fromarray(pixels.astype(np.uint8))
    buffer = io.BytesIO()
    (image.convert("L") if mode == "L" else image).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def _generated() -> dict[str, bytes]:
    files = {}
    for quality in (1, 5, 20, 50, 75, 90, 95, 100):
        files[f"420-q{quality}"] = _pillow((37, 51), quality=quality, subsampling=2)
    for name, subsampling in (("420", 2), ("422", 1), ("444", 0)):
        for size in ((32, 32), (1, 1), (9, 17), (70, 33), (120, 161)):
            files[f"{name}-{size[0]}x{size[1]}"] = _pillow(size, quality=80, subsampling=subsampling, seed=size[1])
        files[f"{name}-optimized"] = _pillow((64, 80), quality=85, subsampling=subsampling, optimize=True)
        files[f"{name}-restart-blocks"] = _pillow((67, 91), quality=70, subsampling=subsampling, restart_marker_blocks=3)
        files[f"{name}-restart-rows"] = _pillow((67, 91), quality=70, subsampling=subsampling, restart_marker_rows=1)
    for size in ((8, 8), (13, 29), (100, 75)):
        files[f"gray-{size[0]}x{size[1]}"] = _pillow(size, "L", quality=75)
    files["gray-restart"] = _pillow((50, 60), "L", quality=60, restart_marker_blocks=1)
    files["gray-optimized-q100"] = _pillow((40, 48), "L", quality=100, optimize=True)
    # layouts Pillow does not write: 4:1:1, 4:4:0 and a 2x2-sampled greyscale frame; restart intervals of odd lengths
    rng = np.random.default_rng(11)
    quant = rng.integers(1, 60, (3, 64))
    planes = [random_coefficients(rng, 5, 12), random_coefficients(rng, 5, 3), random_coefficients(rng, 5, 3)]
    files["411"] = encode_baseline(planes, [(4, 1), (1, 1), (1, 1)], (40, 90), quant)
    files["411-restart-5"] = encode_baseline(planes, [(4, 1), (1, 1), (1, 1)], (40, 90), quant, restart_interval=5)
    planes = [random_coefficients(rng, 6, 4), random_coefficients(rng, 3, 4), random_coefficients(rng, 3, 4)]
    files["440"] = encode_baseline(planes, [(1, 2), (1, 1), (1, 1)], (45, 30), quant, restart_interval=2)
    files["gray-2x2"] = encode_baseline([random_coefficients(rng, 3, 5)], [(2, 2)], (21, 37), quant[:1])
    return files


GENERATED = _generated()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_files_are_taken_and_bit_for_bit_the_libjpeg_path(name) -> None:
    data = GENERATED[name]
    assert _taken(data), name  # the comparisons below are not vacuous
    for options in OPTIONS:
        _same(data, **options)
    assert _outcome(data, True).warnings == ()


def _row_files() -> dict[str, bytes]:
    # Output rows of every width from 1 to 17 blocks: every remainder of the row writers' 8- and 4-block steps (the
    # last 1..3 blocks of a row are stored 2 and 1 floats at a time), for luma and chroma planes.
    files = {}
    for name, subsampling in (("420", 2), ("444", 0)):
        for blocks in range(1, 18):
            files[f"{name}-w{blocks}"] = _pillow((16, 8 * blocks), quality=90, subsampling=subsampling, seed=blocks)
    for blocks in (1, 2, 3, 5, 6, 7, 9):
        files[f"gray-w{blocks}"] = _pillow((8, 8 * blocks), "L", quality=90, seed=blocks)
    # Row buffers on both sides of the 128 blocks dj_decode keeps on its stack (more: allocated): a greyscale MCU
    # row of 1024 px is 128 blocks; ten 4:2:0 MCU rows 32 px wide 120 blocks, eleven 132; 4:4:4 -> 4:2:0 (a
    # carried chroma row of 4 blocks each): ten MCU rows 128, eleven 140.
    files["gray-1024"] = _pillow((8, 1024), "L", quality=80)
    files["gray-1032"] = _pillow((8, 1032), "L", quality=80)
    files["420-rows10"] = _pillow((160, 32), quality=80, subsampling=2)
    files["420-rows11"] = _pillow((176, 32), quality=80, subsampling=2)
    files["444-rows10"] = _pillow((80, 32), quality=80, subsampling=0)
    files["444-rows11"] = _pillow((88, 32), quality=80, subsampling=0)
    return files


ROW_FILES = _row_files()


@pytest.mark.parametrize("name", sorted(ROW_FILES))
def test_row_widths_and_row_buffers_bit_for_bit_the_libjpeg_path_and_python(name) -> None:
    data = ROW_FILES[name]
    assert _taken(data), name
    for options in ({}, {"order": "zigzag"}, {"chroma": "420"}, {"crop": (1, 1)}):
        _same(data, **options)
    # both C paths share the row writers: the python backend (NumPy products) is their independent reference
    for order in ("natural", "zigzag"):
        direct, python = read_dct(data, order=order), read_dct(data, order=order, backend="python")
        assert direct.backend == "libjpeg" and len(direct.planes()) == len(python.planes())
        for x, y in zip((*direct.planes(), direct.quant_tables), (*python.planes(), python.quant_tables), strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)


def _zip_jpegs(path: Path, count: int) -> list[bytes]:
    if not path.exists():
        pytest.skip(f"{path} not present (shared data only on dev/CI machines; FREQNETS_SHARED_DATA names it)")
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith((".jpg", ".jpeg")))
        return [archive.read(n) for n in names[:count]]


@pytest.mark.parametrize(("archive", "count"), [("cifar10-jpeg/test.zip", 300), ("imagenet-sample/images.zip", 40)])
def test_shared_data_bit_for_bit_the_libjpeg_path(archive, count) -> None:
    files = _zip_jpegs(SHARED / archive, count)
    taken = 0
    for data in files:
        taken += _taken(data)
        for options in OPTIONS[:5] if count <= 40 else OPTIONS[:2]:
            _same(data, **options)
    assert taken >= 0.9 * len(files)  # progressive photos are the libjpeg path's


def _damaged() -> list[tuple[str, bytes]]:
    base = _pillow((67, 91), quality=80, subsampling=2, restart_marker_blocks=4)
    eoi = base.rindex(b"\xff\xd9")
    out = [("cut-" + str(n), base[:n]) for n in (len(base) - 1, len(base) - 2, len(base) - 40, len(base) // 2, 700)]
    restarts = [i for i in range(parse_header(base).first_scan.data_start, eoi) if base[i] == 0xFF and
                0xD0 <= base[i + 1] <= 0xD7]  # fmt: skip
    assert len(restarts) > 5
    wrong = bytearray(base)
    wrong[restarts[3] + 1] = 0xD0 + (base[restarts[3] + 1] - 0xD0 + 2) % 8
    out.append(("restart-out-of-sequence", bytes(wrong)))
    out.append(("restart-missing", base[: restarts[5]] + base[restarts[5] + 2 :]))
    out.append(("restart-extra-at-end", base[:eoi] + b"\xff\xd0" + base[eoi:]))
    out.append(("bytes-before-eoi", base[:eoi] + b"\x12\x34" + base[eoi:]))
    out.append(("comment-before-eoi", base[:eoi] + b"\xff\xfe\x00\x04ab" + base[eoi:]))
    out.append(("garbage-after-eoi", base + b"\x00\x01garbage\xff\xd9"))
    out.append(("no-eoi", base[:eoi]))
    second = base.index(b"\xff\xda")
    out.append(("second-scan", base[:eoi] + base[second:eoi] + base[eoi:]))
    plain = _pillow((64, 64), quality=90, subsampling=0)
    plain_eoi = plain.rindex(b"\xff\xd9")
    out.append(("second-scan-444", plain[:plain_eoi] + plain[plain.index(b"\xff\xda") : plain_eoi] + b"\xff\xd9"))
    start = parse_header(plain).first_scan.data_start
    for i, position in enumerate((start + 3, start + 200, (start + plain_eoi) // 2, plain_eoi - 3)):
        flipped = bytearray(plain)
        flipped[position] ^= 0x5A
        out.append((f"flip-{i}", bytes(flipped)))
    out.append(("marker-in-scan", plain[: start + 300] + b"\xff\xd9" + plain[start + 300 :]))
    tall = _pillow((400, 48), quality=85, subsampling=2)  # damage below a window's rows: only a full read sees it
    tall_eoi = tall.rindex(b"\xff\xd9")
    for i, back in enumerate((3, 30, 300)):
        below = bytearray(tall)
        below[tall_eoi - back] ^= 0xA5
        out.append((f"below-window-{i}", bytes(below)))
    out.append(("below-window-cut", tall[: tall_eoi - 200]))
    return out


DAMAGED = _damaged()


@pytest.mark.parametrize(("name", "data"), DAMAGED, ids=[name for name, _ in DAMAGED])
def test_damaged_files_as_today(name, data) -> None:
    for options in ({}, {"strict": False}, {"crop": (2, 3)}, {"crop": (2, 3), "strict": False},
                    {"crop": (4, 4), "chroma": "420", "order": "zigzag"}):  # fmt: skip
        _same(data, **options)


def test_mutated_files_as_today() -> None:
    # the fuzzer's mutations of its seeds: every outcome (result, warnings, error type and message) unchanged
    rng = np.random.default_rng(17)
    count = 0
    for seed in seeds().values():
        for _, data in mutations(seed, rng, 12):
            for options in ({}, {"strict": False}, {"crop": (2, 3)}, {"chroma": "420"}):
                _same(data, **options)
            count += 1
    assert count >= 60


def test_headers_it_does_not_read_are_left_to_libjpeg() -> None:
    def capsule(data: bytes):
        header = parse_header(data)
        return _backends.direct_header(data[: header.first_scan.data_start], header)

    assert capsule(pillow_jpeg((32, 32))) is not None
    assert capsule(pillow_jpeg((32, 32), progressive=True)) is None
    rng = np.random.default_rng(3)
    planes = [random_coefficients(rng, 2, 2), random_coefficients(rng, 2, 2), random_coefficients(rng, 2, 2)]
    quant = rng.integers(1, 40, (3, 64))
    separate = encode_baseline(planes, [(1, 1), (1, 1), (1, 1)], (16, 16), quant, interleaved=False)
    assert capsule(separate) is None  # one scan per component
    data = pillow_jpeg((32, 32))
    header = parse_header(data)
    prefix = data[: header.first_scan.data_start]
    grids, budget = [(4, 4), (2, 2), (2, 2)], (0, 24, 1 << 26, 4096)
    assert _backends._jpegc.direct_header(prefix, grids, *budget) is not None
    assert _backends._jpegc.direct_header(prefix, [(4, 4), (2, 2), (2, 3)], *budget) is None  # another parse's grid
    assert _backends._jpegc.direct_header(prefix[:-1], grids, *budget) is None  # not the whole header
    assert _backends._jpegc.direct_header(prefix + b"\x00", grids, *budget) is None


def test_read_direct_is_safe_with_any_bytes() -> None:
    # the capsule of one header with another file's bytes, short and empty data: no crash, no read past the data
    data = pillow_jpeg((48, 40))
    header = parse_header(data)
    capsule = _backends.direct_header(data[: header.first_scan.data_start], header)
    others = [pillow_jpeg((48, 40), seed=1, quality=30), pillow_jpeg((48, 40), "L"), b"", data[:10], data[:-1],
              bytes(len(data)), b"\xff" * len(data), data[: header.first_scan.data_start]]  # fmt: skip
    for other in others:
        result = _backends._jpegc.read_direct(other, capsule, True, None, None)
        assert result is None or len(result) == 4
    with pytest.raises(TypeError):
        _backends._jpegc.read_direct(bytearray(data), capsule, False)
    with pytest.raises(ValueError):
        _backends._jpegc.read_direct(data, b"not a capsule", False)
    with pytest.raises(ValueError, match="windows"):
        _backends._jpegc.read_direct(data, capsule, False, [(0, 0, 1, 1)])
    assert _backends._jpegc.read_direct(data, capsule, False, [(0, 0, 9, 1), (0, 0, 1, 1), (0, 0, 1, 1)]) is None


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["stacked", "planes"])
def test_batches_bit_for_bit_the_libjpeg_path(threads, layout) -> None:
    files = [GENERATED[name] for name in ("420-32x32", "444-70x33", "422-optimized", "gray-13x29", "411",
                                          "420-restart-rows", "440")]  # fmt: skip
    files += [data for name, data in DAMAGED if name.startswith(("cut-", "flip-", "restart-", "below-"))]
    samples = [(data, i) for i, data in enumerate(files)]
    for grid in ((6, 8), (3, 2)):
        collate = DCTReadCollate(DCTCollate(layout, 20, 6, "420", grid=grid), strict=False, threads=threads)
        saved = _backends.DIRECT
        try:
            _backends.DIRECT = False
            want = collate(samples)
            _backends.DIRECT = True
            got = collate(samples)
        finally:
            _backends.DIRECT = saved
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_results_own_their_memory_and_reads_agree_over_repeats() -> None:
    data = GENERATED["420-70x33"]
    assert _taken(data)
    a, b = read_dct(data), read_dct(data)
    for x, y in zip((*a.planes(), a.quant_tables), (*b.planes(), b.quant_tables), strict=True):
        assert x.data_ptr() != y.data_ptr() and torch.equal(x, y)
    reader._LAST = None  # the plan again from the header cache
    _assert_identical(read_dct(data), a)


@pytest.mark.parametrize("name", ["420-70x33", "gray-13x29", "444-9x17"])
@pytest.mark.parametrize("options", [{}, {"order": "zigzag"}, {"crop": (2, 3)}, {"chroma": "420"}])
def test_the_result_read_direct_builds_is_the_one_result_builds(name, options) -> None:
    # read_dct's direct path has the C call build its result (fields, tensors, __post_init__); reader._result,
    # which builds the libjpeg path's results in Python, is the reference: the same object from the same capsules
    data = GENERATED[name]
    built = read_dct(data, **options)
    plan = reader._LAST[2]
    assert plan.direct is not None
    args = (data, plan.direct, plan.zigzag, plan.windows, plan.down)
    reference = reader._result(plan, _backends._jpegc.read_direct(*args))
    _assert_identical(built, reference)
    assert list(vars(built)) == list(vars(reference))  # the same fields in the same order
    assert vars(built) is not plan.fields and vars(built).keys() == plan.fields.keys() | {"y", "quant_tables"}
    # another conversion than torch's, called once per capsule in the order of the planes, then the tables
    seen = []

    def convert(capsule):
        seen.append(torch.from_dlpack(capsule))
        return seen[-1]

    other = _backends._jpegc.read_direct(*args, plan.fields, (JpegCoefficients, convert))
    assert [x is y for x, y in zip(seen, (*other.planes(), other.quant_tables), strict=True)] == [True] * len(seen)
    _assert_identical(other, reference)


def test_read_direct_result_errors_propagate() -> None:
    data = GENERATED["420-70x33"]
    read_dct(data)
    plan = reader._LAST[2]
    args = (data, plan.direct, plan.zigzag, plan.windows, plan.down)
    calls = []

    def fail_third(capsule):
        calls.append(capsule)
        if len(calls) == 3:
            raise RuntimeError("no tensor")
        return torch.from_dlpack(capsule)

    # a conversion failing after torch took some capsules: its exception, not a SystemError (the capsules' destructors
    # run with the exception set and must leave it)
    with pytest.raises(RuntimeError, match="no tensor"):
        _backends._jpegc.read_direct(*args, plan.fields, (JpegCoefficients, fail_third))
    for fields, result in (([], (JpegCoefficients, torch.from_dlpack)), (plan.fields, (JpegCoefficients,)),
                           (plan.fields, ("JpegCoefficients", torch.from_dlpack))):  # fmt: skip
        with pytest.raises(TypeError, match="fields must be a dict and result"):
            _backends._jpegc.read_direct(*args, fields, result)
    with pytest.raises(TypeError, match="read_direct"):
        _backends._jpegc.read_direct(*args, plan.fields)
    # fields=None: the capsules, as without the two arguments
    assert isinstance(_backends._jpegc.read_direct(*args, None, None), tuple)


def test_damage_just_past_a_window_as_today() -> None:
    # With a window the libjpeg path stops reading after the window's last iMCU row (its decoder still decodes the
    # bits it read ahead, so damage just past that row may be reported; below it, not). The direct path reads on a
    # little further and must agree on every file: every byte of the middle of the scan damaged in turn.
    data = _pillow((160, 40), quality=90, subsampling=2, seed=4)
    start, end = parse_header(data).first_scan.data_start, data.rindex(b"\xff\xd9")
    outcomes = set()
    for position in range(start + (end - start) // 3, start + 2 * (end - start) // 3):
        damaged = bytearray(data)
        damaged[position] ^= 0x3C
        for strict in (True, False):
            _same(bytes(damaged), crop=(2, 3), strict=strict)
        outcomes.add(isinstance(_outcome(bytes(damaged), True, crop=(2, 3)), tuple))
    assert outcomes == {True, False}  # some damage is seen (above the window or just past it), some is not


def test_budget_limits_are_checked_before_decoding() -> None:
    # read_direct refuses what check_read's per-file limits refuse (the usual path then refuses or reads it as before)
    data = GENERATED["444-120x161"]
    header = parse_header(data)
    prefix, grids = data[: header.first_scan.data_start], [(c.height_in_blocks, c.width_in_blocks) for c in
                                                           header.frame.components]  # fmt: skip
    blocks, scan_bytes = header.coefficients // 64, len(data) - header.first_scan.data_start
    read = _backends._jpegc.read_direct
    assert read(data, _backends._jpegc.direct_header(prefix, grids, 8 * scan_bytes, blocks, 1 << 26, 4096), 0)
    assert read(data, _backends._jpegc.direct_header(prefix, grids, 8 * scan_bytes + 1, blocks, 1 << 26, 4096), 0) is None
    assert read(data, _backends._jpegc.direct_header(prefix, grids, 0, blocks, blocks - 1, 0), 0) is None
    assert read(data, _backends._jpegc.direct_header(prefix, grids, 0, blocks, blocks, 0), 0)
    many = data[:-2] + b"\xff\xda" * 3 + data[-2:]  # SOS markers counted in the data: 4 scans' work
    capsule = _backends._jpegc.direct_header(prefix, grids, 0, blocks, 4 * blocks - 1, 0)
    assert read(many, capsule, 0) is None and read(data, capsule, 0)
