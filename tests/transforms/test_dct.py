"""DCT against scipy.fft (the independent reference), zigzag against the JPEG standard."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

from freqnets.transforms import (
    DCTDomain,
    block_dct2,
    block_idct2,
    blocks_to_channels,
    channels_to_blocks,
    dct,
    dct2,
    idct,
    idct2,
    zigzag_indices,
)
from tests.conftest import RTOL, assert_close_relative

# ITU-T T.81 (JPEG), figure A.6: the zigzag sequence of an 8x8 block, as row-major indices.
JPEG_ZIGZAG_8 = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]  # fmt: skip


@pytest.mark.parametrize("method", ["fft", "matmul", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 16, 33, 300, 600])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_dct_matches_scipy(n, dim, dtype, method, device):
    shape = [5, 4, 3]
    shape[dim] = n
    x = torch.randn(shape, dtype=dtype, device=device)
    expected = scipy.fft.dct(x.cpu().double().numpy(), type=2, norm="ortho", axis=dim)
    assert_close_relative(dct(x, dim=dim, method=method), torch.from_numpy(expected), RTOL[dtype])
    inverse = scipy.fft.idct(x.cpu().double().numpy(), type=2, norm="ortho", axis=dim)
    assert_close_relative(idct(x, dim=dim, method=method), torch.from_numpy(inverse), RTOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(8, 8), (5, 12), (17, 3)])
def test_dct2_matches_scipy_dctn(size, dtype):
    x = torch.randn(2, 3, *size, dtype=dtype)
    expected = scipy.fft.dctn(x.double().numpy(), type=2, norm="ortho", axes=(-2, -1))
    assert dct2(x).dtype == dtype
    assert_close_relative(dct2(x), torch.from_numpy(expected), RTOL[dtype])
    assert_close_relative(idct2(dct2(x)), x, RTOL[dtype])


@pytest.mark.parametrize("block", [4, 8, 16])
@pytest.mark.parametrize("size", [(16, 32), (13, 21)])
def test_block_dct2_matches_a_loop_over_blocks(block, size):
    x = torch.randn(2, *size, dtype=torch.float64)
    coeffs = block_dct2(x, block)
    nh, nw = -(-size[0] // block), -(-size[1] // block)
    assert coeffs.shape == (2, nh, nw, block, block)
    padded = np.pad(x.numpy(), ((0, 0), (0, nh * block - size[0]), (0, nw * block - size[1])), mode="edge")
    for i in range(nh):
        for j in range(nw):
            tile = padded[:, i * block : (i + 1) * block, j * block : (j + 1) * block]
            expected = scipy.fft.dctn(tile, norm="ortho", axes=(-2, -1))
            np.testing.assert_allclose(coeffs[:, i, j].numpy(), expected, rtol=0, atol=1e-12)
    assert_close_relative(block_idct2(coeffs, size), x, 1e-12)


def test_zigzag_matches_the_jpeg_standard():
    assert zigzag_indices(8).tolist() == JPEG_ZIGZAG_8


@pytest.mark.parametrize("n", [1, 2, 4, 5, 16])
def test_zigzag_is_a_permutation_walking_antidiagonals(n):
    order = zigzag_indices(n)
    assert sorted(order.tolist()) == list(range(n * n))
    rows, cols = order // n, order % n
    diagonal = rows + cols
    assert torch.all(diagonal[1:] >= diagonal[:-1])
    # Consecutive entries are neighbours (8-connected) in the block.
    assert torch.all((rows[1:] - rows[:-1]).abs() <= 1) and torch.all((cols[1:] - cols[:-1]).abs() <= 1)


@pytest.mark.parametrize("order", ["natural", "zigzag"])
def test_channel_layout_round_trips(order):
    blocks = torch.randn(2, 3, 4, 5, 8, 8)
    channels = blocks_to_channels(blocks, order)
    assert channels.shape == (2, 3, 64, 4, 5)
    if order == "natural":
        assert torch.equal(channels[:, :, 8 * 2 + 3], blocks[..., 2, 3])
    else:
        assert torch.equal(channels[:, :, 2], blocks[..., 1, 0])  # third zigzag entry is (1, 0)
    assert torch.equal(channels_to_blocks(channels, order), blocks)


@pytest.mark.parametrize("method", ["fft", "matmul"])
def test_gradcheck_dct_functions(method):
    x = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dct(t, dim=1, method=method), (x,))
    assert torch.autograd.gradcheck(lambda t: idct(t, dim=-1, method=method), (x,))
    assert torch.autograd.gradcheck(dct2, (x,))
    assert torch.autograd.gradcheck(idct2, (x,))
    y = torch.randn(2, 10, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: block_dct2(t, 4), (y,))


def test_blockwise_domain_layout_and_mask():
    domain = DCTDomain(block_size=8)
    x = torch.rand(3, 32, 48)
    coeffs = domain.forward(x)
    assert coeffs.shape == (3, 4, 6, 8, 8)
    mask = domain.kept_mask((32, 48), 0.75)
    assert mask.shape == (8, 8) and mask.sum() == 16
    assert mask[:4, :4].all()  # the low-frequency corner
    compressed = domain.compress(x, 0.75)
    assert torch.all(domain.forward(compressed)[..., ~mask].abs() < 1e-5)


def test_dct_rejects_bad_arguments():
    with pytest.raises(TypeError, match="floating dtype"):
        dct(torch.arange(8))
    with pytest.raises(ValueError, match="method must be one of auto, fft, matmul"):
        dct(torch.randn(8), method="fast")
    with pytest.raises(ValueError, match="block_size"):
        DCTDomain(block_size=0)
    with pytest.raises(ValueError, match="order"):
        blocks_to_channels(torch.zeros(1, 1, 8, 8), order="diagonal")
