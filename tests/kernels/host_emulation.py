"""Run the CUDA kernels' own source on the CPU (g++, one OS thread per CUDA thread) to test them without a GPU.

:func:`host_product` computes a product with the unchanged ``spectral_product.cu``
compiled by ``host_emulation.cpp``: the same entry points, the same packed
arguments as the CuPy launch (:func:`freqnets.kernels.cupy_backend.pack_arguments`),
256 concurrent threads per block synchronised by a barrier. It checks the kernel's
C++ (indexing, tiling, synchronisation, conversions); it cannot check what only a
GPU does (PTX half conversions, the memory model, speed). Needs ``g++`` with C++20.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from freqnets.kernels import sources
from freqnets.kernels.cupy_backend import pack_arguments
from freqnets.kernels.operands import MAX_GRID, ProductOperands, kernel_arguments


def compiler() -> str | None:
    """The C++ compiler used (``g++`` on PATH), or None."""
    return shutil.which("g++")


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("the host emulation needs g++ (C++20) on PATH")
    harness = Path(__file__).with_name("host_emulation.cpp").read_text()  # the harness lives beside this file
    kernel = resources.files("freqnets.kernels").joinpath("spectral_product.cu").read_text()  # the shipped source
    flags = [f"-D{key}={value}" for key, value in sources.defines().items()]
    digest = hashlib.sha256((harness + kernel + " ".join(flags)).encode()).hexdigest()[:16]
    build = os.path.join(tempfile.gettempdir(), f"freqnets-host-kernels-{digest}")
    library = os.path.join(build, "host_kernels.so")
    if not os.path.exists(library):
        os.makedirs(build, exist_ok=True)
        for name, text in (("host_emulation.cpp", harness), ("spectral_product.cu", kernel)):
            with open(os.path.join(build, name), "w") as handle:
                handle.write(text)
        partial = library + f".{os.getpid()}"
        command = [cxx, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror"]
        command += ["-Wno-unknown-pragmas", *flags, "-x", "c++", "host_emulation.cpp", "-o", partial]
        done = subprocess.run(command, cwd=build, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"host build of the kernels failed:\n{done.stderr}")
        os.replace(partial, library)
    lib = ctypes.CDLL(library)
    for name in sources.kernel_names():
        function = getattr(lib, f"{name}_host")
        function.restype = None
        function.argtypes = (
            [ctypes.c_uint, ctypes.c_uint]
            + [ctypes.c_void_p] + [ctypes.c_longlong] * 5
            + [ctypes.c_void_p] + [ctypes.c_longlong] * 5
            + [ctypes.c_void_p] + [ctypes.c_longlong] * 10
            + [ctypes.c_int] * 2
        )
    lib.freqnets_half_to_float.restype, lib.freqnets_half_to_float.argtypes = ctypes.c_float, [ctypes.c_ushort]
    lib.freqnets_float_to_half.restype, lib.freqnets_float_to_half.argtypes = ctypes.c_ushort, [ctypes.c_float]
    return lib


def host_product(ops: ProductOperands, gauss: bool = False, max_grid: int = MAX_GRID) -> torch.Tensor:
    """Compute ``ops.out`` (CPU tensors) with the kernel source run on the host; returns ``ops.out``."""
    if ops.a.device.type != "cpu":
        raise ValueError(f"the host emulation takes CPU tensors, got {ops.a.device}")
    args = kernel_arguments(ops, gauss, max_grid)
    packed = pack_arguments(ops, args)
    getattr(_library(), f"{args.name}_host")(args.grid, args.block, *(int(v) for v in packed))
    return ops.out


def half_round_trip(values: list[float]) -> list[float]:
    """float -> half -> float through the host stand-ins of the PTX conversions (to test them)."""
    lib = _library()
    return [lib.freqnets_half_to_float(lib.freqnets_float_to_half(v)) for v in values]
