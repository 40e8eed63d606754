"""JFIF colour conversion against Pillow's (libjpeg's) integer implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.transforms import rgb_to_ycbcr, ycbcr_to_rgb


def test_rgb_to_ycbcr_matches_pillow_within_rounding():
    rgb = torch.randint(0, 256, (3, 16, 16), generator=torch.Generator().manual_seed(1))
    pil = Image.fromarray(rgb.permute(1, 2, 0).numpy().astype(np.uint8), "RGB").convert("YCbCr")
    expected = torch.from_numpy(np.asarray(pil).astype(np.float64)).permute(2, 0, 1)
    ours = rgb_to_ycbcr(rgb.double(), max_value=255)
    assert (ours - expected).abs().max() <= 1.0  # Pillow rounds to integers


def test_known_colours():
    white = rgb_to_ycbcr(torch.ones(3, 1, 1, dtype=torch.float64))
    assert torch.allclose(white.flatten(), torch.tensor([1.0, 128 / 255, 128 / 255], dtype=torch.float64))
    red = rgb_to_ycbcr(torch.tensor([255.0, 0, 0], dtype=torch.float64).view(3, 1, 1), max_value=255)
    assert torch.allclose(red.flatten(), torch.tensor([76.245, 84.972, 255.5], dtype=torch.float64), atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip(dtype):
    rgb = torch.rand(2, 3, 8, 8, dtype=dtype)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-6 if dtype == torch.float32 else 1e-12)


def test_needs_three_channels():
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_ycbcr(torch.rand(4, 8, 8))


def test_gradcheck():
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rgb_to_ycbcr, (x,))
    assert torch.autograd.gradcheck(ycbcr_to_rgb, (x,))
