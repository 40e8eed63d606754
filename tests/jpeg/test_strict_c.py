"""strict=True is strict on the libjpeg backend too (issue 15): the damage libjpeg's own Huffman decoder lets
through is reported by the C extension's decoder, valid files decode exactly as libjpeg decodes them, and a
tiny file claiming a huge frame is refused before anything is allocated.

Corrupt files are written symbol by symbol (tests/jpeg/jpeg_writer.py's bit writer and code tables), so each
one holds exactly the damage named; both backends must reject it under ``strict=True``.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from freqnets.jpeg import JpegError, JpegTooLargeError, JpegTruncatedError, _backends, read_dct
from freqnets.jpeg._markers import parse_header

from .jpeg_writer import AC_SYMBOLS, DC_SYMBOLS, _BitWriter, _dht, _segment, encode_baseline, random_coefficients

pytestmark = pytest.mark.skipif(not _backends.has_libjpeg(), reason="the C extension is not built")
# the shared data beside the checkout (FREQNETS_SHARED_DATA: elsewhere)
SHARED = Path(os.environ.get("FREQNETS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
BACKENDS = ("libjpeg", "python")


# --- a writer of hand-made entropy-coded data ------------------------------------------------------------------------


def _dc(bits: _BitWriter, diff: int) -> None:
    size = int(abs(diff)).bit_length()
    bits.write(DC_SYMBOLS.index(size), 4)
    if size:
        bits.write(diff if diff >= 0 else diff + (1 << size) - 1, size)


def _ac(bits: _BitWriter, run: int, value: int) -> None:
    """The AC symbol (run, size of value) and value's bits; value 0: the symbol (run, 0) (EOB, EOBRUN, ZRL)."""
    size = int(abs(value)).bit_length()
    bits.write(AC_SYMBOLS.index((run << 4) | size), 8)
    if size:
        bits.write(value if value >= 0 else value + (1 << size) - 1, size)


def _grey(scans: list[tuple[tuple[int, int, int, int], bytes]], *, progressive: bool, width: int = 8,
          restart_interval: int = 0) -> bytes:  # fmt: skip
    """An 8-pixel-high greyscale JPEG (quantisation table all ones) with the given scans:
    ``((Ss, Se, Ah, Al), entropy-coded bytes)`` each."""
    out = bytearray(b"\xff\xd8")
    out += _segment(0xDB, bytes([0]) + bytes([1] * 64))
    out += _segment(0xC2 if progressive else 0xC0, struct.pack(">BHHB", 8, 8, width, 1) + bytes([1, 0x11, 0]))
    out += _segment(0xC4, _dht(0, DC_SYMBOLS, 4) + _dht(1, AC_SYMBOLS, 8))
    if restart_interval:
        out += _segment(0xDD, struct.pack(">H", restart_interval))
    for (ss, se, ah, al), data in scans:
        out += _segment(0xDA, bytes([1, 1, 0x00, ss, se, (ah << 4) | al])) + data
    return bytes(out + b"\xff\xd9")


def _sequential_block(bits: _BitWriter, symbols: list[tuple[int, int]]) -> bytes:
    _dc(bits, 5)
    for run, value in symbols:
        _ac(bits, run, value)
    return bits.flush()


# DC first (Al 0), then the band 1..5 with one coefficient at k = 1 (Al 1): the start of a progressive file
def _progressive_start() -> list[tuple[tuple[int, int, int, int], bytes]]:
    dc, ac = _BitWriter(), _BitWriter()
    _dc(dc, 5)
    _ac(ac, 0, 1)  # k = 1, value 1 << 1
    _ac(ac, 0, 0)  # EOB
    return [((0, 0, 0, 0), dc.flush()), ((1, 5, 0, 1), ac.flush())]


def _corrupt_files() -> dict[str, bytes]:
    files = {}
    # sequential: after k = 1 three zero runs of 16 (ZRL) take k to 50, a run of 15 carries the next one to 65
    block = _sequential_block(_BitWriter(), [(0, 3), (15, 0), (15, 0), (15, 0), (15, 1)])
    files["AC coefficient index past 63"] = _grey([((0, 63, 0, 0), block)], progressive=False)
    # a valid block, then data bytes before EOI
    block = _sequential_block(_BitWriter(), [(0, 3), (0, 0)])
    files["extraneous bytes before marker"] = _grey([((0, 63, 0, 0), block + b"\x12\x34")], progressive=False)
    # two blocks, one per restart interval, two data bytes left before RST0
    first = _sequential_block(_BitWriter(), [(0, 3), (0, 0)])
    second = _sequential_block(_BitWriter(), [(0, -2), (0, 0)])
    data = first + b"\x12\x34" + b"\xff\xd0" + second
    files["extraneous bytes before a restart marker"] = _grey(
        [((0, 63, 0, 0), data)], progressive=False, width=16, restart_interval=1
    )
    # progressive first AC scan of the band 2..5: a run of 5 from k = 2 lands on 7
    start = _progressive_start()
    bits = _BitWriter()
    _ac(bits, 5, 1)
    files["AC coefficient index past the spectral band"] = _grey(
        [start[0], ((6, 63, 0, 0), _eob()), ((1, 1, 0, 0), _eob()), ((2, 5, 0, 0), bits.flush())], progressive=True
    )
    # refinement of the band 1..5: the symbol (run 5, size 1) skips the four zero-history coefficients
    # 2..5 and runs out of the band before its new coefficient
    bits = _BitWriter()
    _ac(bits, 5, 1)  # symbol (5, 1) and the new coefficient's sign bit (value 1: positive)
    bits.write(1, 1)  # the correction bit of k = 1 (nonzero history), met while skipping
    files["AC refinement index past the spectral band"] = _grey(
        [*start, ((1, 5, 1, 0), bits.flush())], progressive=True
    )
    return files


def _eob() -> bytes:
    bits = _BitWriter()
    _ac(bits, 0, 0)
    return bits.flush()


CORRUPT = _corrupt_files()


def _libjpeg_lets_through(data: bytes) -> bool:
    """libjpeg's own Huffman decoder reads ``data`` without a warning (the gap the strict decoder closes)."""
    try:
        _, _, warnings = _backends._jpegc.read_coefficients(data, 1 << 26, 100, False, libjpeg_huffman=True)
    except RuntimeError:
        return False
    return not warnings


@pytest.mark.parametrize("kind", sorted(CORRUPT))
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_kind_of_damage_is_rejected_under_strict(kind, backend) -> None:
    with pytest.raises(JpegTruncatedError, match="Corrupt JPEG data"):
        read_dct(CORRUPT[kind], backend=backend)
    lenient = read_dct(CORRUPT[kind], backend=backend, strict=False)
    assert lenient.warnings and lenient.backend == backend


def test_the_damage_is_what_libjpeg_lets_through() -> None:
    # the cases are not vacuous: libjpeg alone returns all but the restart case without a word
    through = {kind for kind, data in CORRUPT.items() if _libjpeg_lets_through(data)}
    assert through >= set(CORRUPT) - {"extraneous bytes before a restart marker"}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_lenient_reads_agree_between_backends(kind) -> None:
    # after damage the rest of the restart interval is left zero by both decoders
    c, p = (read_dct(CORRUPT[kind], backend=b, strict=False) for b in BACKENDS)
    for name in ("y", "cb", "cr"):
        a, b = getattr(c, name), getattr(p, name)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_hand_made_valid_files_read_alike() -> None:
    # the writer itself is right: the same files without the damage are read without warnings
    # k = 1, three zero runs of 16 to k = 50, a run of 13 to the last coefficient (63): no EOB after it
    symbols = [(0, 3), (15, 0), (15, 0), (15, 0), (13, 1)]
    valid = _grey([((0, 63, 0, 0), _sequential_block(_BitWriter(), symbols))], progressive=False)
    bits = _BitWriter()
    _ac(bits, 0, 0)  # EOB: only the correction bit of k = 1 follows
    bits.write(1, 1)
    progressive = _grey([*_progressive_start(), ((1, 5, 1, 0), bits.flush())], progressive=True)
    for data, expected in ((valid, {0: 5, 63: 1, 1: 3}), (progressive, {0: 5, 1: 3})):
        for backend in BACKENDS:
            plane = read_dct(data, backend=backend).y[:, 0, 0].numpy()
            got = {k: int(v) for k, v in enumerate(plane) if v}
            # natural order: zigzag index 63 is natural 63, zigzag 1 is natural 1
            assert got == expected, backend


# --- valid files: exactly libjpeg's coefficients ---------------------------------------------------------------------


def _pillow_files() -> list[bytes]:
    rng = np.random.default_rng(3)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(67, 91, 3)), 0), 1)
    pixels = np.clip((smooth - smooth.min()) / np.ptp(smooth) * 255, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    files = []
    variants = [
        {}, {"progressive": True}, {"progressive": True, "subsampling": 0}, {"subsampling": 1},
        {"restart_marker_blocks": 3}, {"restart_marker_rows": 1, "progressive": True}, {"optimize": True},
    ]  # fmt: skip
    for quality in (30, 75, 95):
        for options in variants:
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=quality, **options)
            files.append(buffer.getvalue())
    for progressive in (False, True):
        buffer = io.BytesIO()
        image.convert("L").save(buffer, "JPEG", progressive=progressive)
        files.append(buffer.getvalue())
    # non-interleaved scans, restart intervals and 4:1:1 from the test encoder
    for interleaved, restart in ((False, 0), (True, 2), (False, 5)):
        factors = [(4, 1), (1, 1), (1, 1)]
        planes = [random_coefficients(rng, 3, 12), random_coefficients(rng, 3, 3), random_coefficients(rng, 3, 3)]
        quant = rng.integers(1, 40, size=(3, 64))
        files.append(encode_baseline(planes, factors, (20, 90), quant, interleaved=interleaved,
                                     restart_interval=restart))  # fmt: skip
    return files


def _read_both(data: bytes) -> tuple[tuple, tuple]:
    read = _backends._jpegc.read_coefficients
    ours = read(data, 1 << 28, 1000, False)
    theirs = read(data, 1 << 28, 1000, False, libjpeg_huffman=True)
    return ((ours[1], ours[2], [bytes(p[2]) for p in ours[0]]), (theirs[1], theirs[2], [bytes(p[2]) for p in theirs[0]]))


def test_valid_files_decode_exactly_as_libjpeg_decodes_them() -> None:
    for data in _pillow_files():
        ours, theirs = _read_both(data)
        assert ours == theirs
        assert ours[1] == []  # no warnings


def test_shared_data_decodes_exactly_as_libjpeg_decodes_it() -> None:
    archives = [SHARED / "cifar10-jpeg" / "test.zip", SHARED / "imagenet-sample" / "images.zip"]
    if not any(a.exists() for a in archives):
        pytest.skip("shared data only on dev/CI machines")
    for archive, count in zip(archives, (300, 10), strict=True):
        if not archive.exists():
            continue
        with zipfile.ZipFile(archive) as z:
            names = sorted(n for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg")))[:count]
            for name in names:
                ours, theirs = _read_both(z.read(name))
                assert ours == theirs, name


# --- mutations: no backend returns what another finds corrupt --------------------------------------------------------


def _mutants(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    seeds = [f for f in _pillow_files() if len(f) < 20_000]
    out = []
    for i in range(count):
        data = bytearray(seeds[i % len(seeds)])
        start = parse_header(bytes(data)).first_scan.data_start
        for _ in range(int(rng.integers(1, 4))):
            position = int(rng.integers(start, len(data) - 2))
            data[position] ^= 1 << int(rng.integers(8))
        out.append(bytes(data))
    return out


def _outcome(data: bytes, backend: str, strict: bool):
    try:
        return read_dct(data, backend=backend, strict=strict)
    except JpegError as error:
        return type(error)


def _check_mutants(mutants: list[bytes]) -> None:
    accepted = 0
    for index, data in enumerate(mutants):
        c, p = (_outcome(data, b, True) for b in BACKENDS)
        c_ok, p_ok = not isinstance(c, type), not isinstance(p, type)
        assert c_ok == p_ok, f"mutant {index}: libjpeg {c if not c_ok else 'ok'}, python {p if not p_ok else 'ok'}"
        if c_ok:
            accepted += 1
            for plane in ("y", "cb", "cr"):
                ours, theirs = getattr(c, plane), getattr(p, plane)
                assert (ours is None) == (theirs is None), plane  # grey files have no chroma
                if ours is not None:
                    np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=plane)
    # both verdicts must occur, or the comparison above says nothing about one of them
    assert 0 < accepted < len(mutants), f"{accepted} of {len(mutants)} mutants accepted"


def test_mutated_files_rejected_alike() -> None:
    _check_mutants(_mutants(150, seed=0))


@pytest.mark.soak
def test_mutated_files_rejected_alike_many() -> None:
    _check_mutants(_mutants(2000, seed=1))


# --- bounded memory: a byte budget from the header, strict refusal before allocation --------------------------------


def _huge_claim() -> bytes:
    """A small valid 4:4:4 file whose frame header claims 9459 x 9459 pixels (issue 15's reproducer)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "JPEG", subsampling=0)
    data = buffer.getvalue()
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", 9459, 9459) + data[sof + 9 :]


def _budget(data: bytes) -> int:
    """The bytes the C reader allocates for ``data`` read whole: int16 MCU-padded arrays + float32 planes."""
    frame = parse_header(data).frame
    total = 0
    for c in frame.components:
        rows = -(-c.height_in_blocks // c.v) * c.v
        cols = -(-c.width_in_blocks // c.h) * c.h
        total += rows * cols * 128 + c.height_in_blocks * c.width_in_blocks * 256
    return total


def test_max_bytes_is_checked_against_the_header_before_decoding() -> None:
    data = _pillow_files()[0]
    need = _budget(data)
    header = parse_header(data)
    assert _backends.decode_libjpeg(data, header, max_bytes=need).planes is not None
    with pytest.raises(JpegTooLargeError, match="max_bytes"):
        _backends.decode_libjpeg(data, header, max_bytes=need - 1)
    with pytest.raises(RuntimeError) as raised:
        _backends._jpegc.read_coefficients(data, 1 << 28, 100, False, max_bytes=need - 1)
    assert raised.value.args[0].startswith(_backends.OVER_MAX_BYTES) and f"needs {need} bytes" in raised.value.args[0]


def test_huge_claim_is_refused_under_strict_before_allocating() -> None:
    with pytest.raises(JpegTruncatedError, match="first scan"):
        read_dct(_huge_claim(), backend="libjpeg")
    # max_bytes refuses it in every mode (the frame needs ~1.6 GB)
    with pytest.raises(JpegTooLargeError):
        _backends.decode_libjpeg(_huge_claim(), parse_header(_huge_claim()), max_bytes=256 << 20)


_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    from freqnets.jpeg import JpegError, read_dct
    data = bytes.fromhex(sys.stdin.read())
    read_dct(data[:0] + bytes.fromhex(sys.argv[1]), backend="libjpeg")  # warm up: a small valid file
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        read_dct(data, backend="libjpeg", strict=True)
        outcome = "ok"
    except JpegError as error:
        outcome = type(error).__name__
    seconds = time.perf_counter() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    print(json.dumps({"outcome": outcome, "seconds": seconds, "grown": grown}))
    """
)


def test_huge_claim_costs_no_memory_under_strict() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("ru_maxrss in KiB (Linux)")
    small = _pillow_files()[0]
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, small.hex()], input=_huge_claim().hex(), capture_output=True, text=True,
        timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["outcome"] == "JpegTruncatedError"
    assert measured["grown"] < 16 << 20  # was 1.5 GB (issue 15)
    assert measured["seconds"] < 1.0
