"""Properties every domain must have, checked through the one interface."""

from __future__ import annotations

import itertools

import pytest
import torch

from freqnets.transforms import NonFiniteInputError, available_domains, get_domain, rank_for_energy, rank_for_rate
from tests.conftest import assert_close_relative

# Every domain, with its variants worth checking.
DOMAINS = [
    ("fft", {}),
    ("dct", {}),
    ("dct", {"block_size": 8}),
    ("dct", {"block_size": 4}),
    ("svd", {}),
    ("winograd", {"m": 2}),
    ("winograd", {"m": 4}),
]
IDS = [name + "".join(f"-{k}{v}" for k, v in opts.items()) for name, opts in DOMAINS]


def test_registry_lists_the_four_domains():
    assert available_domains() == ["dct", "fft", "svd", "winograd"]
    with pytest.raises(ValueError, match="unknown domain 'wavelet'; available domains: dct, fft, svd, winograd"):
        get_domain("wavelet")


@pytest.fixture(params=DOMAINS, ids=IDS)
def domain(request):
    name, options = request.param
    return get_domain(name, **options)


def _size_multiple(domain) -> int:
    return getattr(domain, "block_size", None) or getattr(domain, "alpha", 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rate_zero_returns_the_input(domain, dtype, device):
    x = torch.randn(2, 3, 24, 36, dtype=dtype, device=device)
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    assert_close_relative(domain.compress(x, 0.0), x, rtol)
    assert_close_relative(domain.inverse(domain.forward(x), (24, 36)), x, rtol)


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.9])
def test_compress_is_idempotent_and_zero_outside_the_kept_set(domain, rate):
    x = torch.randn(2, 24, 24, dtype=torch.float64)  # a multiple of every block and tile size here
    once = domain.compress(x, rate)
    assert_close_relative(domain.compress(once, rate), once, 1e-8)
    if domain.name == "svd":
        singular_values = torch.linalg.svdvals(once)
        k = round((1 - rate) * 24)
        assert singular_values[:, k:].max() < 1e-10 * singular_values.max()
    elif domain.fixed_grid:
        coeffs = domain.forward(once)
        discarded = ~domain.kept_mask((24, 24), rate).expand_as(coeffs)
        assert coeffs[discarded].abs().max() < 1e-10
    else:
        coeffs = domain.forward(once)
        kept = round((1 - rate) * coeffs[0].numel())
        assert (coeffs.abs() > 1e-9).flatten(1).sum(1).tolist() == [kept, kept]


@pytest.mark.parametrize("size", [(16, 16), (16, 31), (17, 23), (40, 20)])
@pytest.mark.parametrize("rate", [0.05, 0.25, 0.5, 0.75, 0.95])
def test_kept_fraction_is_close_to_one_minus_rate(domain, size, rate):
    if domain.fixed_grid:
        fraction = domain.kept_fraction(size, rate)
    elif domain.name == "svd":
        fraction = rank_for_rate(min(size), rate) / min(size)
        assert abs(fraction - (1 - rate)) <= 0.5 / min(size) + 1e-12
        return
    else:
        mask = domain.kept_mask_of(domain.forward(torch.randn(*size, dtype=torch.float64)), rate)
        fraction = mask.double().mean().item()
    assert abs(fraction - (1 - rate)) <= 0.02


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_shape_and_dtype_are_kept_for_any_leading_dims(domain, dtype):
    for shape in [(20, 12), (3, 20, 12), (2, 3, 4, 20, 12)]:
        x = torch.randn(shape).to(dtype)
        out = domain.compress(x, 0.5)
        assert out.shape == x.shape and out.dtype == dtype


def test_batched_equals_one_by_one(domain):
    x = torch.randn(3, 2, 16, 16, dtype=torch.float64)
    batched = domain.compress(x, 0.6)
    for i in range(3):
        for j in range(2):
            assert_close_relative(batched[i, j], domain.compress(x[i, j], 0.6), 1e-10)


def test_more_compression_never_means_less_error_on_smooth_data(domain):
    grid = torch.linspace(0, 1, 32, dtype=torch.float64)
    x = torch.exp(-((grid[:, None] - 0.4) ** 2 + (grid[None, :] - 0.6) ** 2) * 8) + 0.01 * torch.randn(
        32, 32, dtype=torch.float64
    )
    errors = [(domain.compress(x, r) - x).norm().item() for r in (0.0, 0.3, 0.6, 0.9)]
    assert errors[0] < 1e-8
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(errors)), errors


def test_rate_for_energy_returns_a_rate(domain):
    x = torch.randn(2, 16, 16, dtype=torch.float64)
    assert domain.rate_for_energy(x, 1.0) == pytest.approx(0.0, abs=1e-9)
    low, high = domain.rate_for_energy(x, 0.5), domain.rate_for_energy(x, 0.95)
    assert 0.0 <= high <= low < 1.0
    with pytest.raises(ValueError, match="energy"):
        domain.rate_for_energy(x, 0.0)


def test_gradcheck_compress(domain):
    x = torch.randn(2, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: domain.compress(t, 0.5), (x,))


def _as_real_tuple(coeffs):
    parts = coeffs if isinstance(coeffs, tuple) else (coeffs,)
    return tuple(torch.view_as_real(p) if p.is_complex() else p for p in parts)


def test_gradcheck_forward_and_inverse(domain):
    x = torch.randn(2, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _as_real_tuple(domain.forward(t)), (x,))
    coeffs = domain.forward(x.detach())
    parts = tuple(p.detach().requires_grad_() for p in (coeffs if isinstance(coeffs, tuple) else (coeffs,)))

    def inverse(*tensors):
        packed = type(coeffs)(*tensors) if isinstance(coeffs, tuple) else tensors[0]
        return domain.inverse(packed, (8, 8))

    if domain.name == "fft":
        # Only Hermitian-consistent spectra are valid inputs; perturb the real image instead.
        assert torch.autograd.gradcheck(lambda t: domain.inverse(domain.forward(t) * 2, (8, 8)), (x,))
    else:
        assert torch.autograd.gradcheck(inverse, parts)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_rates_outside_zero_one_are_rejected(domain, rate):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        domain.compress(torch.randn(8, 8), rate)


def test_bad_inputs_name_the_argument(domain):
    with pytest.raises(TypeError, match="rate must be a real number"):
        domain.compress(torch.randn(8, 8), "0.5")
    with pytest.raises(TypeError, match=r"x must have a floating dtype .* got torch.int64"):
        domain.compress(torch.ones(8, 8, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match=r"at least 2 dimensions \(\.\.\., H, W\)"):
        domain.compress(torch.randn(8), 0.5)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        domain.compress([[1.0, 2.0]], 0.5)
    if not domain.fixed_grid:
        with pytest.raises(ValueError, match="fixed-grid"):
            domain.kept_mask((8, 8), 0.5)


@pytest.mark.parametrize("name", ["fft", "dct", "svd", "winograd"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_rate_for_energy_refuses_non_finite_input_by_name(name, bad):
    x = torch.randn(2, 3, 16, 16)
    assert 0.0 <= get_domain(name).rate_for_energy(x, 0.9) < 1.0
    x[1, 2, 5, 7] = bad
    with pytest.raises(NonFiniteInputError, match=r"x has \d NaN and \d infinite values") as error:
        get_domain(name).rate_for_energy(x, 0.9)
    assert isinstance(error.value, ValueError)


def test_energy_that_overflows_and_rank_for_energy_are_refused_too():
    huge = torch.full((1, 8, 8), 1e200, dtype=torch.float64)  # finite, but its squares overflow
    with pytest.raises(NonFiniteInputError, match="not finite or overflows"):
        get_domain("fft").rate_for_energy(huge, 0.9)
    with pytest.raises(NonFiniteInputError, match="1 NaN"):
        rank_for_energy(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 0.9)
