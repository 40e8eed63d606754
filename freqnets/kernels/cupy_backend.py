"""Launching ``planar_cgemm_*`` with CuPy on torch's CUDA tensors (CuPy imported on first use only).

Tensors cross without copies: the kernel receives ``data_ptr()`` of the torch
tensors (views included: their strides are kernel arguments), and runs on torch's
current stream of the tensors' device, so it is ordered with the surrounding torch
work and the caching allocator's stream semantics hold.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import torch

from . import sources
from .operands import KernelArguments, ProductOperands, kernel_arguments

_launches = 0
_lock = threading.Lock()


class BackendUnavailable(RuntimeError, ValueError):
    """The requested backend cannot run with this input or installation; the message says what is missing.

    A ``ValueError`` (a bad ``backend`` argument for this input) and a ``RuntimeError`` (the
    environment lacks CuPy or a GPU), so either ``except`` catches it.
    """


def launch_count() -> int:
    """How many kernels this process launched (tests use it to prove the kernel ran)."""
    return _launches


@lru_cache(maxsize=1)
def _import_cupy():
    try:
        import cupy
    except ImportError as error:
        raise BackendUnavailable(
            "backend='cupy' needs CuPy: pip install 'freqnets[cuda]' (cupy-cuda13x) or the cupy build "
            f"matching your CUDA ({error})"
        ) from error
    return cupy


@lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """``None`` when CuPy imports and sees a CUDA GPU, else why the backend cannot run (checked once)."""
    try:
        cupy = _import_cupy()
    except BackendUnavailable as error:
        return str(error)
    if not torch.cuda.is_available():
        return "backend='cupy' needs a CUDA GPU; torch.cuda.is_available() is False"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # driver missing or too old
        return f"backend='cupy': CuPy cannot reach the GPU ({error})"
    if count < 1:
        return "backend='cupy' needs a CUDA GPU; CuPy sees none"
    return None


def is_available() -> bool:
    """Whether the CuPy backend can run (CuPy installed, a GPU visible to it and to torch)."""
    return unavailable_reason() is None


@lru_cache(maxsize=16)
def _module(device_index: int):
    cupy = _import_cupy()
    with cupy.cuda.Device(device_index):
        return cupy.RawModule(code=sources.full_source(), options=("--std=c++17",))


def pack_arguments(ops: ProductOperands, args: KernelArguments) -> tuple:
    """The kernel's parameters as NumPy scalars of the C types: pointers (``data_ptr``, which includes
    each view's storage offset) as uint64, strides and sizes as int64, the conjugation flags as int32."""
    import numpy as np

    scalars = args.scalars()
    return (
        np.uint64(ops.a.data_ptr()),
        *map(np.int64, scalars[0:5]),
        np.uint64(ops.b.data_ptr()),
        *map(np.int64, scalars[5:10]),
        np.uint64(ops.c.data_ptr()),
        *map(np.int64, scalars[10:20]),
        *map(np.int32, scalars[20:22]),
    )


def launch(ops: ProductOperands, gauss: bool) -> torch.Tensor:
    """Compute ``ops.out`` with the kernel on the operands' GPU; returns ``ops.out``."""
    global _launches
    if ops.a.device.type != "cuda":
        raise BackendUnavailable(f"backend='cupy' runs on CUDA tensors, got tensors on {ops.a.device}")
    reason = unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(reason)
    cupy = _import_cupy()
    args = kernel_arguments(ops, gauss)
    device = ops.a.device
    kernel_args = pack_arguments(ops, args)
    with cupy.cuda.Device(device.index):
        kernel = _module(device.index).get_function(args.name)  # loaded into this device's context
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream, device.index)
        with stream:
            kernel((args.grid,), (args.block,), kernel_args)
    with _lock:
        _launches += 1
    return ops.out
