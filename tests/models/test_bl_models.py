"""Every registered converted model builds through timm, runs, and has a consistent cfg."""

from __future__ import annotations

import pytest
import timm
import torch

import freqnets  # noqa: F401  (registers the models)
from freqnets.layers import BandLimitedConv2d, DCTConv2d, SVDConv2d, WinogradConv2d

BAND_LIMITED = [
    "bl_resnet18",
    "bl_resnet50",
    "bl_densenet121",
    "bl_resnet18_cifar",
    "bl_resnet50_cifar",
    "bl_densenet121_cifar",
]
OTHER_DOMAINS = [f"{p}_resnet18{s}" for p in ("svd", "wino", "dct_conv") for s in ("", "_cifar")]
MODELS = BAND_LIMITED + OTHER_DOMAINS
LAYER_OF = {"bl": BandLimitedConv2d, "svd": SVDConv2d, "wino": WinogradConv2d, "dct": DCTConv2d}


def test_all_variants_are_registered():
    assert sorted(timm.list_models("bl_*")) == sorted(BAND_LIMITED)
    assert sorted(timm.list_models(["svd_*", "wino_*", "dct_conv_*"])) == sorted(OTHER_DOMAINS)


@pytest.mark.parametrize("name", MODELS)
def test_builds_runs_and_matches_its_cfg(name):
    model = timm.create_model(name, num_classes=7, compress_rate=0.5)
    cfg = model.pretrained_cfg
    assert cfg["num_classes"] in (10, 1000) and model.num_classes == 7
    assert isinstance(model.get_submodule(cfg["first_conv"]), (torch.nn.Conv2d, SVDConv2d))
    assert model.get_classifier() is model.get_submodule(cfg["classifier"])
    convs = [m for m in model.modules() if isinstance(m, LAYER_OF[name.split("_")[0]])]
    assert convs and all(abs(m.compress_rate - 0.5) < 0.1 for m in convs)  # SVD rounds to whole ranks
    # The cfg's pool size is what forward_features gives at the cfg's input size.
    size = cfg["input_size"][1] if name.endswith("_cifar") else 64
    x = torch.randn(2, 3, size, size)
    features = model.forward_features(x)
    assert features.shape[1] == model.num_features
    if name.endswith("_cifar"):
        assert tuple(features.shape[-2:]) == cfg["pool_size"]
    else:
        assert tuple(features.shape[-2:]) == (2, 2)  # 64 / 32, as 224 / 32 = 7 = pool_size
        assert cfg["pool_size"] == (7, 7) and cfg["input_size"] == (3, 224, 224)
    logits = model.forward_head(features)
    assert logits.shape == (2, 7)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)


def test_issue_example_and_pretrained_error():
    model = timm.create_model("bl_resnet18", num_classes=10, compress_rate=0.5)
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)  # batch size 1 works
    # the CIFAR stem has no weights anywhere (the ImageNet variants load timm's: tests/models/test_pretrained.py)
    with pytest.raises(ValueError, match="no pretrained weights exist for 'bl_resnet18_cifar'"):
        timm.create_model("bl_resnet18_cifar", pretrained=True)


def test_rate_zero_cifar_resnet_equals_its_plain_twin():
    torch.manual_seed(0)
    banded = timm.create_model("bl_resnet18_cifar", compress_rate=0.0).eval()
    plain = timm.create_model("resnet18", num_classes=10).eval()
    plain.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    plain.maxpool = torch.nn.Identity()
    assert {k.rpartition(".")[2] for k in plain.load_state_dict(banded.state_dict(), strict=False).unexpected_keys} == {
        "_extra_state"
    }  # the layers' rates
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(banded(x), plain(x), rtol=1e-4, atol=1e-4)
