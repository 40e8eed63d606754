"""Perturbation channels: lossy maps ``C(x)`` of images, usable as layers before or inside a model.

Every channel takes images ``(B, C, H, W)`` with values in ``[0, 1]`` and has one
strength parameter with a documented range (``strength_range``):

================================  =====================  ===========================  =========
channel                           strength               range                        backward
================================  =====================  ===========================  =========
:class:`FFTChannel`               ``rate`` discarded     ``0 <= rate < 1``            exact
:class:`SVDChannel`               ``rate`` discarded     ``0 <= rate < 1``            exact
:class:`ColorDepthChannel`        ``bits`` per channel   integers ``1 .. 8``          BPDA
:class:`JPEGChannel`              ``quality`` (IJG)      integers ``1 .. 100``        BPDA
:class:`GaussianNoiseChannel`     ``sigma`` (std)        ``0 <= sigma <= 2``          exact
:class:`UniformNoiseChannel`      ``width`` (half-width) ``0 <= width <= 2``          exact
:class:`LaplaceNoiseChannel`      ``scale`` ``b``        ``0 <= scale <= 2``          exact
================================  =====================  ===========================  =========

``rate`` is the fraction of coefficients discarded, as everywhere in freqnets
(for :class:`SVDChannel` the fraction of singular values *kept* is ``1 - rate``).
Noise channels add noise drawn independently per pixel and, with ``clip=True``
(the default), clip the result back into ``[0, 1]``.

Backward: ``backward="exact"`` differentiates the channel itself (only where it
is differentiable: FFT, SVD and the noise channels, whose gradient is that of the
clipping); ``backward="bpda"`` is the straight-through estimator of Backward Pass
Differentiable Approximation (Athalye et al., 2018): the forward value is
``C(x)``, the gradient that of the identity. Colour depth and JPEG round, so
their gradient is zero almost everywhere and only ``"bpda"`` is accepted.

``channel.distortion(x)`` is ``delta_c = E ||C(x) - x||_2``, the mean over the
batch (and over noise draws) of the per-image L2 norm in the ``[0, 1]`` range.
``channel.calibrate(model, data, target)`` bisects the strength over its range
for a target distortion or a target clean-accuracy drop.

:class:`Vote` classifies by majority vote over ``draws`` passes of a random
channel, as one batched forward of ``B * draws`` images.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..transforms import block_dct2, block_idct2, fft_compress, rgb_to_ycbcr, svd_truncate, ycbcr_to_rgb

BACKWARDS = ("exact", "bpda")
MEASURES = ("distortion", "accuracy_drop")


@dataclass(frozen=True)
class StrengthRange:
    """The accepted values of a channel's strength: ``low <= s <= high`` (``s < high`` if ``high_open``)."""

    low: float
    high: float
    high_open: bool = False
    integer: bool = False

    def check(self, value: float, name: str) -> float | int:
        """Return ``value`` (an ``int`` for integer ranges) or raise ``TypeError``/``ValueError``."""
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            raise TypeError(f"{name} must be {'an int' if self.integer else 'a real number'} in {self}, "
                            f"got {type(value).__name__}")  # fmt: skip
        value = int(value) if self.integer else float(value)
        above = value >= self.high if self.high_open else value > self.high
        if math.isnan(value) or value < self.low or above:
            raise ValueError(f"{name} must be in {self}, got {value}")
        return value

    def search_bounds(self) -> tuple[float, float]:
        """The closed interval bisection searches: an open upper end is approached to within 1e-3."""
        return self.low, (self.high - 1e-3 if self.high_open else self.high)

    def __str__(self) -> str:
        if self.integer:
            return f"{{{int(self.low)}, ..., {int(self.high)}}}"
        return f"[{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def _check_images(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of images (B, C, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must have a floating dtype, got {x.dtype}")
    if x.dim() != 4 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    return x


class PerturbationChannel(nn.Module):
    """Base class: one strength, a backward option, distortion and calibration.

    Subclasses set ``strength_name``, ``strength_range``, ``differentiable``,
    ``random`` and ``distortion_increases`` (whether a larger strength distorts
    more) and implement :meth:`perturb`.

    Args:
        strength: the channel's strength, within ``strength_range``.
        backward: ``"exact"`` or ``"bpda"``; ``None`` picks ``"exact"`` where the
            channel is differentiable, else ``"bpda"``.
    """

    strength_name = "strength"
    strength_range = StrengthRange(0.0, 1.0)
    differentiable = True
    random = False
    distortion_increases = True

    def __init__(self, strength: float, backward: str | None = None) -> None:
        super().__init__()
        self.strength = strength
        self.backward = backward
        # Random channels draw from this generator when set, else from torch's global one.
        self.generator: torch.Generator | None = None

    @property
    def strength(self) -> float | int:
        """The current strength; assigning checks it against ``strength_range``."""
        return self._strength

    @strength.setter
    def strength(self, value: float | int) -> None:
        self._strength = self.strength_range.check(value, self.strength_name)

    @property
    def backward(self) -> str:
        """``"exact"`` (the channel's own gradient) or ``"bpda"`` (straight-through)."""
        return self._backward

    @backward.setter
    def backward(self, value: str | None) -> None:
        if value is None:
            value = "exact" if self.differentiable else "bpda"
        if value not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {value!r}")
        if value == "exact" and not self.differentiable:
            raise ValueError(f"{type(self).__name__} rounds, so it has no useful exact gradient; use backward='bpda'")
        self._backward = value

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """``C(x)`` for images ``x`` ``(B, C, H, W)`` in ``[0, 1]``; same shape and dtype."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the channel: ``(B, C, H, W)`` -> ``(B, C, H, W)``, with the chosen backward."""
        _check_images(x)
        if self.backward == "bpda":
            return x + (self.perturb(x.detach()) - x.detach())
        return self.perturb(x)

    @torch.no_grad()
    def distortion(self, x: torch.Tensor, draws: int = 1) -> float:
        """``delta_c = E ||C(x) - x||_2``: mean per-image L2 norm over the batch (and ``draws`` noise draws)."""
        _check_images(x)
        total = 0.0
        for _ in range(draws if self.random else 1):
            total += (self.perturb(x) - x).flatten(1).norm(dim=1).mean().item()
        return total / (draws if self.random else 1)

    def calibrate(self, model: nn.Module | None, data, target: float, *, measure: str = "distortion",
                  tolerance: float | None = None, max_steps: int = 30, seed: int = 0) -> float | int:  # fmt: skip
        """Set the strength so that ``measure`` hits ``target``, by bisection over ``strength_range``.

        Args:
            model: classifier of ``[0, 1]`` images; needed for ``measure="accuracy_drop"`` only.
            data: images ``(B, C, H, W)`` or a pair ``(images, labels)`` (labels needed for accuracy).
            target: the wanted distortion ``delta_c``, or the wanted drop of clean accuracy
                (a fraction, ``accuracy(model(x)) - accuracy(model(C(x)))``).
            measure: ``"distortion"`` or ``"accuracy_drop"``.
            tolerance: stop when ``|measure - target| <= tolerance`` (default ``1%`` of
                ``|target|`` for distortion, ``0.01`` for accuracy).
            max_steps: most bisection steps.
            seed: random channels draw from a generator seeded with this at every
                evaluation (common random numbers), so the measure is a deterministic
                function of the strength.

        Returns:
            The chosen strength (also assigned to ``self.strength``). For integer
            strengths, the integer whose measure is closest to ``target``.

        Raises:
            ValueError: unknown ``measure``, missing model or labels, or a target outside
                what the range can reach (the message gives the reachable interval).
        """
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
        images, labels = (data if isinstance(data, (tuple, list)) else (data, None))
        _check_images(images)
        if isinstance(target, bool) or not isinstance(target, numbers.Real) or math.isnan(target):
            raise TypeError(f"target must be a real number, got {target!r}")
        if measure == "accuracy_drop" and (model is None or labels is None):
            raise ValueError("measure='accuracy_drop' needs a model and data=(images, labels)")
        if tolerance is None:
            tolerance = 0.01 * abs(target) + 1e-9 if measure == "distortion" else 0.01
        evaluate = self._measure_function(model, images, labels, measure, seed)
        return self._bisect(evaluate, float(target), tolerance, max_steps)

    def _measure_function(self, model, images, labels, measure, seed) -> Callable[[float], float]:
        clean = None
        if measure == "accuracy_drop":
            clean = _accuracy(model, images, labels)

        def evaluate(strength: float) -> float:
            self.strength = strength
            saved = self.generator
            self.generator = torch.Generator(images.device).manual_seed(seed) if self.random else saved
            try:
                if measure == "distortion":
                    return self.distortion(images)
                with torch.no_grad():
                    return clean - _accuracy(model, self.perturb(images), labels)
            finally:
                self.generator = saved

        return evaluate

    def _bisect(self, evaluate: Callable[[float], float], target: float, tolerance: float, max_steps: int):
        low, high = self.strength_range.search_bounds()
        if self.strength_range.integer:
            low, high = int(low), int(high)
        f_low, f_high = evaluate(low), evaluate(high)
        lo_value, hi_value = min(f_low, f_high), max(f_low, f_high)
        if not (lo_value - tolerance <= target <= hi_value + tolerance):
            reach = f"[{lo_value:.4g}, {hi_value:.4g}]"
            raise ValueError(f"target {target:g} is outside what {type(self).__name__} reaches over "
                             f"{self.strength_name} in {self.strength_range}: {reach}")  # fmt: skip
        increasing = f_high >= f_low
        best = min(((low, f_low), (high, f_high)), key=lambda p: abs(p[1] - target))
        for _ in range(max_steps):
            if abs(best[1] - target) <= tolerance:
                break
            if self.strength_range.integer and high - low <= 1:
                break
            middle = (low + high) // 2 if self.strength_range.integer else 0.5 * (low + high)
            value = evaluate(middle)
            if abs(value - target) < abs(best[1] - target):
                best = (middle, value)
            if (value < target) == increasing:
                low = middle
            else:
                high = middle
        self.strength = best[0]
        return self.strength

    def extra_repr(self) -> str:
        return f"{self.strength_name}={self.strength}, backward={self.backward!r}"


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(images).argmax(-1) == labels).double().mean().item()


class FFTChannel(PerturbationChannel):
    """Band-limit each image channel: zero the highest-frequency fraction ``rate`` of its 2D spectrum.

    Uses :func:`freqnets.transforms.fft_compress` (the FFT domain's kept set). Linear,
    so the exact backward is the same low-pass filter. Output may leave ``[0, 1]``
    slightly (ringing); it is not clipped so the channel stays linear.

    Example:
        >>> channel = FFTChannel(0.5)
        >>> channel(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    strength_name = "rate"
    strength_range = StrengthRange(0.0, 1.0, high_open=True)

    def __init__(self, rate: float = 0.5, backward: str | None = None) -> None:
        super().__init__(rate, backward)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        return fft_compress(x, self.strength)


class SVDChannel(PerturbationChannel):
    """Keep the largest ``1 - rate`` fraction of singular values of each ``H x W`` image channel.

    Uses :func:`freqnets.transforms.svd_truncate` (rank ``round((1 - rate) * min(H, W))``,
    at least 1). Differentiable through ``torch.linalg.svd`` where singular values are
    distinct; choose ``backward="bpda"`` for attacks on nearly degenerate images.
    """

    strength_name = "rate"
    strength_range = StrengthRange(0.0, 1.0, high_open=True)

    def __init__(self, rate: float = 0.5, backward: str | None = None) -> None:
        super().__init__(rate, backward)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        return svd_truncate(x, rate=self.strength)


class ColorDepthChannel(PerturbationChannel):
    """Reduce every colour channel to ``bits`` bits: ``round(x * (2**bits - 1)) / (2**bits - 1)``.

    Inputs are clipped into ``[0, 1]`` first. Piecewise constant: BPDA backward only.
    """

    strength_name = "bits"
    strength_range = StrengthRange(1, 8, integer=True)
    differentiable = False
    distortion_increases = False

    def __init__(self, bits: int = 4, backward: str | None = None) -> None:
        super().__init__(bits, backward)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        levels = 2**self.strength - 1
        return torch.round(x.clamp(0, 1) * levels) / levels


def jpeg_quant_tables(quality: int) -> torch.Tensor:
    """IJG (libjpeg) quantisation tables at ``quality``: ``(3, 8, 8)`` for Y, Cb, Cr (float64).

    The Annex K tables scaled as libjpeg does (:func:`freqnets.jpeg.quant_tables_for_quality`).
    """
    quality = StrengthRange(1, 100, integer=True).check(quality, "quality")
    from ..jpeg.encode import quant_tables_for_quality  # here: `import freqnets` does not load the JPEG package

    return quant_tables_for_quality(quality)[[0, 1, 1]].view(3, 8, 8).to(torch.float64)


class JPEGChannel(PerturbationChannel):
    """JPEG compression at IJG ``quality`` (1 worst .. 100 best), computed in torch.

    JFIF YCbCr, level shift by 128, 8x8 block DCT (:func:`freqnets.transforms.block_dct2`,
    orthonormal = JPEG's DCT), quantisation with the IJG-scaled Annex K tables
    (:func:`jpeg_quant_tables`), rounding, dequantisation, inverse DCT, RGB, clipping to
    ``[0, 1]``. No chroma subsampling (4:4:4) and no entropy coding (it is lossless).
    Images need 3 channels; sizes that are not multiples of 8 are edge-padded. Rounding:
    BPDA backward only.
    """

    strength_name = "quality"
    strength_range = StrengthRange(1, 100, integer=True)
    differentiable = False
    distortion_increases = False

    def __init__(self, quality: int = 75, backward: str | None = None) -> None:
        super().__init__(quality, backward)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 3:
            raise ValueError(f"JPEGChannel needs RGB images (B, 3, H, W), got shape {tuple(x.shape)}")
        work = x.clamp(0, 1).to(torch.float64 if x.dtype == torch.float64 else torch.float32)
        shifted = rgb_to_ycbcr(work) * 255.0 - 128.0
        coeffs = block_dct2(shifted, 8)  # (B, 3, nh, nw, 8, 8)
        table = jpeg_quant_tables(self.strength).to(coeffs.device, coeffs.dtype)[:, None, None]
        restored = block_idct2(torch.round(coeffs / table) * table, size=tuple(x.shape[-2:]))
        return ycbcr_to_rgb((restored + 128.0) / 255.0).clamp(0, 1).to(x.dtype)


class _NoiseChannel(PerturbationChannel):
    """Additive i.i.d. noise of one scale per pixel; ``clip=True`` clips the result into ``[0, 1]``."""

    strength_range = StrengthRange(0.0, 2.0)
    random = True

    def __init__(self, strength: float, backward: str | None = None, clip: bool = True) -> None:
        super().__init__(strength, backward)
        self.clip = bool(clip)

    def sample_noise(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Noise of ``shape``, drawn from :attr:`generator` (or torch's global generator)."""
        raise NotImplementedError

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        out = x + self.sample_noise(x.shape, x.device, x.dtype)
        return out.clamp(0, 1) if self.clip else out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", clip={self.clip}"


class GaussianNoiseChannel(_NoiseChannel):
    """Add ``N(0, sigma^2)`` noise to every pixel (``0 <= sigma <= 2``)."""

    strength_name = "sigma"

    def __init__(self, sigma: float = 0.1, backward: str | None = None, clip: bool = True) -> None:
        super().__init__(sigma, backward, clip)

    def sample_noise(self, shape, device, dtype):
        return torch.randn(shape, generator=self.generator, device=device, dtype=dtype) * self.strength


class UniformNoiseChannel(_NoiseChannel):
    """Add ``U(-width, width)`` noise to every pixel (``0 <= width <= 2``; variance ``width^2 / 3``)."""

    strength_name = "width"

    def __init__(self, width: float = 0.1, backward: str | None = None, clip: bool = True) -> None:
        super().__init__(width, backward, clip)

    def sample_noise(self, shape, device, dtype):
        u = torch.rand(shape, generator=self.generator, device=device, dtype=dtype)
        return (2 * u - 1) * self.strength


class LaplaceNoiseChannel(_NoiseChannel):
    """Add Laplace noise of scale ``b`` to every pixel (``0 <= scale <= 2``; variance ``2 b^2``).

    Sampled by inversion: ``-b sign(u) log(1 - |u|)`` with ``u ~ U(-1, 1)``.
    """

    strength_name = "scale"

    def __init__(self, scale: float = 0.1, backward: str | None = None, clip: bool = True) -> None:
        super().__init__(scale, backward, clip)

    def sample_noise(self, shape, device, dtype):
        u = torch.rand(shape, generator=self.generator, device=device, dtype=dtype) * 2 - 1
        tiny = torch.finfo(dtype).eps
        return -self.strength * torch.sign(u) * torch.log1p(-u.abs().clamp(max=1 - tiny))


CHANNELS: dict[str, type[PerturbationChannel]] = {
    "fft": FFTChannel,
    "svd": SVDChannel,
    "color_depth": ColorDepthChannel,
    "jpeg": JPEGChannel,
    "gauss": GaussianNoiseChannel,
    "uniform": UniformNoiseChannel,
    "laplace": LaplaceNoiseChannel,
}


def make_channel(name: str, strength: float | int, backward: str | None = None) -> PerturbationChannel:
    """Build the channel registered as ``name`` (a key of :data:`CHANNELS`) at ``strength``."""
    if name not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {name!r}")
    return CHANNELS[name](strength, backward=backward)


class Vote(nn.Module):
    """Majority vote of ``model`` over ``draws`` passes of ``channel``, batched.

    The batch is repeated ``draws`` times and sent through ``channel`` and ``model``
    in one forward of ``draws * B`` images (draw ``t`` of image ``b`` at row
    ``t * B + b``), or in chunks of at most ``chunk`` images.

    Args:
        model: classifier ``(N, C, H, W) -> (N, K)`` logits.
        channel: usually a random :class:`PerturbationChannel`; any module works.
        draws: number of passes ``T`` (>= 1).
        chunk: most images per forward (``None``: all ``T * B`` at once).

    Returns (forward):
        ``(B, K)`` vote shares: the fraction of draws predicting each class; their
        ``argmax`` (lowest class on ties) is the majority vote. Not differentiable.
    """

    def __init__(self, model: nn.Module, channel: nn.Module, draws: int = 8, chunk: int | None = None) -> None:
        super().__init__()
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise ValueError(f"draws must be an int >= 1, got {draws!r}")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"chunk must be None or an int >= 1, got {chunk!r}")
        self.model, self.channel, self.draws, self.chunk = model, channel, draws, chunk

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x)
        b = x.shape[0]
        repeated = x.unsqueeze(0).expand(self.draws, *x.shape).reshape(self.draws * b, *x.shape[1:])
        step = self.chunk or repeated.shape[0]
        logits = torch.cat([self.model(self.channel(repeated[i : i + step])) for i in range(0, len(repeated), step)])
        predictions = logits.argmax(-1).view(self.draws, b)
        return F.one_hot(predictions, logits.shape[-1]).sum(0).to(x.dtype) / self.draws
