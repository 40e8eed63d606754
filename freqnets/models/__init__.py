"""Network families, one per file, registered with timm when this package is imported.

* ``bl_resnet18``, ``bl_resnet50``, ``bl_densenet121`` and their ``_cifar`` variants
  (3x3 stem, no max-pool, 32x32 inputs): band-limited FFT convolutions throughout.
* ``dct_resnet18``, ``dct_resnet50`` (+ ``_late``, ``_cifar``): ResNets on JPEG DCT coefficients.
* ``oct_resnet18``, ``oct_resnet50`` (+ ``_cifar``): octave convolutions; ``mg_resnet18`` (+ ``_cifar``):
  multigrid; ``dct_mg_resnet18`` (+ ``_cifar``): DCT luma and chroma paths as multigrid grids.

Every file added here must be imported below so that ``import freqnets``
registers its models.
"""

from . import bl_densenet, bl_resnet, dct_mg_resnet, dct_resnet, domain_resnet, mg_resnet, oct_resnet

__all__ = ["bl_densenet", "bl_resnet", "dct_mg_resnet", "dct_resnet", "domain_resnet", "mg_resnet", "oct_resnet"]
