"""``freqnets models``: the timm models freqnets registers, with parameters and multiply-adds."""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch

from ...models import example_input, input_spec
from .measure import count_parameters, dense_macs, executed_macs


@dataclass
class ModelInfo:
    """One row of ``freqnets models``; ``input`` is :func:`freqnets.models.input_spec` as text
    (``3x32x32`` for images, ``dct planes: y 64x4x4 + cbcr 128x2x2`` for two-plane DCT models)."""

    name: str
    input: str
    params: int
    dense_macs: int | None
    executed_macs: int | None
    note: str = ""


def freqnets_model_names(contains: str = "") -> list[str]:
    """Names of the timm models whose factory lives in ``freqnets``, sorted."""
    names = []
    for name in timm.list_models():
        if timm.models.model_entrypoint(name).__module__.startswith("freqnets") and contains in name:
            names.append(name)
    return names


def _wrapped(model: torch.nn.Module, example):
    if isinstance(example, tuple):

        class Pair(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = model

            def forward(self, pair):
                return self.inner(*pair)

        return Pair()
    return model


def _measure(name: str, device: str) -> ModelInfo:
    torch.manual_seed(0)
    with torch.device(device):
        model = timm.create_model(name, pretrained=False)
    described = str(input_spec(model))
    params = count_parameters(model)
    example = example_input(model, device=device)
    module = _wrapped(model, example)
    try:
        return ModelInfo(name, described, params, dense_macs(module, example), executed_macs(module, example))
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as error:
        note = f"no forward at the cfg input size: {str(error).splitlines()[0]}"
        return ModelInfo(name, described, params, None, None, note)


def describe(name: str) -> ModelInfo:
    """Parameters and multiply-adds of ``name`` at its cfg's default input size, batch 1.

    Counted on the ``meta`` device (shapes only, no arithmetic: a second per model) when the
    model supports it, else on the CPU.
    """
    try:
        info = _measure(name, "meta")
        if info.dense_macs is not None:
            return info
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        pass
    return _measure(name, "cpu")


def catalog_table(contains: str = "") -> str:
    """A markdown table of :func:`describe` for every freqnets model (name containing ``contains``)."""
    lines = [
        "freqnets models in timm (timm.create_model(name, ...)); multiply-adds for one image at the default size.",
        "dense GMACs: as if every convolution were dense; executed GMACs: matmuls and convolutions actually run "
        "(FFTs not counted).",
        "",
        "| model | input (C x H x W per tensor) | params (M) | dense GMACs | executed GMACs | note |",
        "|---|---|---|---|---|---|",
    ]
    for name in freqnets_model_names(contains):
        info = describe(name)
        dense = "n/a" if info.dense_macs is None else f"{info.dense_macs / 1e9:.3f}"
        run = "n/a" if info.executed_macs is None else f"{info.executed_macs / 1e9:.3f}"
        lines.append(
            f"| {name} | {info.input} | {info.params / 1e6:.2f} | {dense} | {run} "
            f"| {info.note} |"
        )
    return "\n".join(lines)
