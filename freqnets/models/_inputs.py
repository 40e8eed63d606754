"""What a freqnets model takes as input, for the command line, examples and data pipelines.

timm's ``resolve_data_config`` / ``create_transform`` build RGB image pipelines; they cannot make
the JPEG DCT coefficients that the DCT-input models read (the cfg's ``input_size`` and ``mean``/``std``
describe the stacked coefficient tensor, 192 channels, not an image). For those models use

    >>> import timm, freqnets
    >>> from freqnets.jpeg import DCTCollate, read_dct
    >>> model = timm.create_model("dct_resnet18_late_cifar", y_channels=16, c_channels=8)
    >>> collate = DCTCollate(**freqnets.models.dct_data_config(model))   # layout, channels, normalisation
    >>> str(freqnets.models.input_spec(model))
    'dct planes: y 16x4x4 + cbcr 16x2x2'

and ``collate([(read_dct(path), label), ...])`` gives the model's input (``DCTBatch`` for two-plane
models, ``(x, labels)`` for stacked ones). The models never import the data layer; these functions
return plain values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ._dct_input import CIFAR10_DCT_MEAN, CIFAR10_DCT_STD, IMAGENET_DCT_MEAN, IMAGENET_DCT_STD, select_channels

__all__ = ["InputSpec", "dct_data_config", "example_input", "input_spec"]

_DCT_STATS = {"imagenet": (IMAGENET_DCT_MEAN, IMAGENET_DCT_STD), "cifar10": (CIFAR10_DCT_MEAN, CIFAR10_DCT_STD)}


@dataclass(frozen=True)
class InputSpec:
    """The input of a model at its cfg's size, batch dimension left out.

    Attributes:
        kind: ``"image"`` (RGB or ``in_chans`` planes) or ``"dct"`` (JPEG DCT coefficients).
        layout: ``None`` for images; the ``DCTCollate`` layout, ``"stacked"`` or ``"planes"``, for DCT models.
        shapes: ``(name, (C, H, W))`` per input tensor, in call order: ``("image", ...)``,
            ``("x", ...)`` (stacked) or ``("y", ...), ("cbcr", ...)`` (planes, chroma at half the grid).
    """

    kind: str
    layout: str | None
    shapes: tuple[tuple[str, tuple[int, int, int]], ...]

    def __str__(self) -> str:
        parts = " + ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in self.shapes)
        if self.kind == "image":
            return parts.removeprefix("image ")
        return f"dct {self.layout}: {parts}"


def _unwrap(model: nn.Module) -> nn.Module:
    # timm's features_only wrappers keep the model as .model (FeatureGetterNet)
    return model.model if not hasattr(model, "pretrained_cfg") and hasattr(model, "model") else model


def _is_dct(model: nn.Module) -> bool:
    return hasattr(model, "y_channels") and hasattr(model, "c_channels")


def input_spec(model: nn.Module) -> InputSpec:
    """The input ``model`` takes at its cfg's size (``model.pretrained_cfg["input_size"]``).

    For DCT-input models the channels are the model's own ``Ky`` and ``Kc`` (not the cfg's 192) and
    the grid is in 8x8 blocks (28x28 for a 224x224 image, 4x4 for CIFAR's 32x32).
    """
    model = _unwrap(model)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    channels, height, width = cfg.get("input_size", (3, 224, 224))
    if not _is_dct(model):
        first_conv = cfg.get("first_conv")
        if isinstance(first_conv, str):
            conv = model.get_submodule(first_conv)
            channels = getattr(conv, "in_channels", channels)
        return InputSpec("image", None, (("image", (channels, height, width)),))
    ky, kc = model.y_channels, model.c_channels
    if getattr(model, "fusion", "late") == "early":
        return InputSpec("dct", "stacked", (("x", (ky + 2 * kc, height, width)),))
    chroma = (2 * kc, math.ceil(height / 2), math.ceil(width / 2))
    return InputSpec("dct", "planes", (("y", (ky, height, width)), ("cbcr", chroma)))


def example_input(
    model: nn.Module, batch_size: int = 1, device: torch.device | str | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Random input of :func:`input_spec`'s shapes: one tensor, or ``(y, cbcr)`` for two-plane models
    (call ``model(*x)`` when it is a tuple). DCT coefficients are drawn at their typical scale (x20)."""
    spec = input_spec(model)
    scale = 1.0 if spec.kind == "image" else 20.0
    tensors = tuple(torch.randn(batch_size, *shape, device=device) * scale for _, shape in spec.shapes)
    return tensors[0] if len(tensors) == 1 else tensors


def dct_data_config(model: nn.Module) -> dict:
    """Arguments of ``freqnets.jpeg.DCTCollate`` that give ``model`` its input from ``read_dct`` results.

    Returns ``dict(layout, y_channels, c_channels, chroma="420", normalize)``: ``normalize`` is None when
    the model normalises its input itself (``normalize_input=True``, the default), else the model's
    DCT statistics for its channels, so that the coefficients are normalised exactly once.

    Raises:
        TypeError: ``model`` is not a DCT-input model (use timm's ``resolve_data_config`` for it).
    """
    model = _unwrap(model)
    if not _is_dct(model):
        raise TypeError(
            f"{type(model).__name__} takes images, not DCT coefficients: use timm.data.resolve_data_config "
            "and create_transform for it"
        )
    spec = input_spec(model)
    ky, kc = model.y_channels, model.c_channels
    normalize = None
    if not model.normalize_input:
        mean, std = _DCT_STATS[model.stats]
        normalize = (select_channels(mean, ky, kc), select_channels(std, ky, kc))
    return dict(layout=spec.layout, y_channels=ky, c_channels=kc, chroma="420", normalize=normalize)
