"""Optional fast backends (CuPy CUDA kernels) for the hot spots of the layers.

CuPy is imported lazily, only when a kernel is launched or compiled, so the
package works without it. The pure-PyTorch paths in :mod:`freqnets.transforms`
and :mod:`freqnets.layers` are the specification these kernels are tested
against (docs/kernels.md says what is verified where).

* :func:`check_compile`: compile every kernel source with NVRTC (no GPU or driver needed).
* :func:`resource_usage`: registers, spills and shared memory per kernel, from ptxas.
* :func:`is_available` / :func:`unavailable_reason`: whether ``backend='cupy'`` can run here.
* :func:`launch_count`: kernels launched by this process.
"""

from .cupy_backend import BackendUnavailable, is_available, launch_count, unavailable_reason
from .sources import check_compile, kernel_names, resource_usage

__all__ = [
    "BackendUnavailable",
    "check_compile",
    "is_available",
    "kernel_names",
    "launch_count",
    "resource_usage",
    "unavailable_reason",
]
