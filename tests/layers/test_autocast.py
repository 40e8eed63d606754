"""Mixed precision for every domain layer and model family: forward and backward under CPU autocast.

Reference: the same layer run in float32 without autocast. Under autocast a layer's output takes the
autocast dtype (as ``F.conv2d`` does) and stays within that dtype's rounding of the float32 result;
parameter gradients stay float32 and close to the float32 ones.
"""

from __future__ import annotations

import pytest
import timm
import torch

import freqnets  # noqa: F401  (registers the models)
from freqnets.layers import BandLimitedConv2d, DCTConv2d, SVDConv2d, WinogradConv2d
from freqnets.models import example_input

DTYPES = [torch.bfloat16, torch.float16]
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 5e-3}

LAYERS = {
    "fft": lambda: BandLimitedConv2d(6, 8, 3, padding=1, compress_rate=0.5),
    "dct": lambda: DCTConv2d(6, 8, 3, padding=1, compress_rate=0.5),
    "svd": lambda: SVDConv2d(6, 8, 3, padding=1, compress_rate=0.5),
    "winograd": lambda: WinogradConv2d(6, 8, 3, padding=1, compress_rate=0.5),
}


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("domain", sorted(LAYERS))
def test_domain_layer_under_autocast_matches_float32(domain: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    layer = LAYERS[domain]()
    x = torch.randn(2, 6, 12, 12)
    y32 = layer(x)
    y32.square().sum().backward()
    grads32 = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    with torch.autocast("cpu", dtype):
        y = layer(x)
    assert y.dtype == dtype
    y.float().square().sum().backward()
    assert _relative(y, y32) < TOLERANCE[dtype]
    for name, param in layer.named_parameters():
        assert param.grad.dtype == torch.float32, name
        assert _relative(param.grad, grads32[name]) < 3 * TOLERANCE[dtype], name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "name", ["dct_resnet18_cifar", "dct_mg_resnet18_cifar", "oct_resnet18_cifar", "dct_conv_resnet18_cifar"]
)
def test_model_family_trains_under_autocast(name: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).train()
    inputs = example_input(model, 2)
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    with torch.autocast("cpu", dtype):
        logits = model(*inputs)
    assert logits.dtype == dtype and logits.shape == (2, 10)
    torch.nn.functional.cross_entropy(logits.float(), torch.tensor([1, 2])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
