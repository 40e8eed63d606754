"""The CUDA sources of :mod:`freqnets.kernels`, their tile constants, and a compile check that needs no GPU.

Nothing here imports CuPy at module level: :func:`check_compile` imports NVRTC's
binding (``cupy_backends.cuda.libs.nvrtc``, which loads ``libnvrtc`` and works
without a GPU or driver) only when called, and falls back to ``nvcc`` on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources

#: Tile shape of the planar complex GEMM (see spectral_product.cu). The NumPy emulation in
#: The NumPy emulation (tests/kernels/emulate.py) uses the same numbers.
TILE_M, TILE_N, TILE_K = 32, 32, 16
MICRO_M, MICRO_N = 2, 2
SMEM_PAD = 1
THREADS = (TILE_M // MICRO_M) * (TILE_N // MICRO_N)

#: torch dtype name -> the storage type the kernel is instantiated for.
STORAGE_TYPES = ("float32", "float64", "float16", "bfloat16")

#: Architectures :func:`check_compile` compiles for by default (Hopper, Ampere; CUDA 13 starts at Turing).
DEFAULT_ARCHS = ("compute_90", "compute_80")

SOURCE_FILES = ("spectral_product.cu",)


def kernel_name(dtype_name: str, gauss: bool) -> str:
    """Entry point of the planar complex GEMM for a storage dtype (``"float32"``, ...)."""
    if dtype_name not in STORAGE_TYPES:
        raise ValueError(f"the kernels take {', '.join(STORAGE_TYPES)}, got {dtype_name!r}")
    return f"planar_cgemm_{dtype_name}" + ("_gauss" if gauss else "")


def kernel_names() -> list[str]:
    """Every ``extern "C"`` entry point the sources define."""
    return [kernel_name(d, g) for d in STORAGE_TYPES for g in (False, True)]


def defines() -> dict[str, int]:
    return {
        "TILE_M": TILE_M,
        "TILE_N": TILE_N,
        "TILE_K": TILE_K,
        "MICRO_M": MICRO_M,
        "MICRO_N": MICRO_N,
        "SMEM_PAD": SMEM_PAD,
    }


def read_source(name: str = "spectral_product.cu") -> str:
    """The text of a kernel source shipped in this package."""
    return resources.files("freqnets.kernels").joinpath(name).read_text()


def full_source(name: str = "spectral_product.cu") -> str:
    """The source with the tile constants prepended: what NVRTC (and CuPy) compile."""
    header = "".join(f"#define {key} {value}\n" for key, value in defines().items())
    return header + read_source(name)


def compile_options(arch: str) -> list[str]:
    return [f"--gpu-architecture={arch}", "--std=c++17"]


@dataclass(frozen=True)
class CompileResult:
    """One source compiled for one architecture."""

    source: str
    arch: str
    compiler: str
    ok: bool
    log: str
    entry_points: tuple[str, ...]

    @property
    def clean(self) -> bool:
        """Compiled, with an empty log (no warnings) and every expected entry point present."""
        return self.ok and not self.log.strip() and set(self.entry_points) >= set(kernel_names())


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError:
        return None
    try:
        nvrtc.getVersion()
    except Exception:  # libnvrtc missing or unloadable
        return None
    return nvrtc


def available_compiler() -> str | None:
    """``"nvrtc"`` when CuPy's NVRTC binding loads, ``"nvcc"`` when nvcc is on PATH, else None."""
    if _nvrtc() is not None:
        return "nvrtc"
    if shutil.which("nvcc"):
        return "nvcc"
    return None


def _entry_points(ptx: str) -> tuple[str, ...]:
    return tuple(line.split()[-1].rstrip("(") for line in ptx.splitlines() if line.startswith(".visible .entry"))


def _compile_nvrtc(nvrtc, name: str, arch: str) -> CompileResult:
    program = nvrtc.createProgram(full_source(name), name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, compile_options(arch))
        except nvrtc.NVRTCError:
            return CompileResult(name, arch, "nvrtc", False, nvrtc.getProgramLog(program), ())
        ptx = nvrtc.getPTX(program)
        ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
        return CompileResult(name, arch, "nvrtc", True, nvrtc.getProgramLog(program), _entry_points(ptx))
    finally:
        nvrtc.destroyProgram(program)


def _compile_nvcc(name: str, arch: str) -> CompileResult:
    with tempfile.TemporaryDirectory() as tmp:
        src, ptx_path = os.path.join(tmp, name), os.path.join(tmp, "out.ptx")
        with open(src, "w") as handle:
            handle.write(full_source(name))
        command = ["nvcc", "--ptx", f"--gpu-architecture={arch}", "--std=c++17", src, "-o", ptx_path]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            return CompileResult(name, arch, "nvcc", False, done.stderr + done.stdout, ())
        with open(ptx_path) as handle:
            ptx = handle.read()
        return CompileResult(name, arch, "nvcc", True, done.stderr + done.stdout, _entry_points(ptx))


def check_compile(archs: tuple[str, ...] = DEFAULT_ARCHS, compiler: str = "auto") -> list[CompileResult]:
    """Compile every kernel source for ``archs`` (no GPU or driver needed) and raise on any error or warning.

    Args:
        archs: virtual architectures, e.g. ``("compute_90",)``.
        compiler: ``"nvrtc"`` (CuPy's binding of libnvrtc), ``"nvcc"``, or ``"auto"`` (nvrtc, else nvcc).

    Returns:
        One :class:`CompileResult` per source and architecture, all clean.

    Raises:
        ValueError: unknown ``compiler``.
        RuntimeError: no compiler is available, or a source failed to compile, warned, or lacks an
            entry point; the message holds the compiler's log.
    """
    if compiler not in ("auto", "nvrtc", "nvcc"):
        raise ValueError(f"compiler must be 'auto', 'nvrtc' or 'nvcc', got {compiler!r}")
    nvrtc = _nvrtc() if compiler in ("auto", "nvrtc") else None
    if compiler == "nvrtc" and nvrtc is None:
        raise RuntimeError("NVRTC is not available: install CuPy (pip install 'freqnets[cuda]')")
    if nvrtc is None and compiler == "auto":
        compiler = "nvcc"
    if nvrtc is None and not shutil.which("nvcc"):
        raise RuntimeError("no CUDA compiler: install CuPy (pip install 'freqnets[cuda]') or put nvcc on PATH")
    results = [
        _compile_nvrtc(nvrtc, name, arch) if nvrtc is not None else _compile_nvcc(name, arch)
        for name in SOURCE_FILES
        for arch in archs
    ]
    bad = [r for r in results if not r.clean]
    if bad:
        details = "\n".join(
            f"{r.source} [{r.arch}, {r.compiler}]: {'warnings' if r.ok else 'errors'}; "
            f"missing entry points {sorted(set(kernel_names()) - set(r.entry_points))}\n{r.log}"
            for r in bad
        )
        raise RuntimeError(f"kernel sources do not compile cleanly:\n{details}")
    return results


@dataclass(frozen=True)
class ResourceUsage:
    """What ptxas reports for one entry point compiled to a real architecture."""

    registers: int
    spill_bytes: int
    shared_bytes: int


def resource_usage(arch: str = "sm_90", name: str = "spectral_product.cu") -> dict[str, ResourceUsage]:
    """Registers, spills and static shared memory of every entry point, compiled to ``arch`` (e.g. ``sm_90``).

    Uses NVRTC's built-in ptxas (``--ptxas-options=-v``); no GPU needed.

    Raises:
        RuntimeError: NVRTC is not available or the compile failed.
    """
    import re

    nvrtc = _nvrtc()
    if nvrtc is None:
        raise RuntimeError("NVRTC is not available: install CuPy (pip install 'freqnets[cuda]')")
    program = nvrtc.createProgram(full_source(name), name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, [f"--gpu-architecture={arch}", "--std=c++17", "--ptxas-options=-v"])
        except nvrtc.NVRTCError as error:
            raise RuntimeError(f"{name} does not compile for {arch}:\n{nvrtc.getProgramLog(program)}") from error
        log = nvrtc.getProgramLog(program)
    finally:
        nvrtc.destroyProgram(program)
    usage: dict[str, ResourceUsage] = {}
    for block in re.split(r"Compiling entry function '", log)[1:]:
        entry = block.split("'", 1)[0]
        registers = re.search(r"Used (\d+) registers", block)
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", block)
        shared = re.search(r"(\d+) bytes smem", block)
        usage[entry] = ResourceUsage(
            int(registers.group(1)) if registers else -1,
            int(spills.group(1)) + int(spills.group(2)) if spills else -1,
            int(shared.group(1)) if shared else 0,
        )
    return usage
