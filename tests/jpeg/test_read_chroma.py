"""``read_dct(..., chroma=...)``: chroma planes converted to a target layout while reading.

References: a float64 pixel-domain loop (inverse DCT, average, forward DCT with ``scipy.fft``),
:func:`freqnets.jpeg.convert_chroma` on the planes as stored, and the collate's batches.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.jpeg import DCTCollate, available_backends, convert_chroma, read_dct

from .jpeg_writer import encode_baseline, random_coefficients

scipy_fft = pytest.importorskip("scipy.fft")

DECODERS = [b for b in available_backends() if b != "jpeg2dct"]
TARGETS = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}
NAMES = {"420": "4:2:0", "422": "4:2:2", "444": "4:4:4"}


def _pillow_jpeg(size, subsampling, mode="RGB", progressive=False) -> bytes:
    rng = np.random.default_rng(size[0] * 7 + size[1])
    ramp = np.linspace(0, 255, size[0] * size[1] * 3).reshape(*size, 3)
    pixels = np.clip(ramp + rng.normal(0, 40, size=(*size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(
        buffer, "JPEG", quality=85, subsampling=subsampling, progressive=progressive
    )  # fmt: skip
    return buffer.getvalue()


def _written_jpeg(factors, size, seed=0, interleaved=True) -> bytes:
    """A file from the test-side encoder: layouts Pillow cannot write (4:4:0, 4:1:1)."""
    rng = np.random.default_rng(seed)
    h_max, v_max = max(f[0] for f in factors), max(f[1] for f in factors)
    mcus_x, mcus_y = -(-size[1] // (8 * h_max)), -(-size[0] // (8 * v_max))
    planes = [random_coefficients(rng, mcus_y * v, mcus_x * h) for h, v in factors]
    quant = rng.integers(1, 64, size=(len(factors), 64))
    return encode_baseline(planes, factors, size, quant, interleaved=interleaved)


FILES = {
    "444-75x61": lambda: _pillow_jpeg((75, 61), 0),
    "444-48x64-progressive": lambda: _pillow_jpeg((48, 64), 0, progressive=True),
    "422-33x50": lambda: _pillow_jpeg((33, 50), 1),
    "420-40x56": lambda: _pillow_jpeg((40, 56), 2),
    "440-33x20": lambda: _written_jpeg([(1, 2), (1, 1), (1, 1)], (33, 20), 1),
    "411-20x70": lambda: _written_jpeg([(4, 1), (1, 1), (1, 1)], (20, 70), 2),
    "444-2x2-factors-17x9": lambda: _written_jpeg([(2, 2), (2, 2), (2, 2)], (17, 9), 3, False),
}


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == torch.float32
    scale = float(want.abs().max().clamp_min(1.0))
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("order", ["natural", "zigzag"])
def test_chroma_matches_converting_the_stored_planes(backend, name, target, order) -> None:
    data = FILES[name]()
    stored = read_dct(data, backend=backend, order=order)
    got = read_dct(data, backend=backend, order=order, chroma=target)
    assert torch.equal(got.y, stored.y)
    assert torch.equal(got.quant_tables, stored.quant_tables)
    (hy, vy), (hc, vc) = stored.sampling_factors[:2]
    if (hy // hc, vy // vc) == TARGETS[target]:  # already in the target layout: returned as stored
        assert got.stored_subsampling is None and got.sampling_factors == stored.sampling_factors
        assert torch.equal(got.cb, stored.cb) and torch.equal(got.cr, stored.cr)
        return
    assert got.subsampling == NAMES[target] and got.stored_subsampling == stored.subsampling
    assert got.sampling_factors == (TARGETS[target], (1, 1), (1, 1))
    cb, cr = convert_chroma(stored, target)
    _close(got.cb, cb)
    _close(got.cr, cr)


def _pixel_reference(plane: np.ndarray, fh: int, fv: int) -> np.ndarray:
    """float64: blocks -> pixels, average ``fv x fh`` pixels (last odd block repeated), -> blocks."""
    _, by, bx = plane.shape
    blocks = plane.reshape(8, 8, by, bx).transpose(2, 3, 0, 1)  # (by, bx, v, u)
    pixels = scipy_fft.idctn(blocks, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(by * 8, bx * 8)
    if by % fv:
        pixels = np.concatenate([pixels, pixels[-8:]], axis=0)
    if bx % fh:
        pixels = np.concatenate([pixels, pixels[:, -8:]], axis=1)
    small = pixels.reshape(pixels.shape[0] // fv, fv, pixels.shape[1] // fh, fh).mean(axis=(1, 3))
    oy, ox = small.shape[0] // 8, small.shape[1] // 8
    out = scipy_fft.dctn(small.reshape(oy, 8, ox, 8).transpose(0, 2, 1, 3), axes=(2, 3), norm="ortho")
    return out.transpose(2, 3, 0, 1).reshape(64, oy, ox)


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize(("name", "target"), [("444-75x61", "420"), ("444-75x61", "422"), ("422-33x50", "420"),
                                              ("440-33x20", "420"), ("444-48x64-progressive", "420")])  # fmt: skip
def test_chroma_matches_averaging_pixels_in_float64(backend, name, target) -> None:
    data = FILES[name]()
    stored = read_dct(data, backend=backend)
    got = read_dct(data, backend=backend, chroma=target)
    (hy, vy), (hc, vc) = stored.sampling_factors[:2]
    fh, fv = TARGETS[target][0] // (hy // hc), TARGETS[target][1] // (vy // vc)
    for plane, converted in ((stored.cb, got.cb), (stored.cr, got.cr)):
        want = torch.from_numpy(_pixel_reference(plane.double().numpy(), fh, fv)).float()
        _close(converted, want)


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize("crop", [(1, 1), (3, 5), (4, 4), (100, 100)])
def test_chroma_with_crop_is_the_window_of_the_converted_read(backend, crop) -> None:
    data = _pillow_jpeg((75, 61), 0)
    whole = read_dct(data, backend=backend, chroma="420")
    part = read_dct(data, backend=backend, chroma="420", crop=crop)
    rows, cols = part.y.shape[-2:]
    top, left = (whole.y.shape[-2] - rows) // 2 // 2 * 2, (whole.y.shape[-1] - cols) // 2 // 2 * 2
    assert torch.equal(part.y, whole.y[:, top : top + rows, left : left + cols])
    want = whole.cb[:, top // 2 : top // 2 + part.cb.shape[-2], left // 2 : left // 2 + part.cb.shape[-1]]
    assert part.cb.shape[-2:] == (-(-rows // 2), -(-cols // 2))
    if rows % 2 == 0 and (top + rows) <= whole.y.shape[-2]:
        _close(part.cb, want)


def test_greyscale_stays_greyscale() -> None:
    data = _pillow_jpeg((20, 30), 0, mode="L")
    got = read_dct(data, chroma="420")
    assert got.cb is None and got.cr is None and got.subsampling == "gray" and got.stored_subsampling is None


@pytest.mark.parametrize("bad", ["4:2:1", "yuv", 420, ""])
def test_bad_chroma_is_a_value_error(bad) -> None:
    with pytest.raises(ValueError, match="chroma"):
        read_dct(_pillow_jpeg((16, 16), 0), chroma=bad)


@pytest.mark.parametrize("layout", ["planes", "stacked"])
def test_collate_batches_agree_with_reading_stored_planes(layout) -> None:
    files = [FILES[n]() for n in ("444-75x61", "422-33x50", "420-40x56", "440-33x20")]
    files.append(_pillow_jpeg((21, 37), 0, mode="L"))
    collate = DCTCollate(layout=layout, grid=(6, 6), y_channels=20, c_channels=10)
    stored = collate([(read_dct(f), i) for i, f in enumerate(files)])
    converted = collate([(read_dct(f, chroma="420"), i) for i, f in enumerate(files)])
    for a, b in zip(converted, stored, strict=True):
        if a.dtype == torch.int64:
            assert torch.equal(a, b)
        else:
            _close(a, b)


def test_folder_dataset_passes_chroma(tmp_path) -> None:
    from freqnets.jpeg import JpegFolderDataset

    for label, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jpg").write_bytes(_pillow_jpeg((24 + 8 * label, 40), 0))
    dataset = JpegFolderDataset(tmp_path, chroma="420")
    for (sample, label), (path, want_label) in zip(dataset, dataset.samples, strict=True):
        want = read_dct(path, chroma="420")
        assert label == want_label and sample.stored_subsampling == "4:4:4" and sample.subsampling == "4:2:0"
        assert torch.equal(sample.cb, want.cb) and torch.equal(sample.y, want.y)


def test_averaging_map_is_mirror_symmetric() -> None:
    """The C reader relies on K[q][8 + v] = (-1)^(q + v) K[q][v] for the 2-pixel averaging map."""
    from freqnets.jpeg.resample import downsample_kernel

    kernel = downsample_kernel(2)
    sign = (-1.0) ** (torch.arange(8)[:, None] + torch.arange(8)[None, :]).double()
    torch.testing.assert_close(kernel[:, 8:], sign * kernel[:, :8], rtol=0, atol=1e-15)
