"""``DCTReadCollate``: JPEG bytes read straight into the batch, identical to read_dct + DCTCollate."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.jpeg import (
    DCTCollate,
    DCTReadCollate,
    JpegError,
    JpegFolderDataset,
    JpegTooLargeError,
    JpegTruncatedError,
    available_backends,
    read_dct,
)

from .jpeg_writer import encode_baseline, random_coefficients
from .test_hostile import HOSTILE

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "cifar10-mini.zip"


def _jpeg(size, subsampling=2, mode="RGB", progressive=False, quality=85) -> bytes:
    rng = np.random.default_rng(size[0] * 31 + size[1] + subsampling)
    ramp = np.linspace(0, 255, size[0] * size[1] * 3).reshape(*size, 3)
    pixels = np.clip(ramp + rng.normal(0, 30, size=(*size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(
        buffer, "JPEG", quality=quality, subsampling=subsampling, progressive=progressive
    )  # fmt: skip
    return buffer.getvalue()


def _jpeg_411(size) -> bytes:
    """4:1:1 (chroma / 4 horizontally): converted by read_dct, not by the fast path."""
    rng = np.random.default_rng(7)
    factors = [(4, 1), (1, 1), (1, 1)]
    mcus_x, mcus_y = -(-size[1] // 32), -(-size[0] // 8)
    planes = [random_coefficients(rng, mcus_y * v, mcus_x * h) for h, v in factors]
    return encode_baseline(planes, factors, size, rng.integers(1, 64, size=(3, 64)))


MIXED = [
    _jpeg((75, 61), 0),  # 4:4:4, odd size, smaller than the grid on one axis
    _jpeg((120, 96), 1),  # 4:2:2, larger than the grid
    _jpeg((64, 80), 2, progressive=True),  # 4:2:0 progressive
    _jpeg((40, 56), 2, mode="L"),  # greyscale
    _jpeg((100, 100), 0, quality=95),
    _jpeg_411((40, 72)),  # falls back to read_dct
]


def _two_step(collate: DCTCollate, payloads, labels, **options):
    chroma = {(2, 2): "420", (2, 1): "422", (1, 1): "444"}[collate.factors]
    coeffs = [read_dct(p, order="zigzag", chroma=chroma, crop=collate.grid, **options) for p in payloads]
    return collate(list(zip(coeffs, labels, strict=True)))


def _assert_same(got, want) -> None:
    assert type(got) is type(want) and len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)


@pytest.mark.parametrize("layout", ["stacked", "planes"])
@pytest.mark.parametrize("chroma", ["420", "422", "444"])
@pytest.mark.parametrize(("ky", "kc"), [(64, 64), (10, 3), (6, 0)])
def test_mixed_files_match_read_dct_then_collate(layout, chroma, ky, kc) -> None:
    stats = torch.linspace(-3, 3, 192), torch.linspace(0.5, 4, 192)  # all 3 x 64 channels
    collate = DCTCollate(layout, ky, kc, chroma, normalize=stats, grid=(8, 10))
    labels = list(range(len(MIXED)))
    _assert_same(DCTReadCollate(collate)([(p, i) for p, i in zip(MIXED, labels, strict=True)]),
                 _two_step(collate, MIXED, labels))  # fmt: skip


@pytest.mark.skipif(not BUNDLED.exists(), reason="bundled data missing")
@pytest.mark.parametrize("layout", ["stacked", "planes"])
def test_cifar_batches_match_without_grid(layout, monkeypatch) -> None:
    dataset = JpegFolderDataset(BUNDLED, split="train", raw=True)
    samples = [dataset[i] for i in range(0, 640, 5)]
    assert isinstance(samples[0][0], bytes)
    collate = DCTCollate(layout, normalize=(torch.rand(192), torch.rand(192) + 0.5))
    payloads, labels = zip(*samples, strict=True)
    want = _two_step(collate, payloads, labels)
    if "libjpeg" in available_backends():  # every file takes the fast path: read_dct is never called
        import freqnets.jpeg.read_collate as module

        monkeypatch.setattr(module, "read_bytes", lambda *a, **k: pytest.fail("fell back to read_dct"))
    _assert_same(DCTReadCollate(collate)(samples), want)


def test_different_grids_without_grid_raise() -> None:
    with pytest.raises(ValueError, match="different block grids"):
        DCTReadCollate(DCTCollate())([(_jpeg((32, 32)), 0), (_jpeg((48, 32)), 1)])


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="DCTCollate"):
        DCTReadCollate("planes")
    reader = DCTReadCollate(DCTCollate())
    with pytest.raises(ValueError, match="empty"):
        reader([])
    with pytest.raises(TypeError, match="bytes"):
        reader([(torch.zeros(3), 0)])
    with pytest.raises(TypeError, match="pairs"):
        reader([b"x"])


def test_truncated_file_strict_and_lenient() -> None:
    data = _jpeg((64, 64), 0, quality=95)
    cut = data[: len(data) * 2 // 3]
    collate = DCTCollate("planes", grid=(8, 8))
    with pytest.raises(JpegTruncatedError, match="sample 1 of the batch"):
        DCTReadCollate(collate)([(data, 0), (cut, 1)])
    got = DCTReadCollate(collate, strict=False)([(data, 0), (cut, 1)])
    _assert_same(got, _two_step(collate, [data, cut], [0, 1], strict=False))


@pytest.mark.parametrize(("data", "error", "reason"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_files_raise_typed_errors(data, error, reason) -> None:
    with pytest.raises(error, match=reason) as caught:
        DCTReadCollate(DCTCollate(grid=(4, 4)))([(_jpeg((32, 32)), 0), (data, 1)])
    assert isinstance(caught.value, JpegError) and "sample 1 of the batch" in str(caught.value)


def test_huge_header_uses_max_pixels() -> None:
    import struct

    from .test_hostile import SOF, _patch

    data = _patch(_jpeg((8, 8)), SOF + 5, struct.pack(">HH", 65500, 65500))
    with pytest.raises(JpegTooLargeError):
        DCTReadCollate(DCTCollate(grid=(1, 1)))([(data, 0)])


def test_in_a_dataloader_worker(tmp_path) -> None:
    for label, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        for k in range(3):
            (tmp_path / name / f"{k}.jpg").write_bytes(_jpeg((40 + 8 * k, 48), 2 * label))
    dataset = JpegFolderDataset(tmp_path, raw=True)
    reader = DCTReadCollate(DCTCollate("stacked", grid=(5, 6)))
    here = reader([dataset[i] for i in range(len(dataset))])
    loader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset), num_workers=1, collate_fn=reader)
    (there,) = list(loader)
    _assert_same(there, here)


def test_without_the_compiled_backend(monkeypatch) -> None:
    """The same batch (to float32 rounding) from the python backend as from the compiled one."""
    from freqnets.jpeg import _backends

    collate = DCTCollate("stacked", 16, 8, grid=(6, 6))
    want = DCTReadCollate(collate)([(p, 0) for p in MIXED])  # libjpeg where built
    monkeypatch.setattr(_backends, "has_libjpeg", lambda: False)
    assert read_dct(MIXED[0]).backend == "python"
    got = DCTReadCollate(collate)([(p, 0) for p in MIXED])
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=2e-6 * float(want[0].abs().max()))


@pytest.mark.skipif("libjpeg" not in available_backends(), reason="the compiled backend is not built")
def test_extension_writes_into_given_buffers_within_bounds() -> None:
    from freqnets.jpeg import _backends

    data = _jpeg((40, 56), 2)  # luma 5x7 blocks, chroma 3x4
    planes, _, _ = _backends._jpegc.read_coefficients(data, 1 << 26, 100, True)
    y = np.full(2 * 64 * 6 * 9, -1.0, dtype=np.float32)  # sample 1 of a (2, 64, 6, 9) batch, at row 1, column 2
    c = np.full(2 * 64 * 3 * 4, -1.0, dtype=np.float32)
    outs = [(y, 64 * 54 + 9 + 2, 20, 54, 9), (c, 0, 5, 12, 4), (c, 5 * 12, 0, 12, 4)]
    got, _, _ = _backends._jpegc.read_coefficients(data, 1 << 26, 100, True, None, None, outs)
    assert [g[2] for g in got] == [None, None, None]
    batch = y.reshape(2, 64, 6, 9)
    want = np.frombuffer(planes[0][2], dtype=np.float32).reshape(64, 5, 7)
    np.testing.assert_array_equal(batch[1, :20, 1:6, 2:9], want[:20])
    assert (batch[0] == -1).all() and (batch[1, 20:] == -1).all() and (batch[1, :, 0] == -1).all()
    cb = np.frombuffer(planes[1][2], dtype=np.float32).reshape(64, 3, 4)
    np.testing.assert_array_equal(c[: 5 * 12].reshape(5, 3, 4), cb[:5])
    assert (c[5 * 12 :] == -1).all()  # Cr with 0 channels writes nothing
    for bad, match in [
        ([(y, 64 * 54 + 9 + 3, 64, 54, 9), *outs[1:]], "does not fit"),  # the last element one past the end
        ([(y[:100], 0, 64, 54, 9), *outs[1:]], "does not fit"),
        ([(y, -1, 20, 54, 9), *outs[1:]], "negative"),
        ([(y, 0, 65, 54, 9), *outs[1:]], "channels"),
        (outs[:2], "3 components"),
        ([(b"read-only" * 100, 0, 1, 1, 1), *outs[1:]], None),
    ]:
        with pytest.raises((ValueError, TypeError, BufferError), match=match):
            _backends._jpegc.read_coefficients(data, 1 << 26, 100, True, None, None, bad)


@pytest.mark.skipif("libjpeg" not in available_backends(), reason="the compiled backend is not built")
def test_extension_rejects_wrong_buffers_before_writing_anything() -> None:
    from freqnets.jpeg import _backends

    data = _jpeg((40, 56), 2)  # luma 5x7 blocks, chroma 3x4
    read = _backends._jpegc.read_coefficients
    y, c = np.full(64 * 35, -1.0, dtype=np.float32), np.full(2 * 64 * 12, -1.0, dtype=np.float32)
    good = [[y, 0, 64, 35, 7], [c, 0, 64, 12, 4], [c, 64 * 12, 64, 12, 4]]  # lists work as well as tuples
    read(data, 1 << 26, 100, True, [[0, 0, 5, 7], [0, 0, 3, 4], [0, 0, 3, 4]], None, good)
    assert (y != -1).any()
    y[:] = -1
    too_small = [good[0], good[1], [c[:-1], 64 * 12, 64, 12, 4]]  # the last component does not fit
    with pytest.raises(ValueError, match="does not fit"):
        read(data, 1 << 26, 100, True, None, None, too_small)
    assert (y == -1).all()  # nothing was written before the check failed
    unaligned = np.zeros(64 * 35 + 1, dtype=np.float32).view(np.uint8)[1 : 1 + 4 * 64 * 35].view(np.float32)
    for buffer in (np.zeros(64 * 35, dtype=np.float64), np.zeros(4 * 64 * 35, dtype=np.uint8), unaligned):
        with pytest.raises(ValueError, match="float32"):
            read(data, 1 << 26, 100, True, None, None, [[buffer, 0, 64, 35, 7], *good[1:]])


@pytest.mark.skipif("libjpeg" not in available_backends(), reason="the compiled backend is not built")
@pytest.mark.parametrize("window", [(0, 2**63 - 1, 1, 1), (2**63 - 1, 0, 1, 1), (1, 0, 2**63 - 1, 1)])
def test_extension_window_bounds_do_not_overflow(window) -> None:
    from freqnets.jpeg import _backends

    with pytest.raises(RuntimeError, match="outside"):
        _backends._jpegc.read_coefficients(_jpeg((40, 56), 0), 1 << 26, 100, True, [window] * 3)


@pytest.mark.skipif("libjpeg" not in available_backends(), reason="the compiled backend is not built")
def test_extension_survives_arguments_that_change_while_parsed() -> None:
    """``__index__`` emptying the argument lists while they are parsed (a use-after-free before)."""
    import subprocess
    import sys

    code = f"""
import numpy as np
from freqnets.jpeg import _backends
class Evil:
    def __init__(self, target): self.target = target
    def __index__(self): self.target.clear(); return 0
data = {_jpeg((40, 56), 0)!r}
outs = []
outs += [(np.zeros(64 * 35, np.float32), Evil(outs), 64, 35, 7) for _ in range(3)]
_backends._jpegc.read_coefficients(data, 1 << 26, 100, 1, [(0, 0, 5, 7)] * 3, None, outs)
windows = []
windows += [(Evil(windows), 0, 5, 7) for _ in range(3)]
_backends._jpegc.read_coefficients(data, 1 << 26, 100, 1, windows)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-500:]
