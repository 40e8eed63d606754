"""Parameters, multiply-adds and input size of the octave, multigrid and DCT-input models vs their RGB ResNets.

    python scripts/model_costs.py

One image at each cfg's input size, on the model's real input type; multiply-adds of convolutions and
matrix products counted by ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2). ``freqnets models``
lists every registered model the same way; this script adds the RGB counterpart and the ratios.
"""

from __future__ import annotations

import math

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import freqnets  # noqa: F401  (registers the models)
from freqnets.models import use_cifar_stem

# (model, RGB counterpart); "<name>_cifar" counterparts are timm's ResNet with the 3x3 CIFAR stem.
PAIRS = [
    ("dct_resnet18", "resnet18"),
    ("dct_resnet18_late", "resnet18"),
    ("dct_mg_resnet18", "resnet18"),
    ("dct_resnet50", "resnet50"),
    ("dct_resnet50_late", "resnet50"),
    ("oct_resnet18", "resnet18"),
    ("oct_resnet50", "resnet50"),
    ("mg_resnet18", "resnet18"),
    ("dct_resnet18_cifar", "resnet18_cifar"),
    ("dct_resnet18_late_cifar", "resnet18_cifar"),
    ("dct_mg_resnet18_cifar", "resnet18_cifar"),
    ("oct_resnet18_cifar", "resnet18_cifar"),
    ("oct_resnet50_cifar", "resnet50_cifar"),
    ("mg_resnet18_cifar", "resnet18_cifar"),
]


def build(name: str) -> torch.nn.Module:
    if name.endswith("_cifar") and name.startswith("resnet"):
        model = timm.create_model(name.removesuffix("_cifar"), num_classes=10)
        use_cifar_stem(model, "conv1", "maxpool")
        model.pretrained_cfg = dict(model.pretrained_cfg, input_size=(3, 32, 32))
        return model
    return timm.create_model(name)


def example_inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """The model's real input type at its cfg size, batch 1 (DCT planes with 4:2:0 chroma)."""
    _, h, w = model.pretrained_cfg["input_size"]
    if hasattr(model, "y_channels"):
        ky, kc = model.y_channels, model.c_channels
        if getattr(model, "fusion", "planes") == "early":
            return (torch.randn(1, ky + 2 * kc, h, w),)
        return torch.randn(1, ky, h, w), torch.randn(1, 2 * kc, -(-h // 2), -(-w // 2))
    return (torch.randn(1, 3, h, w),)


def costs(name: str) -> tuple[int, int, int, str]:
    model = build(name).eval()
    inputs = example_inputs(model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    values = sum(math.prod(t.shape[1:]) for t in inputs)
    desc = " + ".join("x".join(map(str, t.shape[1:])) for t in inputs)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2, values, desc


def main() -> int:
    print("| model | input | params (M) | GMACs | vs RGB | params / RGB | GMACs / RGB | input values / RGB |")
    print("|---|---|---|---|---|---|---|---|")
    cache: dict[str, tuple[int, int, int, str]] = {}
    for name, rgb in PAIRS:
        p, m, v, desc = cache.setdefault(name, costs(name))
        rp, rm, rv, _ = cache.setdefault(rgb, costs(rgb))
        print(
            f"| {name} | {desc} | {p / 1e6:.2f} | {m / 1e9:.3f} | {rgb} ({rp / 1e6:.2f} M, {rm / 1e9:.3f} G) "
            f"| {p / rp:.2f} | {m / rm:.2f} | {v / rv:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
