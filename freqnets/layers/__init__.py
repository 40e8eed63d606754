"""``nn.Module`` layers that compute in a transform domain.

Planned here (see the project's issues): band-limited FFT convolutions,
SVD-separable, Winograd and DCT-compressed convolutions, octave and multigrid
convolutions, perturbation channels, and ``convert_model``. Layers build on
:mod:`freqnets.transforms` and, for fast backends, :mod:`freqnets.kernels`.
"""

__all__: list[str] = []
