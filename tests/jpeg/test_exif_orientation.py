"""read_dct(exif_orientation=True) (issue 17): the EXIF orientation applied exactly in the DCT domain.

References: Pillow's ``ImageOps.exif_transpose`` of its own decode of the same file (luma through libjpeg's
inverse DCT, which does not mix blocks: equal within its rounding), NumPy's rot90/flip of our own inverse
DCT of the unturned planes (the subsampled chroma, which Pillow's decoder upsamples across blocks), and
:func:`freqnets.jpeg.convert_chroma` for layouts asked with ``chroma``. Hostile EXIF never raises.
"""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from freqnets.jpeg import (
    DCTCollate,
    DCTReadCollate,
    JpegFolderDataset,
    JpegUnsupportedError,
    available_backends,
    convert_chroma,
    decode_planes,
    read_dct,
)
from freqnets.jpeg.exif import exif_orientation
from freqnets.jpeg.orientation import apply_orientation

DECODERS = [b for b in available_backends() if b != "jpeg2dct"]
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
# NumPy's turn of a (h, w) array for each orientation (what exif_transpose does to the image)
TURN = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).T,
    8: lambda a: np.rot90(a, 1),
}


def _exif(orientation: int, little_endian: bool = True) -> bytes:
    """An APP1 payload: ``Exif\\0\\0`` and a TIFF header whose first IFD holds Orientation (SHORT, 1)."""
    order = "<" if little_endian else ">"
    tiff = (b"II" if little_endian else b"MM") + struct.pack(order + "HI", 42, 8)
    tiff += struct.pack(order + "H", 2)  # two entries: another tag first, then Orientation
    tiff += struct.pack(order + "HHI", 0x010F, 2, 4) + b"cam\x00"  # Make, ASCII, inline
    tiff += struct.pack(order + "HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"Exif\x00\x00" + tiff + struct.pack(order + "I", 0)


def _jpeg(size: tuple[int, int], orientation: int | None, mode: str = "RGB", subsampling: str = "4:2:0",
          exif: bytes | None = None, seed: int = 0) -> bytes:  # fmt: skip
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    channels = [128 + 70 * np.sin(xx / (3.0 + c) + c) * np.cos(yy / 5.0 + c) + rng.normal(0, 20, (h, w))
                for c in range(4)]  # fmt: skip
    pixels = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels[..., :4] if mode == "CMYK" else pixels[..., :3], "CMYK" if mode == "CMYK" else None)
    if mode == "L":
        image = image.convert("L")
    options = {"quality": 90}
    if mode == "RGB":
        options["subsampling"] = SUBSAMPLING[subsampling]
    if exif is None and orientation is not None:
        exif = _exif(orientation)
    if exif is not None:
        options["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def _pillow_turned(data: bytes, box: tuple[int, int] | None = None) -> np.ndarray:
    """Pillow's decode (YCbCr/L/CMYK, no colour conversion), cut to the stored ``box`` (h, w), turned by
    exif_transpose; ``(h, w, channels)``."""
    image = Image.open(io.BytesIO(data))
    if image.mode == "RGB":
        image.draft("YCbCr", image.size)
    if box is not None:
        image = image.crop((0, 0, box[1], box[0]))  # keeps info["exif"], which exif_transpose reads
    pixels = np.asarray(ImageOps.exif_transpose(image)).astype(np.float64)
    return pixels if pixels.ndim == 3 else pixels[..., None]


def _clamped(plane: torch.Tensor) -> np.ndarray:
    """Our inverse DCT's samples clamped to 0..255, as every decoder writes them."""
    return np.clip(plane.numpy(), 0.0, 255.0)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_whole_mcus_equal_pillows_exif_transpose(subsampling, orientation) -> None:
    data = _jpeg((48, 64), orientation, subsampling=subsampling)
    plain, turned = read_dct(data), read_dct(data, exif_orientation=True)
    expected = _pillow_turned(data)
    transposed = orientation >= 5
    assert turned.size == ((64, 48) if transposed else (48, 64)) and turned.warnings == ()
    swapped = {"4:2:2": "4:4:0"}.get(subsampling, subsampling) if transposed else subsampling
    assert turned.subsampling == swapped
    ours = decode_planes(turned)
    # luma: libjpeg's inverse DCT is per block, so Pillow's turned decode matches to its rounding
    assert np.abs(_clamped(ours[0]) - expected[..., 0]).max() <= 1.0
    if subsampling == "4:4:4":
        for index in (1, 2):
            assert np.abs(_clamped(ours[index]) - expected[..., index]).max() <= 1.0
    # every plane (chroma at its own resolution): the turn of the unturned plane's inverse DCT
    for mine, stored in zip(ours, decode_planes(plain), strict=True):
        assert np.allclose(mine.numpy(), TURN[orientation](stored.numpy()), atol=1e-3)
    # quantisation tables turn with the coefficients: the planes stay on their lattice
    for plane, table in zip(turned.planes(), turned.quant_tables, strict=True):
        steps = table.view(64, 1, 1).float()
        assert torch.equal(torch.round(plane / steps) * steps, plane)


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize("orientation", range(2, 9))
def test_partial_edge_mcus_are_trimmed_where_a_mirror_moves_them(orientation, backend) -> None:
    """37x53 4:2:0 (16-pixel MCUs): a mirror of an axis first drops its partial MCU (jpegtran -trim); the kept
    part then equals Pillow's turned decode of that part; axes only transposed keep their partial edge."""
    data = _jpeg((37, 53), orientation)
    turned = read_dct(data, exif_orientation=True, backend=backend)
    mirror_rows = orientation in (3, 4, 6, 7)  # stored axes a mirror turns: rows (height), columns (width)
    mirror_cols = orientation in (2, 3, 7, 8)
    kept = (32 if mirror_rows else 37, 48 if mirror_cols else 53)
    assert turned.size == (kept[::-1] if orientation >= 5 else kept)
    expected = _pillow_turned(data, box=kept)
    assert np.abs(_clamped(decode_planes(turned)[0]) - expected[..., 0]).max() <= 1.0


MCU = {"4:4:4": (8, 8), "4:2:2": (8, 16), "4:2:0": (16, 16)}  # (height, width) in pixels


def _kept(size: tuple[int, int], orientation: int, subsampling: str) -> tuple[int, int]:
    """The stored part a turn keeps: mirrored axes of at least one MCU rounded down to whole MCUs."""
    mirrored = (orientation in (3, 4, 6, 7), orientation in (2, 3, 7, 8))  # stored rows, columns
    return tuple(n // m * m if mirror and n >= m else n
                 for n, m, mirror in zip(size, MCU[subsampling], mirrored, strict=True))  # fmt: skip


SMALL = [((8, 8), 2, "4:2:0"), ((5, 20), 4, "4:2:0"), ((6, 6), 6, "4:2:0"), ((5, 20), 3, "4:2:0"),
         ((12, 9), 7, "4:2:2"), ((7, 13), 8, "4:4:4"), ((14, 11), 5, "4:2:0"), ((3, 40), 3, "4:4:4")]  # fmt: skip


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize(("size", "orientation", "subsampling"), SMALL)
def test_axes_under_one_mcu_are_mirrored_exactly(size, orientation, subsampling, backend) -> None:
    """A mirrored axis shorter than one MCU cannot be trimmed (nothing would be left) and its planes' partial
    blocks do not line up under a block flip (8 luma pixels of 4:2:0 are 4 of an 8-pixel chroma block): every
    plane is mirrored over its own pixels by an exact map, so the size stays and luma and chroma stay aligned."""
    data = _jpeg(size, orientation, subsampling=subsampling, seed=3)
    plain, turned = read_dct(data, backend=backend), read_dct(data, exif_orientation=True, backend=backend)
    kept = _kept(size, orientation, subsampling)
    assert turned.size == (kept[::-1] if orientation >= 5 else kept)
    expected = _pillow_turned(data, box=kept)
    ours = decode_planes(turned)
    assert np.abs(_clamped(ours[0]) - expected[..., 0]).max() <= 1.0
    if subsampling == "4:4:4":
        for index in (1, 2):
            assert np.abs(_clamped(ours[index]) - expected[..., index]).max() <= 1.0
    # every plane, at its own resolution: the turn of the stored plane's kept pixels; grids cover them
    for mine, stored, plane in zip(ours, decode_planes(plain), turned.planes(), strict=True):
        part = stored.numpy()[: -(-kept[0] * stored.shape[0] // size[0]), : -(-kept[1] * stored.shape[1] // size[1])]
        want = TURN[orientation](part)
        assert mine.shape == want.shape and np.allclose(mine.numpy(), want, atol=1e-2)
        assert tuple(plane.shape[-2:]) == (-(-want.shape[0] // 8), -(-want.shape[1] // 8))
    assert torch.equal(read_dct(data, exif_orientation=True, order="zigzag").to_order("natural").cb, turned.cb)


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2"])
def test_crop_shape_does_not_depend_on_the_orientation(subsampling, backend) -> None:
    """crop=(Hy, Wy) is the centre window of the turned image (offsets rounded down to even blocks and whole
    MCUs): the same shapes for every orientation, the values of the whole turned read's window and of
    Pillow's exif_transpose cut to it."""
    size = (72, 88)  # 4.5 x 5.5 MCUs of 4:2:0: partial edge MCUs on both axes
    for crop in ((3, 3), (5, 4), (4, 7)):
        shapes, converted = {}, set()
        for orientation in range(1, 9):
            data = _jpeg(size, orientation, subsampling=subsampling, seed=orientation)
            whole = read_dct(data, exif_orientation=True, backend=backend)
            cropped = read_dct(data, exif_orientation=True, backend=backend, crop=crop)
            # per layout: a transpose turns 4:2:2 into 4:4:0; a chroma layout asked for gives one shape
            shapes.setdefault(cropped.subsampling, set()).add(tuple(tuple(p.shape) for p in cropped.planes()))
            layout = read_dct(data, exif_orientation=True, backend=backend, crop=crop, chroma="420")
            converted.add(tuple(tuple(p.shape) for p in layout.planes()))
            (h_max, v_max), (h, v) = whole.sampling_factors[:2]
            # the turned image's centre window: offsets rounded down to whole MCUs and even blocks
            top, left = ((n - want) // 2 // math.lcm(2, m) * math.lcm(2, m)
                         for n, want, m in zip(whole.y.shape[-2:], crop, (v_max, h_max), strict=True))  # fmt: skip
            assert torch.equal(cropped.y, whole.y[:, top : top + crop[0], left : left + crop[1]])
            rows, cols = -(-crop[0] * v // v_max), -(-crop[1] * h // h_max)
            r0, c0 = top * v // v_max, left * h // h_max
            assert torch.equal(cropped.cr, whole.cr[:, r0 : r0 + rows, c0 : c0 + cols])
            assert cropped.size == (8 * crop[0], 8 * crop[1])
            expected = _pillow_turned(data, box=_kept(size, orientation, subsampling))
            window = expected[8 * top : 8 * (top + crop[0]), 8 * left : 8 * (left + crop[1]), 0]
            assert np.abs(_clamped(decode_planes(cropped)[0]) - window).max() <= 1.0
        assert all(len(s) == 1 for s in shapes.values()) and len(converted) == 1, (crop, shapes, converted)
        assert converted == {((64, *crop), *[(64, -(-crop[0] // 2), -(-crop[1] // 2))] * 2)}


@pytest.mark.parametrize("orientation", [2, 6, 7])
def test_every_plane_turns_cmyk_and_grayscale(orientation) -> None:
    for mode in ("CMYK", "L"):
        data = _jpeg((32, 40), orientation, mode=mode)
        turned = read_dct(data, exif_orientation=True)
        expected = _pillow_turned(data)
        if mode == "CMYK":  # Pillow reads Adobe CMYK as 255 - stored
            expected = 255.0 - expected
        assert len(turned.planes()) == expected.shape[-1]
        for index, plane in enumerate(decode_planes(turned)):
            assert np.abs(_clamped(plane) - expected[..., index]).max() <= 1.0


def test_crop_and_chroma_describe_the_turned_image() -> None:
    data = _jpeg((48, 96), 6, subsampling="4:2:2")
    whole = read_dct(data, exif_orientation=True)
    assert whole.size == (96, 48) and whole.subsampling == "4:4:0"
    # crop=(Hy, Wy): the centre window of the turned image (12 x 6 blocks), offsets rounded down to even
    # blocks: rows (12 - 8) // 2 = 2, columns (6 - 4) // 2 = 1 -> 0
    cropped = read_dct(data, exif_orientation=True, crop=(8, 4))
    assert cropped.y.shape == (64, 8, 4) and cropped.size == (64, 32)
    assert torch.equal(cropped.y, whole.y[:, 2:10, 0:4]) and torch.equal(cropped.cb, whole.cb[:, 1:5, 0:4])
    # chroma: the turned planes converted to the asked layout (4:4:0 -> 4:2:2 here)
    for layout in ("422", "420", "444"):
        got = read_dct(data, exif_orientation=True, chroma=layout)
        cb, cr = convert_chroma(whole, layout)
        assert torch.allclose(got.cb, cb, atol=1e-3) and torch.allclose(got.cr, cr, atol=1e-3)
        assert got.stored_subsampling == "4:4:0" and torch.equal(got.y, whole.y)
    # the file's own layout after turning is returned as it is
    plain = read_dct(_jpeg((48, 96), 6, subsampling="4:2:0"), exif_orientation=True, chroma="420")
    assert plain.stored_subsampling is None and plain.subsampling == "4:2:0"


def test_without_the_option_or_the_tag_nothing_turns() -> None:
    data = _jpeg((48, 64), 6)
    assert read_dct(data).size == (48, 64)
    untagged = _jpeg((48, 64), None)
    assert torch.equal(read_dct(untagged, exif_orientation=True).y, read_dct(untagged).y)
    big_endian = _jpeg((48, 64), None, exif=_exif(8, little_endian=False))
    assert read_dct(big_endian, exif_orientation=True).size == (64, 48)


HOSTILE_EXIF = {  # APP1 payloads: each is ignored (orientation 1) with the reason in warnings
    "no-tiff-header": (b"Exif\x00\x00" + b"XX" + bytes(10), "no TIFF header"),
    "short-tiff": (b"Exif\x00\x00II*\x00", "no TIFF header"),
    "bad-magic": (b"Exif\x00\x00II" + struct.pack("<HI", 43, 8) + bytes(8), "magic"),
    "ifd-outside": (b"Exif\x00\x00II" + struct.pack("<HI", 42, 60000) + bytes(8), "outside"),
    "ifd-before-header": (b"Exif\x00\x00II" + struct.pack("<HI", 42, 2) + bytes(8), "outside"),
    "ifd-count-too-big": (b"Exif\x00\x00II" + struct.pack("<HIH", 42, 8, 65535) + bytes(24), "runs past"),
    "wrong-type": (b"Exif\x00\x00II" + struct.pack("<HIHHHIHH", 42, 8, 1, 0x0112, 4, 1, 6, 0), "type 4"),
    "wrong-count": (b"Exif\x00\x00II" + struct.pack("<HIHHHIHH", 42, 8, 1, 0x0112, 3, 2, 6, 0), "count 2"),
    "value-0": (_exif(0), "value 0"),
    "value-9": (_exif(9), "value 9"),
}


@pytest.mark.parametrize("backend", DECODERS)
@pytest.mark.parametrize(("payload", "reason"), list(HOSTILE_EXIF.values()), ids=list(HOSTILE_EXIF))
def test_malformed_exif_is_ignored_with_the_reason(payload, reason, backend) -> None:
    data = _jpeg((32, 48), None, exif=payload)
    got = read_dct(data, exif_orientation=True, backend=backend, strict=True)
    assert got.size == (32, 48) and torch.equal(got.y, read_dct(data, backend=backend).y)
    assert len(got.warnings) == 1 and reason in got.warnings[0] and "EXIF orientation ignored" in got.warnings[0]


def test_mutated_exif_never_raises() -> None:
    """Random bytes over a valid TIFF structure: an orientation 1..8 and maybe a note, never an exception."""
    payload = _exif(6)
    rng = np.random.default_rng(11)
    for _ in range(2000):
        tiff = bytearray(payload[6:])
        for offset in rng.integers(0, len(tiff), rng.integers(1, 4)):
            tiff[offset] = int(rng.integers(0, 256))
        tiff = bytes(tiff[: rng.integers(0, len(tiff) + 1)])
        orientation, note = exif_orientation(tiff, (0, len(tiff)))
        assert 1 <= orientation <= 8 and (note is None or orientation == 1)


def test_exif_cut_by_the_end_of_the_file_and_twelve_bit_keep_their_errors() -> None:
    data = _jpeg((16, 16), 6)
    app1 = data.index(b"\xff\xe1")
    with pytest.raises(ValueError, match="truncated"):
        read_dct(data[: app1 + 20], exif_orientation=True)
    sof = data.index(b"\xff\xc0")
    with pytest.raises(JpegUnsupportedError, match="12-bit"):
        read_dct(data[: sof + 4] + b"\x0c" + data[sof + 5 :], exif_orientation=True)


def test_folder_dataset_passes_the_option(tmp_path) -> None:
    folder = tmp_path / "cls"
    folder.mkdir()
    data = _jpeg((48, 64), 8)
    (folder / "a.jpg").write_bytes(data)
    turned, _ = JpegFolderDataset(tmp_path, exif_orientation=True)[0]
    assert turned.size == (64, 48) and torch.equal(turned.y, read_dct(data, exif_orientation=True).y)
    assert JpegFolderDataset(tmp_path)[0][0].size == (48, 64)


def test_read_collate_turns_the_files_that_say_so(tmp_path) -> None:
    """DCTReadCollate(exif_orientation=True): files with a turning tag go through read_dct (the compiled batch
    reader does not turn), the others straight into the batch; the batch is the collate of read_dct's results.
    A raw dataset cannot pass the option through its bytes, so it refuses it instead of returning unturned files."""
    samples = [(_jpeg((48, 64), orientation, seed=i), i) for i, orientation in enumerate((None, 1, 3, 6, 8, 2))]
    for chroma in ("420", "444"):
        collate = DCTCollate(grid=(4, 4), chroma=chroma)
        batch = DCTReadCollate(collate, exif_orientation=True)(samples)
        options = {"crop": (4, 4), "chroma": chroma, "order": "zigzag"}
        turned = collate([(read_dct(data, exif_orientation=True, **options), label) for data, label in samples])
        assert torch.allclose(batch.y, turned.y) and torch.allclose(batch.cbcr, turned.cbcr)
        assert torch.equal(batch.labels, turned.labels)
        stored = DCTReadCollate(collate)(samples)  # without the option nothing turns, as read_dct
        plain = collate([(read_dct(data, **options), label) for data, label in samples])
        assert torch.allclose(stored.y, plain.y) and not torch.allclose(stored.y, batch.y)
    assert "exif_orientation=True" in repr(DCTReadCollate(DCTCollate(), exif_orientation=True))
    folder = tmp_path / "cls"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(samples[3][0])
    with pytest.raises(ValueError, match=r"exif_orientation=True has no effect with raw=True.*DCTReadCollate"):
        JpegFolderDataset(tmp_path, raw=True, exif_orientation=True)
    data, _ = JpegFolderDataset(tmp_path, raw=True)[0]
    assert data == samples[3][0]


def test_arguments() -> None:
    data = _jpeg((16, 16), 6)
    with pytest.raises(TypeError, match="exif_orientation must be a bool"):
        read_dct(data, exif_orientation=1)
    with pytest.raises(ValueError, match="orientation must be an EXIF value"):
        apply_orientation(read_dct(data), 9)
    assert apply_orientation(read_dct(data), 1).size == (16, 16)
