"""Argument checks shared by the whole package.

Every public entry point validates its arguments with these helpers, so a bad
call fails early with a ``TypeError`` or ``ValueError`` that names the argument
and says which values are accepted.
"""

from __future__ import annotations

import math
import numbers

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_rate(rate: float, name: str = "compress_rate") -> float:
    """Return ``rate`` as a float after checking ``0 <= rate < 1``.

    Raises:
        TypeError: ``rate`` is not a real number (``bool`` is rejected too).
        ValueError: ``rate`` is NaN or outside ``[0, 1)``.
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1), got {type(rate).__name__}")
    rate = float(rate)
    if not (0.0 <= rate < 1.0) or math.isnan(rate):
        raise ValueError(f"{name} must be in [0, 1) (fraction of coefficients discarded), got {rate}")
    return rate


def check_fraction(value: float, name: str) -> float:
    """Return ``value`` as a float after checking ``0 < value <= 1``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in (0, 1], got {type(value).__name__}")
    value = float(value)
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


def check_positive_int(value: int, name: str) -> int:
    """Return ``value`` after checking it is an ``int`` >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def check_float_tensor(x: torch.Tensor, name: str = "x", min_dims: int = 2) -> torch.Tensor:
    """Check that ``x`` is a real floating tensor with at least ``min_dims`` dims.

    Raises:
        TypeError: ``x`` is not a tensor, or its dtype is not a real floating type.
        ValueError: ``x`` has fewer than ``min_dims`` dimensions or an empty trailing dim.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        accepted = ", ".join(str(d) for d in FLOAT_DTYPES)
        raise TypeError(f"{name} must have a floating dtype ({accepted}), got {x.dtype}")
    if x.dim() < min_dims:
        raise ValueError(f"{name} must have at least {min_dims} dimensions (..., H, W), got shape {tuple(x.shape)}")
    if any(s == 0 for s in x.shape[-min_dims:]):
        raise ValueError(f"{name} has an empty transform dimension: shape {tuple(x.shape)}")
    return x


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype transforms compute in: float16/bfloat16 are promoted to float32.

    ``torch.fft`` and ``torch.linalg`` do not support the half types on every
    device and size, and their rounding would swamp the compression error.
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def check_size2d(size, name: str = "size") -> tuple[int, int]:
    """Return ``size`` as an ``(H, W)`` tuple of positive ints."""
    if isinstance(size, torch.Size):
        size = tuple(size)
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"{name} must be a pair (H, W), got {size!r}")
    return check_positive_int(size[0], f"{name}[0]"), check_positive_int(size[1], f"{name}[1]")
