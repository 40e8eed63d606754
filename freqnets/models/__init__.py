"""Network families, one per file, registered with timm when this package is imported.

* ``bl_resnet18``, ``bl_resnet50``, ``bl_densenet121`` and their ``_cifar`` variants
  (3x3 stem, no max-pool, 32x32 inputs): band-limited FFT convolutions throughout.
* ``dct_resnet18``, ``dct_resnet50`` (+ ``_late``, ``_cifar``): ResNets on JPEG DCT coefficients.
* ``oct_resnet18``, ``oct_resnet50`` (+ ``_cifar``): octave convolutions; ``mg_resnet18`` (+ ``_cifar``):
  multigrid; ``dct_mg_resnet18`` (+ ``_cifar``): DCT luma and chroma paths as multigrid grids.

All follow timm's interface (``features_only``, ``forward_intermediates``, ``drop_path_rate``,
``reset_classifier``); the ImageNet ``bl_``, ``svd_``, ``wino_`` and ``dct_conv_`` models load timm's
weights with ``pretrained=True``. :func:`input_spec` says what a model takes, :func:`example_input`
makes one, and :func:`dct_data_config` gives ``freqnets.jpeg.DCTCollate`` the arguments that turn
``read_dct`` results into a DCT-input model's input. :func:`use_cifar_stem` gives any timm ResNet-like
model the CIFAR stem, and ``CIFAR10_MEAN``/``CIFAR10_STD`` are the image statistics the ``_cifar`` cfgs carry.

Every file added here must be imported below so that ``import freqnets``
registers its models.
"""

from . import bl_densenet, bl_resnet, dct_mg_resnet, dct_resnet, domain_resnet, mg_resnet, oct_resnet
from ._converted import CIFAR10_MEAN, CIFAR10_STD, use_cifar_stem
from ._inputs import InputSpec, dct_data_config, example_input, input_spec

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "InputSpec",
    "bl_densenet",
    "bl_resnet",
    "dct_data_config",
    "dct_mg_resnet",
    "dct_resnet",
    "domain_resnet",
    "example_input",
    "input_spec",
    "mg_resnet",
    "oct_resnet",
    "use_cifar_stem",
]
