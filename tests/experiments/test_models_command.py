"""``freqnets models`` describes each model's input truthfully: the shapes it prints are the ones the model runs on."""

from __future__ import annotations

import re

import pytest
import timm
import torch

from freqnets.experiments.ablate.catalog import catalog_table, describe


def _tensors(description: str) -> list[torch.Tensor]:
    """Random tensors (batch 1) of the ``CxHxW`` shapes named in a printed input description."""
    shapes = re.findall(r"(\d+)x(\d+)x(\d+)", description)
    assert shapes, description
    return [torch.randn(1, *map(int, shape)) * 20 for shape in shapes]


@pytest.mark.parametrize(
    "name, tensors",
    [("dct_resnet18_late_cifar", 2), ("dct_resnet18_cifar", 1), ("dct_conv_resnet18_cifar", 1)],
)
def test_printed_input_runs_the_model(name, tensors):
    if name not in timm.list_models():
        pytest.skip(f"{name} not registered")
    info = describe(name)
    inputs = _tensors(info.input)
    assert len(inputs) == tensors, info.input
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    with torch.no_grad():
        logits = model(*inputs)
    assert logits.shape == (1, model.num_classes)
    assert info.dense_macs is not None and info.executed_macs is not None, info.note
    if tensors == 2:
        # the cfg's stacked 192-channel tensor is not what a two-plane model takes
        cfg_channels = model.pretrained_cfg["input_size"][0]
        assert info.input.startswith("dct planes: ") and f"{cfg_channels}x" not in info.input
        with pytest.raises((RuntimeError, TypeError)):
            model(torch.randn(1, *model.pretrained_cfg["input_size"]))


def test_table_rows_carry_the_description():
    table = catalog_table("dct_resnet18_late_cifar")
    row = next(line for line in table.splitlines() if line.startswith("| dct_resnet18_late_cifar "))
    assert describe("dct_resnet18_late_cifar").input in row
