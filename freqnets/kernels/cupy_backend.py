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


#: Per-launch lookups done once: ``(device index, kernel name) -> cupy.cuda.Function`` (the kernel loaded
#: into that device's context) and ``(device index, stream pointer) -> cupy.cuda.ExternalStream``.
_functions: dict[tuple[int, str], object] = {}
_streams: dict[tuple[int, int], object] = {}
_MAX_STREAMS = 256  # torch's stream pools are bounded; user-made streams are not, so the map is cleared at this size


def current_stream_ptr(device_index: int) -> int:
    """The ``cudaStream_t`` of torch's current stream on the device, without building a ``torch.cuda.Stream``."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # torch's own fast accessor (inductor uses it)
    if raw is not None:
        return raw(device_index)
    return torch.cuda.current_stream(device_index).cuda_stream


def _function(cupy, device_index: int, name: str):
    key = (device_index, name)
    function = _functions.get(key)
    if function is None:
        with cupy.cuda.Device(device_index):
            function = _module(device_index).get_function(name).kernel  # loaded into this device's context
        _functions[key] = function
    return function


def _stream(cupy, device_index: int):
    ptr = current_stream_ptr(device_index)
    stream = _streams.get((device_index, ptr))
    if stream is None:
        if len(_streams) >= _MAX_STREAMS:
            _streams.clear()
        stream = _streams[device_index, ptr] = cupy.cuda.ExternalStream(ptr, device_index)
    return stream


def launch(ops: ProductOperands, gauss: bool) -> torch.Tensor:
    """Compute ``ops.out`` with the kernel on the operands' GPU; returns ``ops.out``."""
    if ops.a.device.type != "cuda":
        raise BackendUnavailable(f"backend='cupy' runs on CUDA tensors, got tensors on {ops.a.device}")
    reason = unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(reason)
    return _launch_on(ops.a.device.index, ops, gauss)


def _launch_on(device_index: int, ops: ProductOperands, gauss: bool) -> torch.Tensor:
    """:func:`launch` after its checks: kernel and stream from the per-device maps, the device switched only
    when it is not current (each step here is host time on every product)."""
    global _launches
    cupy = _import_cupy()
    args = kernel_arguments(ops, gauss)
    kernel_args = pack_arguments(ops, args)
    function = _function(cupy, device_index, args.name)
    stream = _stream(cupy, device_index)  # torch's current stream: ordered with the surrounding torch work
    if cupy.cuda.runtime.getDevice() == device_index:
        function((args.grid,), (args.block,), kernel_args, stream=stream)
    else:
        with cupy.cuda.Device(device_index):
            function((args.grid,), (args.block,), kernel_args, stream=stream)
    with _lock:
        _launches += 1
    return ops.out
