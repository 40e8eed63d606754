"""``freqnets models``: the timm models freqnets registers, with parameters and multiply-adds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import timm
import torch

from .measure import count_parameters, dense_macs, executed_macs


@dataclass
class ModelInfo:
    name: str
    input_size: tuple[int, ...]
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


def _examples(input_size: tuple[int, ...], device: str):
    """Inputs to try, batch 1: the cfg's tensor, then the Y/CbCr pair of the DCT-input contract
    (``y`` with a third of the channels at the cfg grid, ``cbcr`` with the rest at half resolution)."""
    c, h, w = input_size
    yield torch.randn(1, c, h, w, device=device)
    if c % 3 == 0:
        half = (math.ceil(h / 2), math.ceil(w / 2))
        yield (torch.randn(1, c // 3, h, w, device=device), torch.randn(1, 2 * c // 3, *half, device=device))


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
    input_size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    params = count_parameters(model)
    errors = []
    for example in _examples(input_size, device):
        module = _wrapped(model, example)
        try:
            return ModelInfo(name, input_size, params, dense_macs(module, example), executed_macs(module, example))
        except (RuntimeError, ValueError, TypeError, NotImplementedError) as error:
            errors.append(str(error).splitlines()[0])
    return ModelInfo(name, input_size, params, None, None, f"no forward at the cfg input size: {errors[0]}")


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
        "| model | input (C, H, W) | params (M) | dense GMACs | executed GMACs | note |",
        "|---|---|---|---|---|---|",
    ]
    for name in freqnets_model_names(contains):
        info = describe(name)
        dense = "n/a" if info.dense_macs is None else f"{info.dense_macs / 1e9:.3f}"
        run = "n/a" if info.executed_macs is None else f"{info.executed_macs / 1e9:.3f}"
        lines.append(
            f"| {name} | {'x'.join(map(str, info.input_size))} | {info.params / 1e6:.2f} | {dense} | {run} "
            f"| {info.note} |"
        )
    return "\n".join(lines)
