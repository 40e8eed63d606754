"""Every kernel source compiles with NVRTC (no GPU or driver needed): no errors, no warnings, all entry points."""

from __future__ import annotations

import pytest

from freqnets.kernels import sources

pytestmark = pytest.mark.skipif(
    sources.available_compiler() is None, reason="no CUDA compiler (install freqnets[cuda] or put nvcc on PATH)"
)


def test_every_source_compiles_cleanly_for_hopper():
    results = sources.check_compile(("compute_90",))
    assert [r.arch for r in results] == ["compute_90"] * len(sources.SOURCE_FILES)
    for result in results:
        assert result.ok and not result.log.strip(), result.log
        assert set(result.entry_points) == set(sources.kernel_names())
    # every storage type, each with the 4-multiplication and the Gauss product
    assert len(sources.kernel_names()) == 2 * len(sources.STORAGE_TYPES) == 8


@pytest.mark.skipif(sources._nvrtc() is None, reason="needs NVRTC for ptxas resource usage")
def test_sm90_binaries_do_not_spill_and_fit_two_blocks_per_sm():
    usage = sources.resource_usage("sm_90")
    assert set(usage) == set(sources.kernel_names())
    for name, use in usage.items():
        assert use.spill_bytes == 0, (name, use)
        assert 0 < use.registers <= 128, (name, use)  # __launch_bounds__(THREADS, 2): 2 x 256 threads per SM
        assert use.shared_bytes <= 48 * 1024, (name, use)  # static shared memory limit


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda s: s.replace("index_t tiles_m =", "index_t tiles_m = undefined_name +"), "errors"),
        (lambda s: s.replace("const int tid = threadIdx.x;", "const int tid = threadIdx.x; int unused_value;"), "warnings"),
        (lambda s: s.replace("X(planar_cgemm_bfloat16_gauss, bf16_bits, true)", ""), "missing entry points"),
    ],
    ids=["error", "warning", "missing-entry-point"],
)
def test_check_compile_fails_on_errors_warnings_and_missing_kernels(monkeypatch, edit, expected):
    original = sources.read_source()
    monkeypatch.setattr(sources, "read_source", lambda name="spectral_product.cu": edit(original))
    with pytest.raises(RuntimeError, match="do not compile cleanly") as error:
        sources.check_compile(("compute_90",))
    assert expected in str(error.value)
    if expected == "missing entry points":
        assert "planar_cgemm_bfloat16_gauss" in str(error.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="compiler must be"):
        sources.check_compile(compiler="clang")
    with pytest.raises(ValueError, match="the kernels take float32, float64, float16, bfloat16"):
        sources.kernel_name("int8", False)
