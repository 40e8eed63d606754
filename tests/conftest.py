"""Shared fixtures: devices to test on, dtype-aware tolerances, seeded generators."""

from __future__ import annotations

import pytest
import torch

# Every device test is collected for CUDA too, and skipped (marker ``gpu``) on a machine without one.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")]),
]

# Relative tolerances for comparisons against float64 references.
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Assert ``max|actual - expected| <= rtol * max|expected|`` (a norm-relative check)."""
    actual, expected = (_as_real(t) for t in (actual, expected))
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = expected.abs().max().clamp_min(1e-30)
    error = (actual - expected).abs().max()
    assert error <= rtol * scale, f"max error {error:.3e} > {rtol:.1e} * {scale:.3e}"


def _as_real(t: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t).detach().cpu()
    return torch.view_as_real(t.to(torch.complex128)) if t.is_complex() else t.double()
