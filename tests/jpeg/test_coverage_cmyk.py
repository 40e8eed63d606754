"""CMYK and YCCK JPEGs (issue 17): their four planes are read, the colour model is recorded, and
``cmyk_to_ycbcr`` gives three YCbCr planes for the collate and models.

References: Pillow's decode of the same files (libjpeg's inverse DCT, its YCCK -> CMYK conversion and its
``CMYK;I`` reading of Adobe files), Pillow's ``convert("RGB")`` for the colour rule, scipy's DCT for the
YCCK test files (written coefficient by coefficient with ``jpeg_writer.py``), and the python decoder.
"""

from __future__ import annotations

import dataclasses
import io
import struct

import numpy as np
import pytest
import scipy.fft
import torch
from PIL import Image

from freqnets.jpeg import (
    DCTCollate,
    DCTReadCollate,
    JpegUnsupportedError,
    cmyk_to_ycbcr,
    decode_planes,
    read_dct,
)
from freqnets.jpeg._backends import available_backends

from .jpeg_writer import encode_baseline

DECODERS = [b for b in available_backends() if b != "jpeg2dct"]
# JFIF YCbCr -> RGB (level-shifted chroma), the inverse of the encoder's weights
YCC_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136286, -0.714136286], [1.0, 1.772, 0.0]])


def _smooth(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Smooth textured samples ``(h, w, c)`` in 0..255 (float)."""
    h, w, c = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = [128 + 90 * np.sin(xx / (5.0 + i) + i) * np.cos(yy / (7.0 - i / 2)) + rng.normal(0, 6, (h, w)) for i in range(c)]
    return np.clip(np.stack(out, -1), 0, 255)


def _blocky(shape: tuple[int, int], seed: int, size: int = 8) -> np.ndarray:
    """Samples constant over each ``size x size`` block (a K plate that is flat per block)."""
    h, w = shape
    levels = np.random.default_rng(seed).integers(0, 256, (-(-h // size), -(-w // size)))
    return np.kron(levels, np.ones((size, size)))[:h, :w].astype(np.float64)


def _pillow_cmyk(pixels: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "CMYK").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _pillow_pixels(data: bytes, mode: str | None = None) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    return np.asarray(image if mode is None else image.convert(mode)).astype(np.float64)


def _rgb(coeffs) -> np.ndarray:
    """``(h, w, 3)`` RGB of YCbCr coefficients with equal sampling, by the inverse DCT and JFIF's matrix."""
    planes = np.stack([p.numpy() for p in decode_planes(coeffs)], -1)
    planes[..., 1:] -= 128.0
    return planes @ YCC_TO_RGB.T


def _ycck_file(ink: np.ndarray, k_stored: np.ndarray, subsampled: bool) -> tuple[bytes, list[np.ndarray]]:
    """A YCCK JPEG (Adobe APP14 transform 2) as Photoshop writes them: libjpeg's convention, Y, Cb, Cr of the inks
    (``R = 255 - stored C``) and K stored as is; quantisation table all 2. Returns the file and its quantised
    coefficients per component ``(rows, cols, 64)``, natural order."""
    h, w = k_stored.shape
    weights = np.array([[0.299, 0.587, 0.114], [-0.168735892, -0.331264108, 0.5], [0.5, -0.418687589, -0.081312411]])
    ycc = ink @ weights.T
    ycc[..., 0] -= 128.0  # level shift; chroma is centred at 128 already (the +128 cancels it)
    channels = [ycc[..., 0], ycc[..., 1], ycc[..., 2], k_stored - 128.0]
    factors = [(2, 2), (1, 1), (1, 1), (2, 2)] if subsampled else [(1, 1)] * 4
    coefficients = []
    for channel, (fh, _) in zip(channels, factors, strict=True):
        if subsampled and fh == 1:  # 2x2 averages, as libjpeg's downsampler (up to its rounding)
            channel = channel.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        rows, cols = channel.shape[0] // 8, channel.shape[1] // 8
        blocks = channel.reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3)
        dct = scipy.fft.dctn(blocks, type=2, norm="ortho", axes=(2, 3)).reshape(rows, cols, 64)
        coefficients.append(np.rint(dct / 2).astype(np.int64))
    data = encode_baseline(coefficients, factors, (h, w), np.full((4, 64), 2))
    adobe = b"\xff\xee" + struct.pack(">H", 14) + b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 2)
    return data[:2] + adobe + data[2:], coefficients


@pytest.mark.parametrize("backend", DECODERS)
def test_cmyk_planes_are_the_stored_samples(backend) -> None:
    pixels = _smooth((40, 56, 4), seed=1)
    data = _pillow_cmyk(pixels)
    got = read_dct(data, backend=backend)
    assert (got.colour_model, got.adobe_inverted, got.subsampling) == ("cmyk", True, "4:4:4")
    assert len(got.planes()) == 4 and got.k.shape == (64, 5, 7) and got.quant_tables.shape == (4, 64)
    # Pillow writes ink as 255 - sample (Adobe convention) and reads it back as "CMYK;I"
    decoded = np.stack([p.numpy() for p in decode_planes(got)], -1)
    assert np.abs(decoded - (255.0 - _pillow_pixels(data))).max() <= 1.5
    if backend != "python":
        reference = read_dct(data, backend="python")
        assert all(torch.equal(a, b) for a, b in zip(got.planes(), reference.planes(), strict=True))
    zigzag = read_dct(data, backend=backend, order="zigzag", crop=(2, 3))
    assert zigzag.k.shape == (64, 2, 3) and torch.equal(zigzag.to_order("natural").k, got.k[:, 0:2, 2:5])  # centre window, offsets in even blocks


def test_cmyk_to_ycbcr_matches_pillows_colour_conversion() -> None:
    pixels = _smooth((48, 64, 4), seed=2)
    pixels[..., 3] = _blocky((48, 64), seed=3)  # black flat per block: the block rule is exact
    data = _pillow_cmyk(pixels)
    coeffs = read_dct(data)
    ink = _pillow_pixels(data)  # Pillow's decode: ink amounts
    # without black: the inks alone, 255 - ink, exact up to the decoders' rounding
    plain = cmyk_to_ycbcr(coeffs, black="ignore")
    assert (plain.colour_model, plain.k, len(plain.planes())) == ("ycbcr", None, 3)
    assert np.abs(_rgb(plain) - (255.0 - ink[..., :3])).max() <= 2.0
    # with black: Pillow's convert("RGB"), (255 - c)(255 - k) / 255
    full = cmyk_to_ycbcr(coeffs)
    assert np.abs(_rgb(full) - _pillow_pixels(data, "RGB")).max() <= 2.5
    assert full.quant_tables.shape == (3, 64) and full.sampling_factors == ((1, 1),) * 3


def test_cmyk_black_with_texture_inside_blocks_is_an_approximation() -> None:
    """Black that varies inside a block (here strongly: a sinusoid of amplitude 90 plus noise): the per-block
    rule keeps the block's mean black, not its texture, so it is not exact (docs/jpeg.md: mean error 9 of 255)
    but far closer to Pillow's conversion than dropping the black plate."""
    pixels = _smooth((48, 64, 4), seed=4)
    data = _pillow_cmyk(pixels)
    coeffs, expected = read_dct(data), _pillow_pixels(data, "RGB")
    block = np.abs(_rgb(cmyk_to_ycbcr(coeffs)) - expected)
    ignore = np.abs(_rgb(cmyk_to_ycbcr(coeffs, black="ignore")) - expected)
    assert block.max() > 2.5 and block.mean() < ignore.mean() / 4


@pytest.mark.parametrize("subsampled", [False, True], ids=["444", "420"])
@pytest.mark.parametrize("backend", DECODERS)
def test_ycck_planes_and_conversion_against_pillow(backend, subsampled) -> None:
    h, w = 48, 64
    stored = _smooth((h, w, 3), seed=5) * 0.6 + 50  # away from 0 and 255: libjpeg clamps there
    # Adobe: K stored inverted, 255 = no black ink; flat over 16x16, the pixels of one 4:2:0 chroma block
    k_stored = _blocky((h, w), seed=6, size=16) * 0.5 + 127
    data, coefficients = _ycck_file(255.0 - stored, k_stored, subsampled)
    got = read_dct(data, backend=backend)
    assert (got.colour_model, got.adobe_inverted) == ("ycck", True)
    assert got.subsampling == ("4:2:0" if subsampled else "4:4:4")
    for plane, expected in zip(got.planes(), coefficients, strict=True):
        rows, cols = plane.shape[1:]
        assert torch.equal(plane, torch.from_numpy(2.0 * expected[:rows, :cols].transpose(2, 0, 1)).float())
    # Pillow: libjpeg's YCCK -> CMYK, read as CMYK;I: ink amounts
    ink = _pillow_pixels(data)
    plain = cmyk_to_ycbcr(got, black="ignore")
    assert plain.subsampling == got.subsampling
    if not subsampled:
        assert np.abs(_rgb(plain) - (255.0 - ink[..., :3])).max() <= 2.0
        assert np.abs(_rgb(cmyk_to_ycbcr(got)) - _pillow_pixels(data, "RGB")).max() <= 2.5
    else:  # Pillow's 4:2:0 chroma goes through libjpeg's fancy upsampling: compare luma, Y of 255 - ink
        visible = 255.0 - ink[..., :3]
        luma = visible @ np.array([0.299, 0.587, 0.114])
        assert np.abs(decode_planes(plain)[0].numpy() - luma).max() <= 3.0
        # black per block, each plane at its own resolution: (255 - k) / 255 from Pillow's K times the
        # black-free samples (luma: Y = f Y0; chroma: Cb - 128 = f (Cb0 - 128))
        factor = (255.0 - ink[..., 3]) / 255.0
        full, free = decode_planes(cmyk_to_ycbcr(got)), decode_planes(plain)
        assert np.abs(full[0].numpy() - factor * free[0].numpy()).max() <= 1.0
        for index in (1, 2):
            expected = factor[::2, ::2] * (free[index].numpy() - 128.0) + 128.0
            assert np.abs(full[index].numpy() - expected).max() <= 1.0


def test_collate_refuses_four_planes_unless_asked_to_convert() -> None:
    data = _pillow_cmyk(_smooth((32, 32, 4), seed=7))
    coeffs = read_dct(data)
    with pytest.raises(JpegUnsupportedError, match=r"sample 0 of the batch is CMYK.*cmyk='ycbcr'"):
        DCTCollate()([(coeffs, 1)])
    with pytest.raises(ValueError, match="cmyk must be one of"):
        DCTCollate(cmyk="drop")
    converted = DCTCollate(cmyk="ycbcr")([(coeffs, 1)])
    expected = DCTCollate()([(cmyk_to_ycbcr(coeffs), 1)])
    assert torch.equal(converted.y, expected.y) and torch.equal(converted.cbcr, expected.cbcr)
    # the read-and-collate path reads CMYK files through read_dct, then converts or refuses the same way
    ycbcr = io.BytesIO()
    Image.fromarray(_smooth((32, 32, 3), seed=8).astype(np.uint8)).save(ycbcr, "JPEG")
    samples = [(data, 1), (ycbcr.getvalue(), 2)]
    with pytest.raises(JpegUnsupportedError, match="CMYK"):
        DCTReadCollate(DCTCollate())(samples)
    batch = DCTReadCollate(DCTCollate(cmyk="ycbcr"))(samples)
    reference = DCTCollate(cmyk="ycbcr")([(read_dct(d, order="zigzag"), label) for d, label in samples])
    assert torch.allclose(batch.y, reference.y) and torch.allclose(batch.cbcr, reference.cbcr)


def test_cmyk_to_ycbcr_arguments_and_three_plane_inputs() -> None:
    ycbcr = io.BytesIO()
    Image.fromarray(_smooth((16, 16, 3), seed=9).astype(np.uint8)).save(ycbcr, "JPEG")
    coeffs = read_dct(ycbcr.getvalue())
    assert coeffs.colour_model == "ycbcr" and cmyk_to_ycbcr(coeffs) is coeffs
    gray = io.BytesIO()
    Image.fromarray(_smooth((16, 16, 1), seed=9)[..., 0].astype(np.uint8)).save(gray, "JPEG")
    assert read_dct(gray.getvalue()).colour_model == "grayscale"
    with pytest.raises(ValueError, match="black must be one of"):
        cmyk_to_ycbcr(coeffs, black="mean")


def test_k_plane_and_colour_model_come_together() -> None:
    """A K plane without a four-colour model (or the model without K) is refused when built, not later in
    cmyk_to_ycbcr (an IndexError, or K dropped silently)."""
    coeffs = read_dct(_pillow_cmyk(_smooth((16, 24, 4), seed=10)))
    k = coeffs.k
    with pytest.raises(ValueError, match="needs the fourth plane k"):
        dataclasses.replace(coeffs, k=None)
    with pytest.raises(ValueError, match="four_colour must be one of"):
        dataclasses.replace(coeffs, four_colour=None)
    with pytest.raises(ValueError, match="four_colour must be one of"):
        dataclasses.replace(coeffs, four_colour="rgbk")
    with pytest.raises(ValueError, match="needs cb and cr"):
        dataclasses.replace(coeffs, cb=None, cr=None)
    three = cmyk_to_ycbcr(coeffs)
    with pytest.raises(ValueError, match="four_colour must be one of"):
        dataclasses.replace(three, k=k)  # a K plane on YCbCr coefficients: which model is it?
    with pytest.raises(ValueError, match="needs the fourth plane k"):
        dataclasses.replace(three, four_colour="cmyk")
    assert dataclasses.replace(three, k=k, four_colour="ycck").colour_model == "ycck"
