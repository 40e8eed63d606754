"""freqnets: convolutional networks that compute in transform domains (FFT, DCT, SVD, Winograd).

``import freqnets`` imports the transforms, layers and models (registering the
models with timm) and nothing heavy: no CuPy, SciPy or matplotlib. The JPEG
reader (``freqnets.jpeg``) and the experiments (``freqnets.experiments``) are
imported on first use, so ``freqnets.jpeg.read_dct`` works after a bare
``import freqnets`` without every user paying for the C extension and its codecs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from . import kernels, layers, models, transforms
from .layers import calibrate_rates, convert_model, get_compress_rates, set_compress_rates
from .transforms import available_domains, get_domain

__version__ = "0.1.0"

#: Subpackages imported on first attribute access (PEP 562), not by ``import freqnets``.
_LAZY_SUBPACKAGES = ("experiments", "jpeg")

__all__ = [
    "__version__",
    "available_domains",
    "calibrate_rates",
    "convert_model",
    "get_compress_rates",
    "get_domain",
    "jpeg",
    "kernels",
    "layers",
    "models",
    "set_compress_rates",
    "transforms",
]


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY_SUBPACKAGES:
        # import_module binds the subpackage as an attribute of this module, so this runs once per name.
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES))
