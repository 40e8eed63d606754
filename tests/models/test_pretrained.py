"""``pretrained=True``: the converted ResNets and DenseNet load timm's weights for the same architecture,
strictly, then convert them. Offline: timm's randomly initialised model is saved to a file and loaded
through ``pretrained_cfg_overlay=dict(file=...)``; the reference is timm's own model with those weights."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn

import freqnets  # noqa: F401  (registers the models)

SOURCE = {
    "bl_resnet18": "resnet18",
    "svd_resnet18": "resnet18",
    "wino_resnet18": "resnet18",
    "dct_conv_resnet18": "resnet18",
    "bl_resnet50": "resnet50",
    "bl_densenet121": "densenet121",
}
# minutes of FFT convolutions on a CPU; SVD and Winograd builds take 5-10 s each until their build speed is fixed
SLOW = {"bl_resnet50", "bl_densenet121", "svd_resnet18", "wino_resnet18"}
NAMES = [pytest.param(n, marks=pytest.mark.soak) if n in SLOW else n for n in SOURCE]


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory):
    """``{architecture: (timm model, path of its saved state_dict)}``, batch-norm statistics made non-trivial."""
    saved = {}
    for arch in sorted(set(SOURCE.values())):
        torch.manual_seed(0)
        reference = timm.create_model(arch).eval()
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.2, 0.2)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        path = tmp_path_factory.mktemp(arch) / "weights.pth"
        torch.save(reference.state_dict(), path)
        saved[arch] = reference, str(path)
    return saved


@pytest.mark.parametrize("name", NAMES)
def test_rate_zero_model_computes_what_timm_computes(name, timm_weights):
    reference, path = timm_weights[SOURCE[name]]
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path), compress_rate=0.0)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        want = reference.double().eval()(x)
        got = model.double().eval()(x)
    reference.float()
    # float64: exact up to the transforms' rounding (SVD factors: 5e-9 observed)
    torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_weights_load_unchanged_at_a_rate(name, timm_weights):
    reference, path = timm_weights[SOURCE[name]]
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=path), compress_rate=0.5)
    assert model.pretrained_cfg["compress_rate"] == 0.5
    loaded, source = model.state_dict(), reference.state_dict()
    shared = [k for k in source if k in loaded]
    assert all(torch.equal(loaded[k], source[k]) for k in shared)
    # What is not carried over by name is the SVD layers' filters, stored as factors: their product is the
    # filter at full rank, so only the discarded rank differs; everything else keeps its name and value.
    missing = [k for k in source if k not in loaded]
    if name.startswith("svd"):
        assert missing and all(k.endswith("conv1.weight") or k.endswith("conv2.weight") for k in missing)
    else:
        assert missing == []


def test_pretrained_with_other_class_count_and_features(timm_weights):
    reference, path = timm_weights["resnet18"]
    overlay = dict(file=path)
    model = timm.create_model("bl_resnet18", pretrained=True, pretrained_cfg_overlay=overlay, num_classes=10)
    assert model.fc.out_features == 10  # the classifier is new, the rest timm's
    assert torch.equal(model.layer4[1].bn2.weight, reference.layer4[1].bn2.weight)
    extractor = timm.create_model(
        "bl_resnet18", pretrained=True, pretrained_cfg_overlay=overlay, features_only=True, compress_rate=0.0
    ).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        _, want = reference.eval().forward_intermediates(x)
        got = extractor(x)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_the_cfg_points_at_timms_weights():
    for name, arch in SOURCE.items():
        cfg = timm.models.get_pretrained_cfg(name)
        source = timm.models.get_pretrained_cfg(arch)
        assert cfg.hf_hub_id == source.hf_hub_id and cfg.hf_hub_id.startswith(f"timm/{arch}.")
        assert (cfg.input_size, cfg.crop_pct, cfg.interpolation, cfg.mean) == (
            source.input_size,
            source.crop_pct,
            source.interpolation,
            source.mean,
        )
    tags = {"resnet18": "a1_in1k", "resnet50": "a1_in1k", "densenet121": "ra_in1k"}
    expected = {f"{name}.{tags[arch]}" for name, arch in SOURCE.items()}
    assert set(timm.list_pretrained(["bl_*", "svd_*", "wino_*", "dct_conv_*"])) == expected


def test_wrong_weights_and_cifar_stems_are_refused(timm_weights):
    _, resnet50_path = timm_weights["resnet50"]
    with pytest.raises(RuntimeError, match="state_dict"):  # strict loading: resnet50 weights in a resnet18
        timm.create_model("bl_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=resnet50_path))
    _, path = timm_weights["resnet18"]
    with pytest.raises(ValueError, match="no pretrained weights exist for 'bl_resnet18_cifar'"):
        timm.create_model("bl_resnet18_cifar", pretrained=True, pretrained_cfg_overlay=dict(file=path))
