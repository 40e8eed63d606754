"""freqnets: convolutional networks that compute in transform domains (FFT, DCT, SVD, Winograd).

``import freqnets`` imports the transforms, layers and models (registering the
models with timm) and nothing heavy: no CuPy, SciPy or matplotlib.
"""

from . import kernels, layers, models, transforms
from .layers import calibrate_rates, convert_model
from .transforms import available_domains, get_domain

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "available_domains",
    "calibrate_rates",
    "convert_model",
    "get_domain",
    "kernels",
    "layers",
    "models",
    "transforms",
]
