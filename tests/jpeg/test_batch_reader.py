"""The batch reader (issue 17): ``DCTReadCollate(threads=N)`` decodes a batch's files on N threads inside the C
extension, straight into the batch; its batches equal the one-thread ones and the per-sample path
(``read_dct`` + ``DCTCollate``), whatever the mix of files, including damaged ones that go to ``read_dct``."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.jpeg import DCTCollate, DCTReadCollate, JpegTruncatedError, _backends, read_dct
from freqnets.jpeg._markers import parse_header

pytestmark = pytest.mark.skipif(not _backends.has_libjpeg(), reason="the C extension is not built")


def _jpeg(seed: int, size=(40, 56), mode="RGB", **save) -> bytes:
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(*size, 3)), 0), 1)
    pixels = ((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG", **{"quality": 80, **save})
    return buffer.getvalue()


def _mixed_files() -> list[bytes]:
    files = []
    for seed in range(24):
        kind = seed % 6
        if kind == 0:
            files.append(_jpeg(seed))
        elif kind == 1:
            files.append(_jpeg(seed, subsampling=0))  # 4:4:4: chroma averaged to 4:2:0 while written
        elif kind == 2:
            files.append(_jpeg(seed, progressive=True))
        elif kind == 3:
            files.append(_jpeg(seed, (64, 72), mode="L"))
        elif kind == 4:
            files.append(_jpeg(seed, (88, 96), subsampling=1))  # 4:2:2, larger than the grid: cropped
        else:
            data = _jpeg(seed)
            files.append(data[: len(data) * 2 // 3])  # truncated: read_dct handles it (strict=False)
    return files


def _batch(collate, files):
    return collate([(data, i % 10) for i, data in enumerate(files)])


@pytest.mark.parametrize("layout", ["stacked", "planes"])
def test_threads_give_the_one_thread_batches_and_the_per_sample_ones(layout) -> None:
    files = _mixed_files()
    collate = DCTCollate(layout=layout, grid=(6, 8))
    reference = collate([(read_dct(d, order="zigzag", chroma="420", strict=False), i % 10) for i, d in enumerate(files)])
    for threads in (1, 2, 5):
        got = _batch(DCTReadCollate(collate, strict=False, threads=threads), files)
        for a, b in zip(got, reference, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_damaged_file_still_raises_under_strict_with_threads() -> None:
    files = _mixed_files()
    with pytest.raises(JpegTruncatedError, match="sample 5 of the batch"):
        _batch(DCTReadCollate(DCTCollate(grid=(6, 8)), threads=2), files)


def test_threads_argument_is_checked() -> None:
    for bad in (0, -1, 1.5, True, 1000):
        with pytest.raises(ValueError, match="threads"):
            DCTReadCollate(DCTCollate(), threads=bad)
    assert "threads=3" in repr(DCTReadCollate(DCTCollate(), threads=3))


def test_read_planned_reports_each_file() -> None:
    # status 0: decoded into its slot; 1: the general path must read it (a cut file); -1: no plan
    good, bad = _jpeg(0, mode="L"), _jpeg(1, mode="L")[:200]
    header = parse_header(good)
    grid = header.frame.components[0]
    rows, cols = grid.height_in_blocks, grid.width_in_blocks
    out, unused = np.zeros((3, 64, rows, cols), np.float32), np.zeros(0, np.float32)
    plan = (1 << 26, None, 1, 1, [(0, 0, 64, rows * cols, cols, rows, cols)], header.first_scan.data_start, 0,
            header.coefficients // 64)  # fmt: skip
    status = _backends._jpegc.read_planned(
        [good, bad, good], [0, 0, -1], [plan], out.reshape(-1), unused, 64 * rows * cols, 0, 2, 1000, False,
        _backends._kernel_bytes(), 1 << 26, 4096,
    )  # fmt: skip
    assert status == [0, 1, -1]
    np.testing.assert_array_equal(out[0], read_dct(good).y.numpy())
    assert not out[2].any()  # the slot of a file without a plan is zeroed, nothing more
