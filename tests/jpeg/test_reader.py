"""read_dct against independent references: known coefficients written by a test-side encoder,
libjpeg (Pillow's decoder and our compiled backend), jpeg2dct, and the JPEG standard's tables."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.jpeg import JpegCoefficients, JpegTruncatedError, read_dct
from freqnets.jpeg._backends import available_backends, has_jpeg2dct, has_libjpeg
from freqnets.transforms import block_idct2, channels_to_blocks, zigzag_indices

from .jpeg_writer import encode_baseline, random_coefficients

needs_libjpeg = pytest.mark.skipif(not has_libjpeg(), reason="compiled libjpeg backend not built")
needs_jpeg2dct = pytest.mark.skipif(not has_jpeg2dct(), reason="jpeg2dct not installed")

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"

# T.81 Annex K, Table K.1 (luminance) and K.2 (chrominance), natural order: libjpeg's quality 50.
ANNEX_K_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]  # fmt: skip
ANNEX_K_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                  47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32  # fmt: skip


def _image(size: tuple[int, int], mode: str, seed: int = 0) -> Image.Image:
    """A smooth gradient with texture and noise, ``size = (height, width)``."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    channels = [
        128 + 90 * np.sin(xx / 5.0 + c) * np.cos(yy / 7.0 - c) + rng.normal(0, 12, (h, w)) for c in range(3)
    ]
    rgb = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb)
    return image.convert("L") if mode == "L" else image


def _jpeg(size=(47, 33), mode="RGB", **save) -> bytes:
    buffer = io.BytesIO()
    _image(size, mode).save(buffer, "JPEG", **{"quality": 75, **save})
    return buffer.getvalue()


# (id, size (H, W), mode, Pillow save options): every layout Pillow writes.
CASES = [
    ("420", (47, 33), "RGB", {"subsampling": 2}),
    ("422", (47, 33), "RGB", {"subsampling": 1}),
    ("444", (47, 33), "RGB", {"subsampling": 0}),
    ("444-q100", (40, 24), "RGB", {"subsampling": 0, "quality": 100}),
    ("420-q5", (48, 64), "RGB", {"subsampling": 2, "quality": 5}),
    ("gray", (47, 33), "L", {}),
    ("gray-1x1", (1, 1), "L", {}),
    ("rgb-1x1", (1, 1), "RGB", {}),
    ("420-17x9", (9, 17), "RGB", {"subsampling": 2}),
    ("optimized", (47, 33), "RGB", {"optimize": True}),
    ("progressive-420", (47, 33), "RGB", {"progressive": True, "subsampling": 2}),
    ("progressive-444-opt", (38, 30), "RGB", {"progressive": True, "subsampling": 0, "optimize": True}),
    ("progressive-422", (64, 80), "RGB", {"progressive": True, "subsampling": 1}),
    ("progressive-gray", (47, 33), "L", {"progressive": True}),
    ("restart-blocks", (47, 33), "RGB", {"restart_marker_blocks": 1}),
    ("restart-rows", (70, 50), "RGB", {"restart_marker_rows": 1, "subsampling": 1}),
    ("restart-progressive", (47, 33), "RGB", {"restart_marker_blocks": 2, "progressive": True}),
]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request) -> tuple[str, bytes]:
    name, size, mode, save = request.param
    return name, _jpeg(size, mode, **save)


def _equal(a: JpegCoefficients, b: JpegCoefficients) -> None:
    assert a.size == b.size and a.subsampling == b.subsampling and a.sampling_factors == b.sampling_factors
    assert torch.equal(a.quant_tables, b.quant_tables)
    assert len(a.planes()) == len(b.planes())
    for pa, pb in zip(a.planes(), b.planes(), strict=True):
        assert pa.shape == pb.shape and torch.equal(pa, pb)


def _pixels(plane: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Level-shifted orthonormal block IDCT, cropped, rounded and clamped as a decoder does."""
    pixels = block_idct2(channels_to_blocks(plane.double()), size) + 128
    return pixels.round().clamp(0, 255).numpy()


# --- exactness without IDCT rounding: known coefficients in, the same out -------------------------------------

LAYOUTS = [
    ("444-interleaved", [(1, 1)] * 3, (40, 24), True, 0),
    ("420-odd", [(2, 2), (1, 1), (1, 1)], (35, 41), True, 0),
    ("422-restart-3", [(2, 1), (1, 1), (1, 1)], (17, 50), True, 3),
    ("440", [(1, 2), (1, 1), (1, 1)], (33, 20), True, 0),
    ("411", [(4, 1), (1, 1), (1, 1)], (20, 70), True, 2),
    ("420-noninterleaved", [(2, 2), (1, 1), (1, 1)], (35, 41), False, 0),
    ("noninterleaved-restart", [(2, 1), (1, 2), (1, 1)], (27, 29), False, 5),
    ("gray", [(1, 1)], (9, 17), True, 1),
    ("gray-sampled-2x2", [(2, 2)], (13, 30), True, 0),
]


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize(("factors", "size", "interleaved", "restart"), [c[1:] for c in LAYOUTS],
                         ids=[c[0] for c in LAYOUTS])
def test_known_coefficients_round_trip(backend, factors, size, interleaved, restart) -> None:
    if backend == "jpeg2dct" and len(factors) == 3 and factors != [(2, 2), (1, 1), (1, 1)]:
        pytest.skip("jpeg2dct reads only 4:2:0 and greyscale files without re-encoding")
    rng = np.random.default_rng(len(factors) * 100 + size[0])
    h_max, v_max = max(f[0] for f in factors), max(f[1] for f in factors)
    mcus_x, mcus_y = -(-size[1] // (8 * h_max)), -(-size[0] // (8 * v_max))
    planes = [random_coefficients(rng, mcus_y * v, mcus_x * h) for h, v in factors]
    quant = rng.integers(1, 256, size=(len(factors), 64))
    data = encode_baseline(planes, factors, size, quant, interleaved=interleaved, restart_interval=restart)
    result = read_dct(data, backend=backend)
    assert result.size == size and result.backend == backend
    assert result.sampling_factors == tuple(factors)
    np.testing.assert_array_equal(result.quant_tables.numpy(), quant)
    for index, (plane, truth, (h, v)) in enumerate(zip(result.planes(), planes, factors, strict=True)):
        rows, cols = -(-size[0] * v // (8 * v_max)), -(-size[1] * h // (8 * h_max))
        expected = (truth[:rows, :cols] * quant[index]).transpose(2, 0, 1)
        assert plane.dtype == torch.float32 and tuple(plane.shape) == (64, rows, cols)
        np.testing.assert_array_equal(plane.numpy(), expected)


# --- every backend gives identical results ------------------------------------------------------------------------


@needs_libjpeg
def test_backends_identical_on_pillow_files(case) -> None:
    _, data = case
    reference = read_dct(data, backend="python")
    assert reference.backend == "python" and reference.warnings == ()
    _equal(read_dct(data, backend="libjpeg"), reference)
    if has_jpeg2dct() and reference.subsampling in ("4:2:0", "gray"):
        _equal(read_dct(data, backend="jpeg2dct"), reference)


def _zip_jpegs(path: Path, count: int) -> list[bytes]:
    if not path.exists():
        pytest.skip(f"{path} not present (shared data only on dev/CI machines)")
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith((".jpg", ".jpeg")))
        return [archive.read(n) for n in names[:count]]


@needs_libjpeg
@pytest.mark.parametrize(("archive", "count"), [("cifar10-jpeg/test.zip", 40), ("imagenet-sample/images.zip", 2)])
def test_backends_identical_on_shared_data(archive, count) -> None:
    for data in _zip_jpegs(SHARED / archive, count):
        reference = read_dct(data, backend="libjpeg")
        _equal(read_dct(data, backend="python"), reference)
        if has_jpeg2dct() and reference.subsampling in ("4:2:0", "gray"):
            _equal(read_dct(data, backend="jpeg2dct"), reference)


# --- pixels: our coefficients through an exact IDCT vs libjpeg's decode in Pillow ---------------------------------
# libjpeg's default integer IDCT (islow) differs from the exact one by at most 1 level per pixel
# (it meets IEEE 1180's accuracy); measured here on every fixture.


def test_luma_matches_pillow_decode(case) -> None:
    name, data = case
    coefs = read_dct(data)
    image = Image.open(io.BytesIO(data))
    if image.mode != "L":
        image.draft("YCbCr", None)  # libjpeg's output without colour conversion
    luma = np.asarray(image)
    luma = luma if luma.ndim == 2 else luma[..., 0]
    difference = np.abs(_pixels(coefs.y, coefs.size) - luma)
    assert difference.max() <= 1, f"{name}: max |ours - libjpeg| = {difference.max()}"


@pytest.mark.parametrize("subsampling", [0, 2])
@pytest.mark.parametrize("progressive", [False, True])
def test_chroma_matches_pillow_decode(subsampling, progressive) -> None:
    """4:4:4 chroma at full size; 4:2:0 chroma via libjpeg's 1/2-scaled decode, whose chroma IDCT is 8x8."""
    size = (46, 34)
    data = _jpeg(size, subsampling=subsampling, progressive=progressive)
    coefs = read_dct(data)
    image = Image.open(io.BytesIO(data))
    if subsampling == 2:
        image.draft("YCbCr", (size[1] // 2, size[0] // 2))
        chroma_size = (23, 17)
    else:
        image.draft("YCbCr", None)
        chroma_size = size
    planes = np.asarray(image)
    assert planes.shape[:2] == chroma_size
    for index, plane in ((1, coefs.cb), (2, coefs.cr)):
        difference = np.abs(_pixels(plane, chroma_size) - planes[..., index])
        assert difference.max() <= 1, f"max |ours - libjpeg| = {difference.max()}"


def _fancy_upsample_h2v1(plane: np.ndarray) -> np.ndarray:
    """libjpeg's h2v1 "fancy" (triangular) chroma upsampling, jdsample.c, in integers."""
    c = plane.astype(np.int64)
    left = np.concatenate([c[:, :1], c[:, :-1]], axis=1)
    right = np.concatenate([c[:, 1:], c[:, -1:]], axis=1)
    out = np.empty((c.shape[0], 2 * c.shape[1]), dtype=np.int64)
    out[:, 0::2] = (3 * c + left + 1) >> 2
    out[:, 1::2] = (3 * c + right + 2) >> 2
    out[:, 0], out[:, -1] = c[:, 0], c[:, -1]  # edge columns are copied
    return out


def test_422_chroma_matches_pillow_upsampled() -> None:
    """4:2:2 chroma: our IDCT + libjpeg's triangular upsampling vs Pillow's YCbCr decode."""
    data = _jpeg((48, 64), subsampling=1, quality=95)
    coefs = read_dct(data)
    image = Image.open(io.BytesIO(data))
    image.draft("YCbCr", None)
    planes = np.asarray(image).astype(np.int64)
    for index, plane in ((1, coefs.cb), (2, coefs.cr)):
        ours = _fancy_upsample_h2v1(_pixels(plane, (48, 32)))
        # IDCT rounding (<= 1) passes through the 3:1 average as <= 1, plus the filter's own rounding.
        assert np.abs(ours - planes[..., index]).max() <= 2


# --- tables, metadata, order, sources ---------------------------------------------------------------------------


def test_quant_tables_match_annex_k_and_pillow() -> None:
    data = _jpeg(quality=50, subsampling=2)
    coefs = read_dct(data)
    np.testing.assert_array_equal(coefs.quant_tables.numpy(), [ANNEX_K_LUMA, ANNEX_K_CHROMA, ANNEX_K_CHROMA])
    pillow = Image.open(io.BytesIO(_jpeg(quality=83, subsampling=0))).quantization  # natural order
    ours = read_dct(_jpeg(quality=83, subsampling=0)).quant_tables.numpy()
    np.testing.assert_array_equal(ours, [pillow[0], pillow[1], pillow[1]])


def test_sixteen_bit_quant_tables() -> None:
    rng = np.random.default_rng(3)
    planes = [random_coefficients(rng, 2, 2) // 16]
    quant = np.full((1, 64), 7)
    data = encode_baseline(planes, [(1, 1)], (16, 16), quant)
    # Rewrite the 8-bit DQT as a 16-bit one with steps 7 * 300 = 2100 (> 255).
    start = data.index(b"\xff\xdb")
    table16 = b"\xff\xdb" + (2 + 1 + 128).to_bytes(2, "big") + b"\x10" + (2100).to_bytes(2, "big") * 64
    data16 = data[:start] + table16 + data[start + 2 + 2 + 1 + 64 :]
    for backend in available_backends():
        if backend == "jpeg2dct":
            continue
        coefs = read_dct(data16, backend=backend)
        assert coefs.quant_tables.tolist() == [[2100] * 64]
        np.testing.assert_array_equal(coefs.y.numpy(), planes[0].transpose(2, 0, 1) * 2100.0)


def test_metadata_and_shapes() -> None:
    coefs = read_dct(_jpeg((47, 33), subsampling=2))
    assert coefs.size == (47, 33) and coefs.subsampling == "4:2:0"
    assert coefs.sampling_factors == ((2, 2), (1, 1), (1, 1))
    assert coefs.y.shape == (64, 6, 5) and coefs.cb.shape == (64, 3, 3) and coefs.cr.shape == (64, 3, 3)
    assert coefs.y.dtype == torch.float32 and coefs.quant_tables.dtype == torch.int32
    assert coefs.order == "natural" and coefs.block_size == 8 and coefs.warnings == ()
    gray = read_dct(_jpeg((9, 17), "L"))
    assert gray.is_gray and gray.cb is None and gray.subsampling == "gray" and gray.y.shape == (64, 2, 3)
    assert read_dct(_jpeg((8, 8), subsampling=1)).subsampling == "4:2:2"
    assert read_dct(_jpeg((8, 8), subsampling=0)).subsampling == "4:4:4"


@pytest.mark.parametrize("backend", available_backends())
def test_zigzag_order_matches_to_order_and_transforms(backend) -> None:
    data = _jpeg((47, 33), progressive=backend != "jpeg2dct")
    natural = read_dct(data, backend=backend)
    zigzag = read_dct(data, order="zigzag", backend=backend)
    assert zigzag.order == "zigzag"
    index = zigzag_indices(8)
    for a, b in zip(zigzag.planes(), natural.planes(), strict=True):
        assert torch.equal(a, b[index])
    assert torch.equal(zigzag.quant_tables, natural.quant_tables)  # tables stay in natural order
    _equal(natural.to_order("zigzag"), zigzag)


def test_sources_path_bytes_file(tmp_path) -> None:
    data = _jpeg()
    path = tmp_path / "image.jpg"
    path.write_bytes(data)
    reference = read_dct(data)
    for source in (path, str(path), bytearray(data), memoryview(data), io.BytesIO(data)):
        _equal(read_dct(source), reference)
    with path.open("rb") as handle:
        _equal(read_dct(handle), reference)


def test_auto_backend_prefers_libjpeg() -> None:
    assert read_dct(_jpeg()).backend == ("libjpeg" if has_libjpeg() else "python")


@needs_libjpeg
@pytest.mark.parametrize("name", ["420", "progressive-420", "restart-blocks"])
def test_lenient_truncation_keeps_decoded_prefix(name) -> None:
    """strict=False on a cut file: the blocks before the cut equal the full file's; both backends agree."""
    _, size, mode, save = next(c for c in CASES if c[0] == name)
    data = _jpeg(size, mode, **save)
    full = read_dct(data)
    cut = data[: len(data) * 3 // 4]
    with pytest.raises(JpegTruncatedError):
        read_dct(cut)
    results = [read_dct(cut, strict=False, backend=b) for b in ("libjpeg", "python")]
    for result in results:
        assert result.warnings, "a truncated file must record a warning"
        assert result.y.shape == full.y.shape
        # The first block row was fully coded before the cut in every fixture.
        if not save.get("progressive"):
            assert torch.equal(result.y[:, 0], full.y[:, 0])
    if not save.get("progressive"):
        _equal(results[0], results[1])


@pytest.mark.parametrize("backend", [b for b in available_backends() if b != "jpeg2dct"])
def test_table_redefined_between_scans_is_latched_per_component(backend) -> None:
    """A DQT after the Y scan redefines table 1: Cb (first scanned later) uses the new one."""
    rng = np.random.default_rng(7)
    factors, size = [(1, 1)] * 3, (16, 24)
    planes = [random_coefficients(rng, 2, 3) for _ in factors]
    quant = rng.integers(1, 256, size=(3, 64))
    new_table = rng.integers(1, 256, size=64)
    data = encode_baseline(planes, factors, size, quant, interleaved=False, redefine={1: new_table})
    result = read_dct(data, backend=backend)
    np.testing.assert_array_equal(result.quant_tables.numpy(), [quant[0], new_table, quant[2]])
    np.testing.assert_array_equal(result.cb.numpy(), (planes[1] * new_table).transpose(2, 0, 1))


@needs_libjpeg
def test_threads_share_the_compiled_reader() -> None:
    """The C backend releases the GIL; concurrent reads give the same results as serial ones."""
    from concurrent.futures import ThreadPoolExecutor

    files = [_jpeg((40 + 8 * i, 56), progressive=i % 2 == 1, subsampling=i % 3) for i in range(8)]
    serial = [read_dct(f) for f in files]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(read_dct, files * 4))
    for index, result in enumerate(parallel):
        _equal(result, serial[index % len(files)])
