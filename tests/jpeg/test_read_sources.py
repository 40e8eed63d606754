"""read_dct's in-memory sources: bytes-likes, 1-D uint8 NumPy arrays and torch tensors (issue 14)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.jpeg import DCTCollate, DCTReadCollate, available_backends, read_dct

DECODERS = [b for b in available_backends() if b != "jpeg2dct"]


def _jpeg(size=(40, 24), subsampling=2) -> bytes:
    rng = np.random.default_rng(5)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, "JPEG", subsampling=subsampling)
    return buffer.getvalue()


DATA = _jpeg()


def _same(a, b) -> None:
    assert (a.size, a.subsampling, a.backend) == (b.size, b.subsampling, b.backend)
    for x, y in zip(a.planes(), b.planes(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    torch.testing.assert_close(a.quant_tables, b.quant_tables, rtol=0, atol=0)


def _strided_tensor(data: bytes) -> torch.Tensor:
    """A non-contiguous 1-D uint8 view holding ``data`` (every other element of a bigger tensor)."""
    wide = torch.zeros(2 * len(data), dtype=torch.uint8)
    wide[::2] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    view = wide[::2]
    assert not view.is_contiguous()
    return view


@pytest.mark.parametrize("backend", DECODERS)
def test_arrays_and_tensors_read_as_their_bytes(backend) -> None:
    expected = read_dct(DATA, backend=backend)
    array = np.frombuffer(DATA, dtype=np.uint8)
    sources = [
        array,
        array.copy()[::1],
        np.stack([array, array], 1)[:, 0],  # a strided NumPy view
        torch.frombuffer(bytearray(DATA), dtype=torch.uint8),
        _strided_tensor(DATA),
        bytearray(DATA),
        memoryview(DATA),
    ]
    for source in sources:
        _same(read_dct(source, backend=backend), expected)
    cut = torch.frombuffer(bytearray(DATA[: len(DATA) // 2]), dtype=torch.uint8)
    assert read_dct(cut, strict=False, backend=backend).warnings  # the same checks as for bytes


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchvision's note on its own image decoders
def test_torchvision_read_file_output(tmp_path) -> None:
    io_module = pytest.importorskip("torchvision.io")
    path = tmp_path / "a.jpg"
    path.write_bytes(DATA)
    _same(read_dct(io_module.read_file(str(path))), read_dct(path))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_cuda_tensor_is_copied_to_the_host() -> None:
    tensor = torch.frombuffer(bytearray(DATA), dtype=torch.uint8).cuda()
    _same(read_dct(tensor), read_dct(DATA))


@pytest.mark.parametrize(
    ("source", "error", "phrase"),
    [
        (np.frombuffer(DATA, dtype=np.uint8).astype(np.int16), TypeError, "uint8"),
        (torch.frombuffer(bytearray(DATA), dtype=torch.uint8).float(), TypeError, "uint8"),
        (torch.frombuffer(bytearray(DATA), dtype=torch.int8), TypeError, "uint8"),
        (np.frombuffer(DATA[: len(DATA) // 2 * 2], dtype=np.uint8).reshape(2, -1), ValueError, "1-D"),
        (torch.frombuffer(bytearray(DATA), dtype=torch.uint8)[None], ValueError, "1-D"),
        (torch.tensor(7, dtype=torch.uint8), ValueError, "1-D"),
        (list(DATA[:10]), TypeError, "source"),
    ],
    ids=["int16-array", "float-tensor", "int8-tensor", "2d-array", "2d-tensor", "0d-tensor", "list"],
)
def test_other_dtypes_and_shapes_are_typed_errors(source, error, phrase) -> None:
    with pytest.raises(error, match=phrase):
        read_dct(source)


def test_read_collate_takes_tensors() -> None:
    files = [_jpeg(seed_size, 2) for seed_size in ((32, 32), (32, 32))]
    collate = DCTReadCollate(DCTCollate())
    from_bytes = collate([(f, i) for i, f in enumerate(files)])
    tensors = [(torch.frombuffer(bytearray(f), dtype=torch.uint8), i) for i, f in enumerate(files)]
    for got, want in zip(collate(tensors), from_bytes, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="1-D"):
        collate([(torch.zeros(2, 2, dtype=torch.uint8), 0)])
