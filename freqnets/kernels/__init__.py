"""Optional fast backends (CuPy CUDA kernels) for the hot spots of the layers.

CuPy is imported lazily, only when a kernel backend is requested, so the
package works without it. The pure-PyTorch paths in :mod:`freqnets.transforms`
and :mod:`freqnets.layers` are the specification these kernels are tested
against.
"""

__all__: list[str] = []
