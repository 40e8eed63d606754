"""Data augmentation on JPEG DCT coefficients, without decoding to pixels.

Every transform is a callable ``JpegCoefficients -> JpegCoefficients``, so they compose with
:class:`Compose` or ``torchvision.transforms.Compose``. Random transforms draw from
``generator`` when one is given, else from torch's global generator (which a ``DataLoader``
seeds differently in each worker; seed it with ``torch.manual_seed`` or the loader's
``generator`` for reproducible runs).

Exact transforms (equal to the pixel operation on the decoded image followed by the forward DCT,
to float rounding; coefficients stay on the quantisation lattice of the returned tables):

* flips (:func:`hflip`, :func:`vflip`): block order reversed, odd frequencies negated;
* :func:`transpose` and :func:`rot90`: blocks and frequencies transposed; the quantisation tables,
  sampling factors and size are transposed with them (like ``jpegtran``);
* :func:`crop` and translations on the block grid, in whole MCUs (8 px, or 16 px when chroma is
  subsampled); uncovered blocks are zero (mid-grey);
* brightness (a DC shift), contrast and chroma scaling (``torchvision``'s contrast and saturation
  blends, in YCbCr, before clamping to [0, 255]), Gaussian noise (white noise in pixels is white
  noise of the same standard deviation in the orthonormal DCT).

Geometric transforms act on whole MCUs of the block grid: a size that is not a multiple of the
MCU is first cut, or extended into the encoder's edge padding, to ``floor(ceil(W / 8) * 8 / MCU)``
MCUs, so the planes stay aligned; sizes that are multiples of the MCU are unchanged.

Approximate: :class:`RandomResizedCrop` resizes by changing the block size in the DCT domain
(:func:`freqnets.jpeg.resample.resize_map`: truncation to shrink, zero-padding to enlarge); its
measured difference from a pixel-domain resize is in ``docs/jpeg.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from .coefficients import JpegCoefficients
from .resample import apply_axis_maps, resize_map

Transform = Callable[[JpegCoefficients], JpegCoefficients]

_TRANSPOSED_SUBSAMPLING = {"4:2:2": "4:4:0", "4:4:0": "4:2:2", "4:1:1": "other"}


# ----------------------------------------------------------------------------- helpers


def _block_pixels(c: JpegCoefficients) -> list[tuple[int, int]]:
    """Luma pixels ``(rows, cols)`` covered by one block of each plane."""
    h_max = max(f[0] for f in c.sampling_factors)
    v_max = max(f[1] for f in c.sampling_factors)
    b = c.block_size
    factors = c.sampling_factors[: len(c.planes())]
    return [(b * v_max // v, b * h_max // h) for h, v in factors]


def mcu_size(c: JpegCoefficients) -> tuple[int, int]:
    """Pixel size ``(rows, cols)`` of the minimum coded unit: the step of exact crops and translations."""
    steps = _block_pixels(c)
    return max(s[0] for s in steps), max(s[1] for s in steps)


def _frequencies(c: JpegCoefficients) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical and horizontal frequency ``(v, u)`` of each channel, in ``c``'s order."""
    from ..transforms import zigzag_indices

    b = c.block_size
    natural = torch.arange(b * b) if c.order == "natural" else zigzag_indices(b)
    return natural // b, natural % b


def _map_planes(c: JpegCoefficients, fn: Callable[[torch.Tensor], torch.Tensor], **changes) -> JpegCoefficients:
    return c.with_planes([fn(p) for p in c.planes()], **changes)


def window(c: JpegCoefficients, top: int, left: int, height: int, width: int) -> JpegCoefficients:
    """The ``height x width`` pixels at ``(top, left)``; blocks outside the grid are zero (mid-grey).

    All four must be multiples of the MCU (:func:`mcu_size`); ``top``/``left`` may be negative.
    """
    my, mx = mcu_size(c)
    for name, value, step in (("top", top, my), ("left", left, mx), ("height", height, my), ("width", width, mx)):
        if isinstance(value, bool) or not isinstance(value, int) or value % step:
            raise ValueError(f"{name} must be an integer multiple of the MCU {my}x{mx} px, got {value!r}")
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    planes = []
    for plane, (sy, sx) in zip(c.planes(), _block_pixels(c), strict=True):
        by, bx, ty, tx = top // sy, left // sx, height // sy, width // sx
        out = plane.new_zeros(plane.shape[0], ty, tx)
        y0, y1 = max(by, 0), min(by + ty, plane.shape[1])
        x0, x1 = max(bx, 0), min(bx + tx, plane.shape[2])
        if y1 > y0 and x1 > x0:
            out[:, y0 - by : y1 - by, x0 - bx : x1 - bx] = plane[:, y0:y1, x0:x1]
        planes.append(out)
    return c.with_planes(planes, size=(height, width))


def align_to_mcu(c: JpegCoefficients) -> JpegCoefficients:
    """Cut or extend the image to whole MCUs of its block grid (see the module docstring)."""
    my, mx = mcu_size(c)
    luma_rows, luma_cols = _block_pixels(c)[0]
    grid_h, grid_w = c.y.shape[-2] * luma_rows, c.y.shape[-1] * luma_cols
    height, width = grid_h // my * my, grid_w // mx * mx
    if height == 0 or width == 0:
        raise ValueError(f"image {c.size} is smaller than one MCU ({my}x{mx} px): no exact geometric transform")
    if (height, width) == tuple(c.size):
        return c
    return window(c, 0, 0, height, width)


# ----------------------------------------------------------------------------- exact functional transforms


def hflip(c: JpegCoefficients) -> JpegCoefficients:
    """Mirror left-right: block columns reversed, odd horizontal frequencies negated."""
    c = align_to_mcu(c)
    _, u = _frequencies(c)
    sign = (1 - 2 * (u % 2)).to(c.y.dtype).view(-1, 1, 1)
    return _map_planes(c, lambda p: p.flip(-1) * sign)


def vflip(c: JpegCoefficients) -> JpegCoefficients:
    """Mirror top-bottom: block rows reversed, odd vertical frequencies negated."""
    c = align_to_mcu(c)
    v, _ = _frequencies(c)
    sign = (1 - 2 * (v % 2)).to(c.y.dtype).view(-1, 1, 1)
    return _map_planes(c, lambda p: p.flip(-2) * sign)


def transpose(c: JpegCoefficients) -> JpegCoefficients:
    """Swap rows and columns; quantisation tables, sampling factors and size are transposed too."""
    c = align_to_mcu(c)
    v, u = _frequencies(c)
    b = c.block_size
    channel_of = {int(vi) * b + int(ui): k for k, (vi, ui) in enumerate(zip(v, u, strict=True))}
    swap = torch.tensor([channel_of[int(ui) * b + int(vi)] for vi, ui in zip(v, u, strict=True)])
    tables = c.quant_tables.view(-1, b, b).transpose(-1, -2).reshape(c.quant_tables.shape)
    return _map_planes(
        c,
        lambda p: p.index_select(0, swap).transpose(-1, -2).contiguous(),
        quant_tables=tables,
        size=(c.size[1], c.size[0]),
        sampling_factors=tuple((v_, h_) for h_, v_ in c.sampling_factors),
        subsampling=_TRANSPOSED_SUBSAMPLING.get(c.subsampling, c.subsampling),
    )


def rot90(c: JpegCoefficients, k: int = 1) -> JpegCoefficients:
    """Rotate by ``k`` quarter turns counter-clockwise, as ``torch.rot90(image, k, dims=(-2, -1))``."""
    k = int(k) % 4
    if k == 1:
        return vflip(transpose(c))
    if k == 2:
        return vflip(hflip(c))
    if k == 3:
        return hflip(transpose(c))
    return align_to_mcu(c)


def crop(c: JpegCoefficients, top: int, left: int, height: int, width: int) -> JpegCoefficients:
    """Crop on the block grid (all arguments multiples of the MCU; parts outside the image are zero)."""
    return window(c, top, left, height, width)


def adjust_brightness(c: JpegCoefficients, delta: float) -> JpegCoefficients:
    """Add ``delta`` (8-bit levels) to every luma pixel: the luma DC grows by ``block_size * delta``."""
    y = c.y.clone()
    y[0] += c.block_size * float(delta)  # channel 0 is DC in natural and zigzag order
    return replace(c, y=y)


def adjust_contrast(c: JpegCoefficients, factor: float) -> JpegCoefficients:
    """``torchvision``'s contrast blend ``factor * img + (1 - factor) * mean(grey)``, in YCbCr, unclamped.

    Luma becomes ``m + factor (Y - m)`` with ``m`` the mean luma of the block grid, chroma
    ``128 + factor (C - 128)``: every coefficient scales by ``factor`` and the luma DC moves by
    ``b (1 - factor)(m - 128)``.
    """
    factor = float(factor)
    b = c.block_size
    mean_shifted = c.y[0].mean() / b  # m - 128
    scaled = _map_planes(c, lambda p: p * factor)
    scaled.y[0] += b * (1 - factor) * mean_shifted
    return scaled


def scale_chroma(c: JpegCoefficients, factor: float) -> JpegCoefficients:
    """Scale Cb and Cr around neutral grey: ``torchvision``'s saturation blend (luma unchanged), unclamped."""
    if c.cb is None:
        return c
    return replace(c, cb=c.cb * float(factor), cr=c.cr * float(factor))


def add_gaussian_noise(c: JpegCoefficients, std: float, generator: torch.Generator | None = None) -> JpegCoefficients:
    """Add white Gaussian noise of ``std`` (8-bit levels) to every coefficient of every plane.

    The orthonormal DCT maps white noise to white noise of the same variance, so this is Gaussian
    pixel noise of standard deviation ``std`` on each plane.
    """

    def noisy(p: torch.Tensor) -> torch.Tensor:
        return p + float(std) * torch.randn(p.shape, generator=generator, dtype=p.dtype)

    return _map_planes(c, noisy)


def resized_crop(c: JpegCoefficients, top: int, left: int, height: int, width: int, size: tuple[int, int]):
    """Crop on the MCU grid, then resize to ``size`` pixels by changing block sizes in the DCT domain (approximate)."""
    c = window(c, top, left, height, width)
    out_h, out_w = _check_size_mcu(size, c)
    natural = c.to_order("natural")
    planes = []
    for plane, (sy, sx) in zip(natural.planes(), _block_pixels(c), strict=True):
        rows = resize_map(height // sy, out_h // sy, c.block_size)
        cols = resize_map(width // sx, out_w // sx, c.block_size)
        planes.append(apply_axis_maps(plane.double(), rows, cols).to(plane.dtype))
    cb, cr = (planes[1], planes[2]) if len(planes) == 3 else (None, None)
    return replace(natural, y=planes[0], cb=cb, cr=cr, size=(out_h, out_w)).to_order(c.order)


def _check_size_mcu(size, c: JpegCoefficients) -> tuple[int, int]:
    my, mx = mcu_size(c)
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in size):
        raise ValueError(f"size must be an int or (height, width) of positive ints, got {size!r}")
    if size[0] % my or size[1] % mx:
        raise ValueError(f"size {tuple(size)} must be a multiple of the MCU {my}x{mx} px")
    return int(size[0]), int(size[1])


# ----------------------------------------------------------------------------- composable transforms


class Compose:
    """Apply transforms in order (like ``torchvision.transforms.Compose``)."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        for transform in self.transforms:
            c = transform(c)
        return c

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class _Random:
    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=self.generator).item()

    def _randint(self, low: int, high: int) -> int:
        """Uniform integer in ``[low, high]``."""
        return int(torch.randint(low, high + 1, (), generator=self.generator).item())

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "generator")
        return f"{type(self).__name__}({fields})"


def _check_probability(p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    return float(p)


def _check_range(value, name: str, low_bound: float) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not low_bound <= low <= high:
        raise ValueError(f"{name} must be a range (low, high) with {low_bound} <= low <= high, got {value!r}")
    return low, high


class RandomHorizontalFlip(_Random):
    """:func:`hflip` with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        self.p = _check_probability(p)

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        return hflip(c) if self._uniform(0, 1) < self.p else c


class RandomVerticalFlip(RandomHorizontalFlip):
    """:func:`vflip` with probability ``p``."""

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        return vflip(c) if self._uniform(0, 1) < self.p else c


class RandomTranspose(RandomHorizontalFlip):
    """:func:`transpose` with probability ``p``."""

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        return transpose(c) if self._uniform(0, 1) < self.p else c


class RandomRotate90(_Random):
    """:func:`rot90` by a uniformly drawn number of quarter turns from ``ks``."""

    def __init__(self, ks: Sequence[int] = (0, 1, 2, 3), generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        if not ks:
            raise ValueError("ks must hold at least one number of quarter turns")
        self.ks = tuple(int(k) for k in ks)

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        return rot90(c, self.ks[self._randint(0, len(self.ks) - 1)])


class CenterCrop:
    """Centre crop to ``size`` pixels on the MCU grid (offsets rounded down to whole MCUs; zero-padded if larger)."""

    def __init__(self, size: int | tuple[int, int]) -> None:
        self.size = size

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        height, width = _check_size_mcu(self.size, c)
        my, mx = mcu_size(c)
        top = (c.size[0] - height) // 2 // my * my
        left = (c.size[1] - width) // 2 // mx * mx
        return window(c, top, left, height, width)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size!r})"


class RandomCrop(_Random):
    """Crop ``size`` pixels at a random MCU-aligned position of the image zero-padded by ``padding`` px.

    ``size`` and ``padding`` must be multiples of the MCU (8 px, 16 px for 4:2:0); checked per image.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0, generator: torch.Generator | None = None):
        super().__init__(generator)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative int, got {padding!r}")
        self.size, self.padding = size, padding

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        height, width = _check_size_mcu(self.size, c)
        my, mx = mcu_size(c)
        if self.padding % my or self.padding % mx:
            raise ValueError(f"padding {self.padding} must be a multiple of the MCU {my}x{mx} px")
        pad_y, pad_x = self.padding // my, self.padding // mx  # in MCUs
        span_y = max((c.size[0] - height) // my, 0) + 2 * pad_y
        span_x = max((c.size[1] - width) // mx, 0) + 2 * pad_x
        top = (self._randint(0, span_y) - pad_y) * my
        left = (self._randint(0, span_x) - pad_x) * mx
        return window(c, top, left, height, width)


class RandomTranslate(_Random):
    """Shift the image by up to ``max_shift`` px (a multiple of the MCU) each way in whole MCUs, keeping its size."""

    def __init__(self, max_shift: int | tuple[int, int], generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        shift = (max_shift, max_shift) if isinstance(max_shift, int) else tuple(max_shift)
        if len(shift) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shift):
            raise ValueError(f"max_shift must be a non-negative int or pair of ints, got {max_shift!r}")
        self.max_shift = shift

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        c = align_to_mcu(c)
        my, mx = mcu_size(c)
        if self.max_shift[0] % my or self.max_shift[1] % mx:
            raise ValueError(f"max_shift {self.max_shift} must be a multiple of the MCU {my}x{mx} px")
        dy = self._randint(-(self.max_shift[0] // my), self.max_shift[0] // my) * my
        dx = self._randint(-(self.max_shift[1] // mx), self.max_shift[1] // mx) * mx
        return window(c, -dy, -dx, c.size[0], c.size[1])


class RandomResizedCrop(_Random):
    """``torchvision``'s RandomResizedCrop on the MCU grid, resized in the DCT domain (approximate).

    The crop's area fraction and aspect ratio are drawn as torchvision does (10 tries, then the
    whole image), snapped to whole MCUs (at least one), then resized to ``size`` by
    :func:`resized_crop`.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        self.size = size
        self.scale = _check_range(scale, "scale", 0.0)
        self.ratio = _check_range(ratio, "ratio", 1e-6)

    def _params(self, c: JpegCoefficients) -> tuple[int, int, int, int]:
        my, mx = mcu_size(c)
        img_h, img_w = c.size[0] // my * my, c.size[1] // mx * mx
        area = img_h * img_w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * self._uniform(*self.scale)
            aspect = math.exp(self._uniform(*log_ratio))
            w = round(math.sqrt(target * aspect) / mx) * mx
            h = round(math.sqrt(target / aspect) / my) * my
            if 0 < w <= img_w and 0 < h <= img_h:
                return self._randint(0, (img_h - h) // my) * my, self._randint(0, (img_w - w) // mx) * mx, h, w
        return 0, 0, img_h, img_w

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        my, mx = mcu_size(c)
        if c.size[0] < my or c.size[1] < mx:
            raise ValueError(f"image {c.size} is smaller than one MCU ({my}x{mx} px)")
        top, left, h, w = self._params(c)
        return resized_crop(c, top, left, h, w, self.size)


class RandomBrightness(_Random):
    """:func:`adjust_brightness` by ``delta`` drawn uniformly from ``[-max_delta, max_delta]`` (8-bit levels)."""

    def __init__(self, max_delta: float = 32.0, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        if not float(max_delta) >= 0:
            raise ValueError(f"max_delta must be >= 0, got {max_delta!r}")
        self.max_delta = float(max_delta)

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        return adjust_brightness(c, self._uniform(-self.max_delta, self.max_delta))


class RandomContrast(_Random):
    """:func:`adjust_contrast` by a factor drawn uniformly from ``factor_range``."""

    def __init__(self, factor_range: tuple[float, float] = (0.6, 1.4), generator: torch.Generator | None = None):
        super().__init__(generator)
        self.factor_range = _check_range(factor_range, "factor_range", 0.0)

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        return adjust_contrast(c, self._uniform(*self.factor_range))


class RandomChromaScale(_Random):
    """:func:`scale_chroma` by a factor drawn uniformly from ``factor_range`` (saturation)."""

    def __init__(self, factor_range: tuple[float, float] = (0.6, 1.4), generator: torch.Generator | None = None):
        super().__init__(generator)
        self.factor_range = _check_range(factor_range, "factor_range", 0.0)

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        return scale_chroma(c, self._uniform(*self.factor_range))


class GaussianNoise(_Random):
    """:func:`add_gaussian_noise` with standard deviation ``std`` (8-bit levels)."""

    def __init__(self, std: float = 2.0, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        if not float(std) >= 0:
            raise ValueError(f"std must be >= 0, got {std!r}")
        self.std = float(std)

    def __call__(self, c: JpegCoefficients) -> JpegCoefficients:
        return add_gaussian_noise(c, self.std, self.generator)
