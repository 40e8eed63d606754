"""DCTCollate and DCT-domain chroma conversion against the same operations on pixels (float64, scipy)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.fft
import torch

from freqnets.jpeg import DCTBatch, DCTCollate, JpegCoefficients, convert_chroma, encode_dct

# JPEG's zigzag scan of an 8x8 block (ITU-T T.81 figure A.6), natural row-major indices.
JPEG_ZIGZAG = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
    21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60,
    61, 54, 47, 55, 62, 63,
]  # fmt: skip


def to_pixels(plane: torch.Tensor) -> np.ndarray:
    """(64, by, bx) natural-order coefficients -> (by*8, bx*8) level-shifted pixels, scipy float64."""
    c = plane.double().numpy().reshape(8, 8, *plane.shape[1:]).transpose(2, 3, 0, 1)
    blocks = scipy.fft.idctn(c, axes=(2, 3), norm="ortho")
    return blocks.transpose(0, 2, 1, 3).reshape(c.shape[0] * 8, c.shape[1] * 8)


def to_coeffs(pixels: np.ndarray) -> torch.Tensor:
    """Inverse of :func:`to_pixels`."""
    by, bx = pixels.shape[0] // 8, pixels.shape[1] // 8
    blocks = pixels.reshape(by, 8, bx, 8).transpose(0, 2, 1, 3)
    c = scipy.fft.dctn(blocks, axes=(2, 3), norm="ortho")
    return torch.from_numpy(c.transpose(2, 3, 0, 1).reshape(64, by, bx).copy())


def average(pixels: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Average fy x fx pixels after repeating the last 8-pixel block row/column up to a multiple."""
    by, bx = pixels.shape[0] // 8, pixels.shape[1] // 8
    rows = [min(j, by - 1) for j in range(-(-by // fy) * fy)]
    cols = [min(i, bx - 1) for i in range(-(-bx // fx) * fx)]
    blocks = pixels.reshape(by, 8, bx, 8)[rows][:, :, cols].reshape(len(rows) * 8, len(cols) * 8)
    return blocks.reshape(blocks.shape[0] // fy, fy, blocks.shape[1] // fx, fx).mean(axis=(1, 3))


def image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=g)


def fit(c: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    out = torch.zeros(c.shape[0], rows, cols, dtype=c.dtype)
    out[:, : min(rows, c.shape[1]), : min(cols, c.shape[2])] = c[:, :rows, :cols]
    return out


@pytest.mark.parametrize(
    ("source", "target", "op"),
    [
        ("4:4:4", "420", ("avg", 2, 2)),
        ("4:2:2", "420", ("avg", 2, 1)),
        ("4:4:4", "422", ("avg", 1, 2)),
        ("4:2:0", "444", ("rep", 2, 2)),
        ("4:2:2", "444", ("rep", 1, 2)),
    ],
)
def test_convert_chroma_equals_pixel_operation(source, target, op):
    coeffs = encode_dct(image(40, 56), subsampling=source)  # luma 5x7 blocks: odd counts exercise the padding
    cb, cr = convert_chroma(coeffs, target)
    for got, plane in ((cb, coeffs.cb), (cr, coeffs.cr)):
        pixels = to_pixels(plane)
        kind, fy, fx = op
        if kind == "avg":
            expected = to_coeffs(average(pixels, fy, fx))
        else:
            expected = to_coeffs(pixels.repeat(fy, axis=0).repeat(fx, axis=1))
        fy_t, fx_t = {"420": (2, 2), "422": (1, 2), "444": (1, 1)}[target]
        expected = fit(expected, -(-5 // fy_t), -(-7 // fx_t))
        assert got.shape == expected.shape
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-3)


def test_convert_chroma_411_and_identity_and_grey():
    luma = encode_dct(image(24, 64, seed=1), subsampling="4:4:4")
    # a 4:1:1 file: chroma a quarter of the width (64 / 4 = 16 px = 2 blocks)
    chroma = encode_dct(image(24, 16, seed=2), subsampling="4:4:4")
    c411 = replace(luma, cb=chroma.cb, cr=chroma.cr, subsampling="4:1:1", sampling_factors=((4, 1), (1, 1), (1, 1)))
    cb, _ = convert_chroma(c411, "420")  # horizontal x2 replication, vertical 2x averaging
    pixels = to_pixels(chroma.cb).repeat(2, axis=1)
    torch.testing.assert_close(cb.double(), to_coeffs(average(pixels, 2, 1)), rtol=0, atol=1e-3)
    same = encode_dct(image(24, 40), subsampling="4:2:0")
    assert convert_chroma(same, "420")[0] is not None and torch.equal(convert_chroma(same, "420")[0], same.cb)
    grey = encode_dct(image(24, 40)[:1])
    cb, cr = convert_chroma(grey, "420")
    assert cb.shape == (64, 2, 3) and cb.abs().max() == 0 and cr.abs().max() == 0


def test_convert_chroma_keeps_zigzag_order():
    coeffs = encode_dct(image(32, 32), subsampling="4:4:4")
    natural = convert_chroma(coeffs, "420")[0]
    zigzag = convert_chroma(coeffs.to_order("zigzag"), "420")[0]
    torch.testing.assert_close(zigzag, natural[JPEG_ZIGZAG])


def test_planes_layout_mixed_batch():
    samples = [
        (encode_dct(image(32, 48, 0), subsampling="4:2:0"), 1),
        (encode_dct(image(32, 48, 1), subsampling="4:2:2").to_order("zigzag"), 2),
        (encode_dct(image(32, 48, 2), subsampling="4:4:4"), 3),
        (encode_dct(image(32, 48, 3)[:1]), 4),
    ]
    batch = DCTCollate(y_channels=10, c_channels=6)(samples)
    assert isinstance(batch, DCTBatch)
    assert batch.y.shape == (4, 10, 4, 6) and batch.cbcr.shape == (4, 12, 2, 3)
    assert batch.y.dtype == torch.float32 and batch.labels.dtype == torch.int64
    assert batch.labels.tolist() == [1, 2, 3, 4]
    for i, (c, _) in enumerate(samples):
        natural = c.to_order("natural")
        torch.testing.assert_close(batch.y[i], natural.y[JPEG_ZIGZAG[:10]])
        cb, cr = convert_chroma(natural, "420")
        torch.testing.assert_close(batch.cbcr[i, :6], cb[JPEG_ZIGZAG[:6]])
        torch.testing.assert_close(batch.cbcr[i, 6:], cr[JPEG_ZIGZAG[:6]])
    assert batch.cbcr[3].abs().max() == 0  # greyscale: neutral chroma


def test_stacked_layout_is_nearest_upsampled_planes():
    samples = [(encode_dct(image(40, 24, s)), s) for s in range(3)]
    planes = DCTCollate(y_channels=64, c_channels=64)(samples)
    x, labels = DCTCollate(layout="stacked")(samples)
    assert x.shape == (3, 192, 5, 3) and labels.tolist() == [0, 1, 2]
    torch.testing.assert_close(x[:, :64], planes.y)
    for i in range(5):
        for j in range(3):
            torch.testing.assert_close(x[:, 64:, i, j], planes.cbcr[:, :, i // 2, j // 2])


@pytest.mark.parametrize(
    ("sizes", "grid"),
    [([(40, 24)] * 3, None), ([(176, 144)] * 2, None), ([(176, 144), (200, 232), (90, 70)], (18, 20))],
    ids=["small-grid", "wide-grid", "mixed-sizes-and-layouts"],
)
def test_stacked_equals_planes_repeated_and_normalised(sizes, grid):
    """Stacked = the planes layout's chroma repeated per luma block (a test-side loop), normalised alike."""
    layouts = ["4:2:0", "4:4:4", "4:2:2"]
    samples = [(encode_dct(image(h, w, i), subsampling=layouts[i % 3] if grid else "4:2:0"), i)
               for i, (h, w) in enumerate(sizes)]  # fmt: skip
    g = torch.Generator().manual_seed(3)
    mean, std = torch.randn(192, generator=g), torch.rand(192, generator=g) + 0.5
    planes = DCTCollate(grid=grid)(samples)
    x, _ = DCTCollate(layout="stacked", grid=grid, normalize=(mean, std))(samples)
    hy, wy = planes.y.shape[-2:]
    expected = torch.zeros(len(samples), 192, hy, wy)
    expected[:, :64] = planes.y
    for i in range(hy):
        for j in range(wy):
            expected[:, 64:, i, j] = planes.cbcr[:, :, i // 2, j // 2]
    expected = (expected - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
    torch.testing.assert_close(x, expected, rtol=0, atol=0)


def test_grid_crop_and_pad_on_block_grid():
    big = encode_dct(image(64, 64, 0))  # 8x8 luma blocks, 4x4 chroma
    small = encode_dct(image(16, 32, 1))  # 2x4 luma blocks, 1x2 chroma
    batch = DCTCollate(grid=(4, 4))([(big, 0), (small, 1)])
    # crop: offset (8 - 4) // 2 = 2 luma blocks, 1 chroma block
    torch.testing.assert_close(batch.y[0], big.y[JPEG_ZIGZAG][:, 2:6, 2:6])
    torch.testing.assert_close(batch.cbcr[0, :64], big.cb[JPEG_ZIGZAG][:, 1:3, 1:3])
    # pad: rows (4 - 2) // 2 = 1 -> rounded down to the chroma factor: 0; columns fit exactly
    torch.testing.assert_close(batch.y[1, :, :2], small.y[JPEG_ZIGZAG])
    assert batch.y[1, :, 2:].abs().max() == 0
    torch.testing.assert_close(batch.cbcr[1, 64:, :1], small.cr[JPEG_ZIGZAG])
    assert batch.cbcr[1, :, 1:].abs().max() == 0


def test_normalize_selected_and_full_statistics():
    samples = [(encode_dct(image(16, 16, s)), 0) for s in range(2)]
    raw = DCTCollate(y_channels=3, c_channels=2)(samples)
    mean, std = torch.arange(7.0), torch.arange(1.0, 8.0)
    norm = DCTCollate(y_channels=3, c_channels=2, normalize=(mean, std))(samples)
    torch.testing.assert_close(norm.y, (raw.y - mean[:3, None, None]) / std[:3, None, None])
    torch.testing.assert_close(norm.cbcr, (raw.cbcr - mean[3:, None, None]) / std[3:, None, None])
    full_mean, full_std = torch.randn(192), torch.rand(192) + 0.5
    full = DCTCollate(y_channels=3, c_channels=2, normalize=(full_mean, full_std))(samples)
    pick = [0, 1, 2, 64, 65, 128, 129]
    torch.testing.assert_close(full.y, (raw.y - full_mean[pick[:3], None, None]) / full_std[pick[:3], None, None])
    torch.testing.assert_close(full.cbcr, (raw.cbcr - full_mean[pick[3:], None, None]) / full_std[pick[3:], None, None])


def test_works_in_a_dataloader():
    data = [(encode_dct(image(32, 32, s)), s % 10) for s in range(10)]
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=DCTCollate(y_channels=16, c_channels=4))
    shapes = [tuple(b.y.shape) for b in loader]
    assert shapes == [(4, 16, 4, 4), (4, 16, 4, 4), (2, 16, 4, 4)]


def test_bad_arguments_raise():
    sample = (encode_dct(image(16, 16)), 0)
    with pytest.raises(ValueError, match="layout"):
        DCTCollate(layout="grid")
    with pytest.raises(ValueError, match="y_channels"):
        DCTCollate(y_channels=0)
    with pytest.raises(ValueError, match="chroma"):
        DCTCollate(chroma="4:1:0")
    with pytest.raises(ValueError, match="grid"):
        DCTCollate(grid=(0, 4))
    with pytest.raises(ValueError, match="std"):
        DCTCollate(normalize=([0.0], [0.0]))
    with pytest.raises(ValueError, match="<= 64"):
        DCTCollate(y_channels=65)([sample])
    with pytest.raises(ValueError, match="normalize needs"):
        DCTCollate(normalize=([0.0] * 5, [1.0] * 5))([sample])
    with pytest.raises(ValueError, match="grid"):
        DCTCollate()([sample, (encode_dct(image(24, 16)), 1)])
    with pytest.raises(ValueError, match="empty"):
        DCTCollate()([])
    with pytest.raises(TypeError, match="JpegCoefficients"):
        DCTCollate()([(torch.zeros(3), 0)])
    assert isinstance(sample[0], JpegCoefficients)


def test_fast_and_general_paths_agree():
    base = [(encode_dct(image(24, 40, s)), s) for s in range(4)]
    natural = DCTCollate(y_channels=12, c_channels=5)(base)  # same layout: stacked in one go
    zigzag = DCTCollate(y_channels=12, c_channels=5)([(c.to_order("zigzag"), label) for c, label in base])
    mixed = DCTCollate(y_channels=12, c_channels=5)([(c.to_order("zigzag") if i % 2 else c, label)
                                                    for i, (c, label) in enumerate(base)])  # fmt: skip
    for batch in (zigzag, mixed):
        torch.testing.assert_close(batch.y, natural.y, rtol=0, atol=0)
        torch.testing.assert_close(batch.cbcr, natural.cbcr, rtol=0, atol=0)
    for i, (c, _) in enumerate(base):
        torch.testing.assert_close(natural.y[i], c.y[JPEG_ZIGZAG[:12]])
        torch.testing.assert_close(natural.cbcr[i], torch.cat([c.cb[JPEG_ZIGZAG[:5]], c.cr[JPEG_ZIGZAG[:5]]]))


def test_grid_crop_converts_only_the_window():
    c444 = encode_dct(image(64, 96, 7), subsampling="4:4:4")  # 8x12 luma blocks
    batch = DCTCollate(grid=(4, 6))([(c444, 0)])
    cb, cr = convert_chroma(c444, "420")  # whole image (4x6 chroma blocks), then the centre window
    torch.testing.assert_close(batch.y[0], c444.y[JPEG_ZIGZAG][:, 2:6, 2:8])  # offset 3 -> 2 (even)
    torch.testing.assert_close(batch.cbcr[0, :64], cb[JPEG_ZIGZAG][:, 1:3, 1:4], rtol=0, atol=1e-3)
    torch.testing.assert_close(batch.cbcr[0, 64:], cr[JPEG_ZIGZAG][:, 1:3, 1:4], rtol=0, atol=1e-3)


def reference_batch(coeffs, layout, ky, kc, chroma, stats):
    """DCTCollate's output for samples already in the target layout and grid, written plainly per sample."""
    fh, fv = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}[chroma]
    ys, cbcrs, xs = [], [], []
    for c in coeffs:
        pick_y = list(range(ky)) if c.order == "zigzag" else JPEG_ZIGZAG[:ky]
        pick_c = list(range(kc)) if c.order == "zigzag" else JPEG_ZIGZAG[:kc]
        y, cbcr = c.y[pick_y], torch.cat([c.cb[pick_c], c.cr[pick_c]])
        if stats is not None:
            mean, std = stats
            y = (y - mean[:ky, None, None]) / std[:ky, None, None]
            cbcr = (cbcr - mean[ky:, None, None]) / std[ky:, None, None]
        ys.append(y)
        cbcrs.append(cbcr)
        hy, wy = y.shape[1:]
        up = cbcr.repeat_interleave(fv, dim=1).repeat_interleave(fh, dim=2)[:, :hy, :wy]
        xs.append(torch.cat([y, up]))
    if layout == "planes":
        return torch.stack(ys), torch.stack(cbcrs)
    return (torch.stack(xs),)


@pytest.mark.parametrize("layout", ["planes", "stacked"])
@pytest.mark.parametrize("order", ["natural", "zigzag"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize(
    ("size", "subsampling", "chroma", "channels"),
    [
        ((64, 96), "4:2:0", "420", (64, 64)),  # 8x12 luma blocks: written sample by sample
        ((64, 96), "4:2:0", "420", (10, 3)),
        ((32, 32), "4:2:0", "420", (64, 64)),  # 4x4 (CIFAR): stacked over the batch
        ((32, 32), "4:2:0", "420", (6, 0)),
        ((40, 24), "4:2:0", "420", (64, 5)),  # 5x3 blocks: the chroma grid overhangs the luma grid
        ((64, 80), "4:2:2", "422", (20, 64)),
        ((72, 64), "4:4:4", "444", (64, 7)),
    ],
)
def test_fast_path_equals_plain_reference_and_general_path(
    monkeypatch, layout, order, normalize, size, subsampling, chroma, channels
):
    ky, kc = channels
    coeffs = [encode_dct(image(*size, s), subsampling=subsampling).to_order(order) for s in range(3)]
    samples = [(c, i) for i, c in enumerate(coeffs)]
    stats = (torch.randn(ky + 2 * kc), torch.rand(ky + 2 * kc) + 0.5) if normalize else None
    collate = DCTCollate(layout=layout, y_channels=ky, c_channels=kc, chroma=chroma, normalize=stats)
    calls = []
    fast = collate._fast
    monkeypatch.setattr(collate, "_fast", lambda *args: calls.append(1) or fast(*args))
    batch = collate(samples)
    assert calls, "the fast path was not taken"
    exact = {"rtol": 0, "atol": 0} if stats is None else {}
    expected = reference_batch(coeffs, layout, ky, kc, chroma, stats)
    for got, want in zip(batch[:-1], expected, strict=True):
        assert got.dtype == torch.float32 and got.is_contiguous()
        torch.testing.assert_close(got, want, **exact)
    assert batch[-1].tolist() == [0, 1, 2]
    # the general path (crop/pad per sample) gives the same batch
    monkeypatch.setattr(collate, "_in_layout", lambda coeffs, *args: [False] * len(coeffs))
    general = collate(samples)
    for got, want in zip(batch, general, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_fast_path_with_full_statistics_and_mixed_orders():
    coeffs = [encode_dct(image(64, 64, s)) for s in range(2)]
    mean, std = torch.randn(192), torch.rand(192) + 0.5
    pick = torch.tensor([*range(5), *range(64, 66), *range(128, 130)])
    collate = DCTCollate(layout="stacked", y_channels=5, c_channels=2, normalize=(mean, std))
    x, _ = collate([(c.to_order("zigzag"), 0) for c in coeffs])
    (want,) = reference_batch(coeffs, "stacked", 5, 2, "420", (mean[pick], std[pick]))
    torch.testing.assert_close(x, want)
    mixed, _ = collate([(coeffs[0], 0), (coeffs[1].to_order("zigzag"), 0)])  # general path
    torch.testing.assert_close(mixed, x, rtol=0, atol=0)


class _CollateInWorker:
    """Runs DCTCollate and records whether each output tensor was allocated in shared memory."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, samples):
        batch = self.collate(samples)
        return batch, torch.tensor([t.is_shared() for t in batch])


@pytest.mark.parametrize(("layout", "grid"), [("planes", None), ("stacked", None), ("stacked", (6, 6))])
def test_dataloader_worker_output_equals_main_process_and_is_shared(layout, grid):
    coeffs = [encode_dct(image(64, 80 if s % 2 else 64, s)) for s in range(6)]  # grid (6, 6): general path
    if grid is None:
        coeffs = [encode_dct(image(64, 64, s)) for s in range(6)]
    data = [(c, s) for s, c in enumerate(coeffs)]
    collate = DCTCollate(layout=layout, y_channels=20, c_channels=6, grid=grid, normalize=([0.5] * 32, [2.0] * 32))
    main = [collate(data[i : i + 4]) for i in (0, 4)]
    assert not any(t.is_shared() for batch in main for t in batch)  # a normal allocation outside workers
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=1, collate_fn=_CollateInWorker(collate))
    batches = list(loader)
    assert len(batches) == 2
    for (batch, shared), expected in zip(batches, main, strict=True):
        assert type(batch) is type(expected)
        for got, want in zip(batch, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert shared[:-1].all()  # y/cbcr or x were written straight into shared memory (labels: torch.tensor)


@pytest.mark.parametrize("layout", ["planes", "stacked"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("order", ["natural", "zigzag"])
def test_mixed_batch_fast_samples_and_general_samples(monkeypatch, layout, normalize, order):
    """Samples already in the grid and layout are written directly, the others through the general path."""
    grey = encode_dct(image(64, 64, 9))
    grey = replace(grey, cb=None, cr=None, sampling_factors=((1, 1),), subsampling="gray")
    coeffs = [
        encode_dct(image(64, 64, 0)).to_order(order),  # in layout (8x8 luma blocks, 4:2:0)
        encode_dct(image(64, 64, 1), subsampling="4:4:4").to_order(order),  # other chroma layout
        encode_dct(image(80, 96, 2)).to_order(order),  # other grid: cropped
        encode_dct(image(64, 64, 3)).to_order(order),
        grey,  # greyscale: zero chroma
        encode_dct(image(64, 64, 4)).to_order("natural" if order == "zigzag" else "zigzag"),  # other order
    ]
    samples = [(c, i) for i, c in enumerate(coeffs)]
    ky, kc = 12, 9
    stats = (torch.randn(ky + 2 * kc), torch.rand(ky + 2 * kc) + 0.5) if normalize else None
    collate = DCTCollate(layout=layout, y_channels=ky, c_channels=kc, grid=(8, 8), normalize=stats)
    fits = collate._in_layout(coeffs, collate.batch_shape(8, 8))
    assert fits == [True, False, False, True, False, False]
    batch = collate(samples)
    monkeypatch.setattr(collate, "_in_layout", lambda coeffs, *args: [False] * len(coeffs))
    general = collate(samples)
    for got, want in zip(batch, general, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    expected = reference_batch([coeffs[0], coeffs[3]], layout, ky, kc, "420", stats)
    for got, want in zip(batch[:-1], expected, strict=True):
        torch.testing.assert_close(got[[0, 3]], want, **({"rtol": 0, "atol": 0} if stats is None else {}))
    zero = torch.zeros(2 * kc, 4, 4) if stats is None else (-stats[0][ky:] / stats[1][ky:])[:, None, None]
    grey_chroma = batch[1][4] if layout == "planes" else batch[0][4, ky:, ::2, ::2]
    torch.testing.assert_close(grey_chroma, zero.expand(2 * kc, 4, 4))
