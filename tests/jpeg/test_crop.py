"""``read_dct(..., crop=(Hy, Wy))``: the centre window of the full read, identical across backends and batches."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.jpeg import DCTCollate, JpegTruncatedError, available_backends, read_dct

DECODERS = [b for b in available_backends() if b != "jpeg2dct"]
LAYOUTS = [  # (Pillow subsampling, mode, progressive)
    (2, "RGB", False),  # 4:2:0
    (0, "RGB", False),  # 4:4:4
    (1, "RGB", True),  # 4:2:2, progressive
    (0, "L", False),  # greyscale
]
CROPS = [(1, 1), (3, 5), (4, 4), (7, 2), (100, 100)]


def _jpeg(size, subsampling, mode, progressive) -> bytes:
    pixels = np.random.default_rng(sum(size)).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=80, subsampling=subsampling,
                                               progressive=progressive)  # fmt: skip
    return buffer.getvalue()


def _ceil(a: int, b: int) -> int:
    return (a + b - 1) // b


def _offset(full: torch.Tensor, part: torch.Tensor) -> tuple[int, int]:
    """Where ``part`` sits in ``full`` (a test-side search)."""
    rows, cols = part.shape[-2:]
    hits = [
        (r, c)
        for r in range(full.shape[-2] - rows + 1)
        for c in range(full.shape[-1] - cols + 1)
        if torch.equal(full[:, r : r + rows, c : c + cols], part)
    ]
    assert hits, "the cropped luma is not a window of the full luma"
    return hits[0]


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize(("subsampling", "mode", "progressive"), LAYOUTS, ids=["420", "444", "422-prog", "gray"])
@pytest.mark.parametrize("size", [(75, 61), (48, 64)], ids=["75x61", "48x64"])
def test_crop_is_the_centre_window_of_the_full_read(backend, subsampling, mode, progressive, size) -> None:
    data = _jpeg(size, subsampling, mode, progressive)
    full = read_dct(data, backend=backend)
    h_luma, v_luma = full.sampling_factors[0]  # the MCU in luma blocks for these layouts
    for crop in CROPS:
        part = read_dct(data, backend=backend, crop=crop)
        hb, wb = full.y.shape[-2:]
        assert part.y.shape[-2:] == (min(hb, crop[0]), min(wb, crop[1]))
        top, left = _offset(full.y, part.y)
        for blocks, want, offset, mcu in ((hb, crop[0], top, v_luma), (wb, crop[1], left, h_luma)):
            step = math.lcm(2, mcu)
            assert offset % step == 0 and (blocks <= want or 0 <= (blocks - want) / 2 - offset < step)
        # every plane follows the block-grid rule for the window's own size, and is the matching window
        for plane, plane_full, (h, v) in zip(part.planes(), full.planes(), full.sampling_factors, strict=True):
            v_max, h_max = max(f[1] for f in full.sampling_factors), max(f[0] for f in full.sampling_factors)
            expected = (_ceil(_ceil(part.size[0] * v, v_max), 8), _ceil(_ceil(part.size[1] * h, h_max), 8))
            assert tuple(plane.shape[-2:]) == expected
            r0, c0 = top * v // v_max, left * h // h_max
            assert torch.equal(plane, plane_full[:, r0 : r0 + expected[0], c0 : c0 + expected[1]])
        assert torch.equal(part.quant_tables, full.quant_tables) and part.subsampling == full.subsampling


@pytest.mark.parametrize("subsampling", [2, 0, 1], ids=["420", "444", "422"])
def test_crop_does_not_change_collated_batches(subsampling) -> None:
    files = [_jpeg(size, subsampling, "RGB", False) for size in ((75, 61), (130, 98), (40, 200))]
    collate = DCTCollate(layout="stacked", grid=(6, 8))
    full = collate([(read_dct(f), 0) for f in files])[0]
    cropped = collate([(read_dct(f, crop=(6, 8)), 0) for f in files])[0]
    torch.testing.assert_close(cropped, full, rtol=0, atol=0)


@pytest.mark.skipif("libjpeg" not in DECODERS, reason="the compiled backend is not built")
def test_crop_backends_identical() -> None:
    for subsampling, mode, progressive in LAYOUTS:
        data = _jpeg((75, 61), subsampling, mode, progressive)
        a, b = read_dct(data, crop=(3, 5), backend="libjpeg"), read_dct(data, crop=(3, 5), backend="python")
        assert a.size == b.size
        for x, y in zip(a.planes(), b.planes(), strict=True):
            assert torch.equal(x, y)


@pytest.mark.parametrize("crop", [(0, 4), (4,), (4, -1), "44", (True, 4), (4.0, 4)])
def test_bad_crop_raises(crop) -> None:
    with pytest.raises(ValueError, match="crop"):
        read_dct(_jpeg((16, 16), 2, "RGB", False), crop=crop)


@pytest.mark.parametrize("backend", DECODERS)
def test_hostile_inputs_raise_the_same_errors_with_crop(backend) -> None:
    from .test_hostile import HOSTILE

    for _, data, error, reason in HOSTILE:
        with pytest.raises(error, match=reason):
            read_dct(data, backend=backend, crop=(2, 2))


@pytest.mark.skipif("libjpeg" not in DECODERS, reason="the compiled backend is not built")
@pytest.mark.parametrize("window", [(0, 0, 5, 1), (-1, 0, 1, 1), (0, 0, 0, 1), (0, 3, 1, 2)])
def test_extension_rejects_windows_outside_the_grid(window) -> None:
    from freqnets.jpeg import JpegError, _backends
    from freqnets.jpeg._markers import parse_header

    data = _jpeg((32, 32), 2, "RGB", False)  # luma 4x4 blocks, chroma 2x2
    header = parse_header(data)
    with pytest.raises(JpegError, match="block window outside"):
        _backends.decode_libjpeg(data, header, windows=[(0, 0, 4, 4), window, (0, 0, 2, 2)])


def _large(subsampling: int, mode: str = "RGB", **save) -> bytes:
    """~100-300 kB of noise: many MCU rows after the window."""
    pixels = np.random.default_rng(5).integers(0, 256, size=(360, 296, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", quality=90, subsampling=subsampling, **save)
    return buffer.getvalue()


LARGE = [(2, "RGB", {}), (0, "RGB", {}), (2, "RGB", {"restart_marker_blocks": 3}), (0, "L", {})]


@pytest.mark.skipif("libjpeg" not in DECODERS, reason="the compiled backend is not built")
@pytest.mark.parametrize(("subsampling", "mode", "save"), LARGE, ids=["420", "444", "420-restarts", "gray"])
def test_sequential_crop_stops_after_the_window_rows(subsampling, mode, save) -> None:
    data = _large(subsampling, mode, **save)
    assert len(data) > 10 * 4096
    crop = (12, 20)  # rows 14..25 of 45 luma block rows: the data after ~60 % of the file is not needed
    full, part = read_dct(data, backend="python"), read_dct(data, crop=crop)
    top, left = _offset(full.y, part.y)
    assert torch.equal(part.y, full.y[:, top : top + 12, left : left + 20])
    reference = read_dct(data, crop=crop, backend="python")
    for x, y in zip(part.planes(), reference.planes(), strict=True):
        assert torch.equal(x, y)
    # Cut at 80 %: the full read (and the python backend's crop) sees the truncation; the windowed
    # libjpeg read has stopped before it and returns the same window, without warnings.
    cut = data[: int(len(data) * 0.8)]
    with pytest.raises(JpegTruncatedError):
        read_dct(cut)
    with pytest.raises(JpegTruncatedError):
        read_dct(cut, crop=crop, backend="python")
    stopped = read_dct(cut, crop=crop)
    assert stopped.warnings == () and torch.equal(stopped.y, part.y)
    # Cut at 30 %: inside the window's rows, an error as without crop.
    with pytest.raises(JpegTruncatedError):
        read_dct(data[: int(len(data) * 0.3)], crop=crop)


@pytest.mark.skipif("libjpeg" not in DECODERS, reason="the compiled backend is not built")
def test_progressive_crop_reads_every_scan() -> None:
    data = _large(2, progressive=True)
    cut = data[: int(len(data) * 0.95)]
    with pytest.raises(JpegTruncatedError):
        read_dct(cut, crop=(12, 20))
    full, part = read_dct(data), read_dct(data, crop=(12, 20))
    top, left = _offset(full.y, part.y)
    assert torch.equal(part.y, full.y[:, top : top + 12, left : left + 20])
