"""encode_dct against Pillow's libjpeg tables and an independent numpy/scipy float64 encoder."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import scipy.fft
import torch
from PIL import Image

from freqnets.jpeg import JpegCoefficients, decode_planes, encode_dct, quant_tables_for_quality
from freqnets.jpeg.encode import quality_scaling

PIL_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 RGB image: smooth gradients plus mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in (0.0, 1.0, 2.0)], -1)
    return np.clip(127.5 + 100 * base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _pillow_jpeg(array: np.ndarray, quality: int, subsampling: str = "4:2:0") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality, subsampling=PIL_SUBSAMPLING[subsampling])
    return buffer.getvalue()


@pytest.mark.parametrize("quality", [1, 10, 25, 50, 75, 90, 95, 100])
def test_quant_tables_equal_pillow(quality):
    with Image.open(io.BytesIO(_pillow_jpeg(_smooth_image(16, 16), quality))) as image:
        expected = np.array([image.quantization[0], image.quantization[1]])  # natural order in Pillow
    np.testing.assert_array_equal(quant_tables_for_quality(quality).numpy(), expected)
    coeffs = encode_dct(torch.zeros(3, 8, 8), quality=quality)
    np.testing.assert_array_equal(coeffs.quant_tables.numpy(), expected[[0, 1, 1]])


def _reference_encode(rgb: np.ndarray, quality: int, subsampling: str, b: int = 8) -> list[np.ndarray]:
    """float64 numpy/scipy baseline encoder: quantised integer coefficients (by, bx, b, b) per plane."""
    r, g, bl = (rgb[..., i].astype(np.int64) for i in range(3))
    # JFIF conversion in exact integer arithmetic (coefficients x 10^6), rounded half up
    scaled = [
        299000 * r + 587000 * g + 114000 * bl,
        -168736 * r - 331264 * g + 500000 * bl + 128_000000,
        500000 * r - 418688 * g - 81312 * bl + 128_000000,
    ]
    ycc = [np.clip((p + 500000) // 1000000, 0, 255).astype(np.float64) for p in scaled]
    fx, fy = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2)}[subsampling]
    planes = [ycc[0]]
    for p in ycc[1:]:
        h, w = p.shape
        p = np.pad(p, ((0, (-h) % fy), (0, (-w) % fx)), mode="edge")
        p = p.reshape(p.shape[0] // fy, fy, p.shape[1] // fx, fx).mean(axis=(1, 3))
        planes.append(np.clip(np.floor(p + 0.5), 0, 255))
    with Image.open(io.BytesIO(_pillow_jpeg(rgb[:8, :8], quality))) as image:
        tables = [np.array(image.quantization[0]).reshape(8, 8), np.array(image.quantization[1]).reshape(8, 8)]
    out = []
    for i, p in enumerate(planes):
        h, w = p.shape
        p = np.pad(p, ((0, (-h) % b), (0, (-w) % b)), mode="edge") - 128
        blocks = p.reshape(p.shape[0] // b, b, p.shape[1] // b, b).transpose(0, 2, 1, 3)
        coeffs = scipy.fft.dctn(blocks, axes=(2, 3), norm="ortho")
        scaled = coeffs / tables[min(i, 1)]
        # half away from zero (libjpeg); exact ties (e.g. DC, (0, 4): multiples of 1/8) need the 1e-9
        out.append(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5 + 1e-9))
    return out


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
@pytest.mark.parametrize("size", [(32, 32), (23, 37)])
def test_encode_matches_float64_reference(subsampling, size):
    rgb = _smooth_image(*size, seed=1)
    coeffs = encode_dct(torch.from_numpy(rgb).permute(2, 0, 1), quality=75, subsampling=subsampling)
    expected = _reference_encode(rgb, 75, subsampling)
    for plane, ref, table in zip(coeffs.planes(), expected, coeffs.quant_tables, strict=True):
        quantised = plane / table.view(-1, 1, 1)
        got = quantised.permute(1, 2, 0).reshape(ref.shape).double().numpy()
        np.testing.assert_array_equal(got, ref)
    # the contract's block grid: ceil(ceil(W * h_i / h_max) / 8)
    h, w = size
    fx, fy = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2)}[subsampling]
    assert coeffs.y.shape == (64, -(-h // 8), -(-w // 8))
    assert coeffs.cb.shape == (64, math.ceil(math.ceil(h / fy) / 8), math.ceil(math.ceil(w / fx) / 8))
    assert coeffs.size == size and coeffs.subsampling == subsampling and coeffs.order == "natural"


def test_float_uint8_and_pil_inputs_agree():
    rgb = _smooth_image(24, 40, seed=2)
    from_uint8 = encode_dct(torch.from_numpy(rgb).permute(2, 0, 1))
    from_float = encode_dct(torch.from_numpy(rgb).permute(2, 0, 1).double() / 255)
    from_pil = encode_dct(Image.fromarray(rgb))
    for other in (from_float, from_pil):
        for a, b in zip(from_uint8.planes(), other.planes(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_greyscale_inputs():
    grey = _smooth_image(20, 12)[..., 0]
    for image in (Image.fromarray(grey), torch.from_numpy(grey), torch.from_numpy(grey)[None]):
        coeffs = encode_dct(image)
        assert coeffs.cb is None and coeffs.cr is None and coeffs.subsampling == "gray"
        assert coeffs.y.shape == (64, 3, 2) and coeffs.quant_tables.shape == (1, 64)
    # DC of a block is 8 x (mean - 128) up to quantisation
    flat = encode_dct(torch.full((8, 8), 200, dtype=torch.uint8), quality=100)
    assert flat.y[0, 0, 0].item() == 8 * 72 and flat.y[1:].abs().max() == 0


def test_pillow_coefficients_read_back_agree():
    """Pillow (libjpeg, integer DCT) vs encode_dct: read with read_dct when it exists."""
    reader = pytest.importorskip("freqnets.jpeg.reader")
    rgb = _smooth_image(64, 96, seed=3)
    for quality in (50, 75, 95):
        ours = encode_dct(torch.from_numpy(rgb).permute(2, 0, 1), quality=quality)
        theirs = reader.read_dct(_pillow_jpeg(rgb, quality))
        assert theirs.subsampling == "4:2:0"
        torch.testing.assert_close(theirs.quant_tables, ours.quant_tables, rtol=0, atol=0)
        for a, b, table in zip(ours.planes(), theirs.to_order("natural").planes(), ours.quant_tables, strict=True):
            diff = ((a - b) / table.view(-1, 1, 1)).round().abs()
            # libjpeg's fixed-point colour conversion, downsampling and integer DCT differ from the float
            # pipeline by less than one step on almost every coefficient (measured: docs/jpeg.md)
            assert (diff == 0).double().mean() >= 0.95, f"quality {quality}: {(diff == 0).double().mean():.4f} equal"
            assert diff.max() <= 3


@pytest.mark.parametrize("block_size", [4, 16])
def test_other_block_sizes(block_size):
    table8 = quant_tables_for_quality(50).view(2, 8, 8)
    tables = quant_tables_for_quality(50, block_size).view(2, block_size, block_size)
    if block_size == 4:  # sampled at the same spatial frequency: (8v/4, 8u/4) = (2v, 2u)
        torch.testing.assert_close(tables, table8[:, ::2, ::2])
    else:  # even indices fall on the table, odd ones between two entries (bilinear), last clamped
        torch.testing.assert_close(tables[:, ::2, ::2], table8)
        mid = torch.floor((table8[:, 0, 0] + table8[:, 0, 1]).double() / 2 + 0.5).int()
        torch.testing.assert_close(tables[:, 0, 1], mid)
    rgb = torch.from_numpy(_smooth_image(32, 48, seed=4)).permute(2, 0, 1)
    coeffs = encode_dct(rgb, quality=100, block_size=block_size, subsampling="4:4:4")
    assert coeffs.y.shape == (block_size**2, 32 // block_size, 48 // block_size) and coeffs.block_size == block_size
    # quality 100: every step is 1, so the decoded planes are the 8-bit YCbCr samples up to rounding noise
    ycc = encode_dct(rgb, quality=100, block_size=8, subsampling="4:4:4")
    for got, ref in zip(decode_planes(coeffs), decode_planes(ycc), strict=True):
        assert (got - ref).pow(2).mean().sqrt() < 0.5


def test_bad_inputs_raise_typed_errors():
    image = torch.rand(3, 8, 8)
    for kwargs, match in [
        ({"quality": 0}, "quality"), ({"quality": 101}, "quality"), ({"quality": 7.5}, "quality"),
        ({"block_size": 7}, "block_size"), ({"subsampling": "4:1:1"}, "subsampling"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            encode_dct(image, **kwargs)
    with pytest.raises(ValueError, match="shape"):
        encode_dct(torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_dct(image * 255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_dct(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="dtype"):
        encode_dct(torch.ones(3, 8, 8, dtype=torch.int32))
    with pytest.raises(TypeError, match="PIL"):
        encode_dct(np.zeros((8, 8)))
    assert isinstance(encode_dct(image), JpegCoefficients)


def test_quality_scaling_matches_libjpeg_formula_endpoints():
    assert quality_scaling(50) == 100 and quality_scaling(100) == 0 and quality_scaling(1) == 5000
    assert quality_scaling(75) == 50 and quality_scaling(25) == 200
