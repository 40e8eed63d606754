"""DCT-domain augmentations against the same operations on decoded pixels, re-encoded with the same tables."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import Compose as TorchvisionCompose

from freqnets.jpeg import augment as A
from freqnets.jpeg import decode_dct, decode_planes, encode_dct
from freqnets.jpeg.encode import encode_planes


def image(h: int, w: int, seed: int = 0, low: float = 0.0, high: float = 1.0, noise: float = 0.2) -> torch.Tensor:
    """A random RGB image in [low, high]: smooth structure plus a fraction ``noise`` of pixel noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 12 + 2, w // 12 + 2, generator=g)
    smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
    mixed = (1 - noise) * smooth + noise * torch.rand(3, h, w, generator=g)
    return (low + (high - low) * mixed).clamp(0, 1)


def coeffs(subsampling: str, h: int = 32, w: int = 48, seed: int = 0):
    img = image(h, w, seed)
    if subsampling == "gray":
        return encode_dct(img[:1], quality=75)
    return encode_dct(img, quality=75, subsampling=subsampling)


def reencode(out, pixel_planes, quantize: bool):
    return encode_planes(
        pixel_planes, out.quant_tables, size=out.size, subsampling=out.subsampling,
        sampling_factors=out.sampling_factors, quantize_coefficients=quantize,
    )  # fmt: skip


def assert_same_coeffs(a, b, atol=2e-3):
    assert a.size == b.size and a.sampling_factors == b.sampling_factors
    for pa, pb in zip(a.to_order("natural").planes(), b.to_order("natural").planes(), strict=True):
        assert pa.shape == pb.shape
        torch.testing.assert_close(pa.double(), pb.double(), rtol=0, atol=atol)


PIXEL_OPS = {
    "hflip": (A.hflip, lambda p: p.flip(-1)),
    "vflip": (A.vflip, lambda p: p.flip(-2)),
    "transpose": (A.transpose, lambda p: p.transpose(-1, -2)),
    "rot90": (lambda c: A.rot90(c, 1), lambda p: torch.rot90(p, 1, (-2, -1))),
    "rot180": (lambda c: A.rot90(c, 2), lambda p: torch.rot90(p, 2, (-2, -1))),
    "rot270": (lambda c: A.rot90(c, 3), lambda p: torch.rot90(p, 3, (-2, -1))),
}


@pytest.mark.parametrize("name", sorted(PIXEL_OPS))
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4", "gray"])
@pytest.mark.parametrize("order", ["natural", "zigzag"])
def test_geometric_transforms_are_exact(name, subsampling, order):
    dct_op, pixel_op = PIXEL_OPS[name]
    c = coeffs(subsampling).to_order(order)
    out = dct_op(c)
    assert out.order == order
    pixels = [pixel_op(p) for p in decode_planes(c, crop=False)]
    # re-encoding the transformed pixels with the returned tables gives the same quantised coefficients
    assert_same_coeffs(out, reencode(out, pixels, quantize=True))
    assert_same_coeffs(out, reencode(out, pixels, quantize=False))


def test_rotation_matches_torch_rot90_on_rgb_and_unaligned_sizes():
    c = coeffs("4:2:0", 40, 56)  # 40x56 is not a multiple of the 16-px MCU: cut to 32x48 first
    for k in range(4):
        out = A.rot90(c, k)
        expected = torch.rot90(decode_dct(c)[:, :32, :48], k, (-2, -1))
        torch.testing.assert_close(decode_dct(out), expected, rtol=0, atol=1e-5)
    c = coeffs("4:2:0", 30, 30)  # 30 px: the 2x2-MCU grid (32 px) is kept, edge padding included
    assert A.hflip(c).size == (32, 32)
    with pytest.raises(ValueError, match="MCU"):
        A.hflip(coeffs("4:2:0", 8, 8))


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
def test_crop_and_window_are_exact(subsampling):
    c = coeffs(subsampling, 48, 64)
    for top, left, h, w in [(16, 16, 32, 32), (-16, 32, 32, 48), (32, -16, 32, 96)]:
        out = A.crop(c, top, left, h, w)
        padded = [F.pad(p - 128, (64, 64, 64, 64)) + 128 for p in decode_planes(c, crop=False)]
        pixels = []
        for p, plane in zip(padded, c.planes(), strict=True):
            fy, fx = 48 // (plane.shape[1] * 8), 64 // (plane.shape[2] * 8)
            t, l_ = top // fy + 64, left // fx + 64
            pixels.append(p[t : t + h // fy, l_ : l_ + w // fx])
        assert_same_coeffs(out, reencode(out, pixels, quantize=True))
    with pytest.raises(ValueError, match="MCU"):
        A.crop(c, 8, 0, 16, 16) if subsampling == "4:2:0" else A.crop(c, 4, 0, 8, 8)


def test_random_crop_translate_are_windows_and_seeded():
    c = coeffs("4:2:0", 64, 64)
    for transform in (A.RandomCrop(32, padding=16), A.RandomTranslate(16)):
        transform.generator = torch.Generator().manual_seed(1)
        outs = [transform(c) for _ in range(12)]
        transform.generator = torch.Generator().manual_seed(1)
        again = [transform(c) for _ in range(12)]
        offsets = set()
        for out, same in zip(outs, again, strict=True):
            assert torch.equal(out.y, same.y)
            match = [
                (t, l_) for t in range(-16, 64, 16) for l_ in range(-16, 64, 16)
                if torch.equal(A.window(c, t, l_, *out.size).y, out.y)
            ]  # fmt: skip
            assert match, "every random crop is a window of the image on the MCU grid"
            offsets.add(match[0])
        assert len(offsets) > 2


def test_center_crop():
    c = coeffs("4:2:0", 64, 96)
    out = A.CenterCrop((32, 32))(c)
    assert torch.equal(out.y, c.y[:, 2:6, 4:8]) and torch.equal(out.cb, c.cb[:, 1:3, 2:4])


def test_brightness_is_exact():
    c = coeffs("4:2:0")
    out = A.adjust_brightness(c, 12.5)
    pixels = decode_planes(c, crop=False)
    pixels[0] = pixels[0] + 12.5
    assert_same_coeffs(out, reencode(out, pixels, quantize=False))


def test_contrast_and_chroma_scale_match_torchvision():
    c = encode_dct(image(32, 32, 3, low=0.35, high=0.65), quality=90, subsampling="4:4:4")  # no clamping
    rgb = decode_dct(c)
    torch.testing.assert_close(decode_dct(A.adjust_contrast(c, 1.4)), TF.adjust_contrast(rgb, 1.4), rtol=0, atol=2e-3)
    torch.testing.assert_close(decode_dct(A.adjust_contrast(c, 0.5)), TF.adjust_contrast(rgb, 0.5), rtol=0, atol=2e-3)
    torch.testing.assert_close(decode_dct(A.scale_chroma(c, 1.5)), TF.adjust_saturation(rgb, 1.5), rtol=0, atol=2e-3)
    torch.testing.assert_close(decode_dct(A.scale_chroma(c, 0.0)), TF.adjust_saturation(rgb, 0.0), rtol=0, atol=2e-3)


def test_gaussian_noise_is_white_pixel_noise_of_that_std():
    flat = encode_dct(torch.full((3, 256, 256), 0.5), subsampling="4:4:4")
    noisy = A.add_gaussian_noise(flat, 5.0, torch.Generator().manual_seed(0))
    noise = decode_planes(noisy)[0] - decode_planes(flat)[0]
    assert abs(noise.std().item() - 5.0) < 0.1 and abs(noise.mean().item()) < 0.1
    # white: neighbouring pixels (also across block borders) uncorrelated, as i.i.d. pixel noise would be
    for a, b in ((noise[:, :-1], noise[:, 1:]), (noise[:-1], noise[1:])):
        assert abs(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()) < 0.02
    again = A.GaussianNoise(5.0, torch.Generator().manual_seed(0))(flat)
    assert torch.equal(again.y, noisy.y)


def planes_psnr(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """PSNR (dB, 8-bit peak) over all samples of the Y, Cb, Cr planes."""
    err = torch.cat([(x.double() - y.double()).flatten() for x, y in zip(a, b, strict=True)])
    return 10 * torch.log10(255.0**2 / err.pow(2).mean()).item()


def pixel_resized_crop(c, top, left, height, width, size):
    """Reference: decode each plane, crop, resize it in pixels (bicubic, antialiased) at its own resolution."""
    out = []
    for plane, p in zip(c.planes(), decode_planes(c, crop=False), strict=True):
        fy, fx = c.y.shape[1] * 8 // (plane.shape[1] * 8), c.y.shape[2] * 8 // (plane.shape[2] * 8)
        window = p[top // fy : (top + height) // fy, left // fx : (left + width) // fx]
        out.append(F.interpolate(window[None, None], size=(size[0] // fy, size[1] // fx), mode="bicubic",
                                 antialias=True, align_corners=False)[0, 0])  # fmt: skip
    return out


@pytest.mark.parametrize(("crop", "size", "min_psnr"), [(64, 32, 38.0), (48, 32, 28.0), (32, 64, 45.0)])
def test_resized_crop_close_to_pixel_resize(crop, size, min_psnr):
    c = encode_dct(image(96, 96, 5, noise=0.0), quality=95, subsampling="4:2:0")
    out = A.resized_crop(c, 16, 16, crop, crop, (size, size))
    assert (
        out.size == (size, size)
        and out.y.shape == (64, size // 8, size // 8)
        and out.cb.shape == (64, size // 16, size // 16)
    )
    reference = pixel_resized_crop(c, 16, 16, crop, crop, (size, size))
    assert planes_psnr(decode_planes(out), reference) > min_psnr  # measured on photos: docs/jpeg.md


def test_resized_crop_without_scaling_is_a_crop():
    c = coeffs("4:2:0", 64, 64)
    assert_same_coeffs(A.resized_crop(c, 16, 0, 32, 48, (32, 48)), A.crop(c, 16, 0, 32, 48), atol=1e-3)
    rrc = A.RandomResizedCrop(32, generator=torch.Generator().manual_seed(0))
    assert all(rrc(c).y.shape == (64, 4, 4) for _ in range(5))


def test_compose_with_torchvision_and_seeded_randomness():
    def pipeline(seed):
        g = torch.Generator().manual_seed(seed)
        return TorchvisionCompose([
            A.RandomHorizontalFlip(generator=g), A.RandomRotate90(generator=g), A.RandomBrightness(10, g),
            A.RandomContrast(generator=g), A.RandomChromaScale(generator=g), A.GaussianNoise(1.0, g),
        ])  # fmt: skip

    c = coeffs("4:2:0", 48, 48)
    first, second, other = pipeline(3)(c), pipeline(3)(c), pipeline(4)(c)
    assert torch.equal(first.y, second.y) and torch.equal(first.cb, second.cb)
    assert not torch.equal(first.y, other.y)
    assert A.Compose([A.hflip, A.hflip])(c).y.equal(c.y)


def test_bad_arguments_raise():
    c = coeffs("4:2:0")
    with pytest.raises(ValueError, match="p must"):
        A.RandomHorizontalFlip(p=1.5)
    with pytest.raises(ValueError, match="multiple of the MCU"):
        A.CenterCrop(24)(c)
    with pytest.raises(ValueError, match="scale"):
        A.RandomResizedCrop(32, scale=(0.9, 0.1))
    with pytest.raises(ValueError, match="padding"):
        A.RandomCrop(16, padding=-1)
    with pytest.raises(ValueError, match="padding 8 must be a multiple of the MCU"):
        A.RandomCrop(16, padding=8)(c)
    with pytest.raises(ValueError, match="max_shift"):
        A.RandomTranslate(8)(c)
    with pytest.raises(ValueError, match="std"):
        A.GaussianNoise(-1.0)
    with pytest.raises(ValueError, match="height"):
        A.window(c, 0, 0, 0, 16)


@pytest.mark.parametrize(("crop", "size"), [(48, 32), (32, 48), (64, 16)])
def test_resized_crop_keeps_flat_images_flat(crop, size):
    flat = encode_dct(torch.full((3, 64, 64), 0.7), quality=100, subsampling="4:2:0")
    out = A.resized_crop(flat, 0, 0, crop, crop, (size, size))
    for got, ref in zip(decode_planes(out), decode_planes(flat), strict=True):
        torch.testing.assert_close(got, torch.full_like(got, ref[0, 0].item()), rtol=0, atol=1e-3)
