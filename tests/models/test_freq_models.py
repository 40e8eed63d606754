"""Octave, multigrid and DCT-input models: build through timm, run forward and backward on their real
input type, and match their cfgs (input size, pool size, first conv, classifier, DCT statistics)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
from timm.models.resnet import BasicBlock

import freqnets  # noqa: F401  (registers the models)
from freqnets.models._dct_input import DCTNormalize
from freqnets.models.dct_resnet import DCTResNet
from freqnets.models.mg_resnet import MultigridResNet
from freqnets.models.oct_resnet import OctResNet

OCTAVE = ["oct_resnet18", "oct_resnet50", "oct_resnet18_cifar", "oct_resnet50_cifar"]
MULTIGRID = ["mg_resnet18", "mg_resnet18_cifar"]
DCT_EARLY = ["dct_resnet18", "dct_resnet50", "dct_resnet18_cifar"]
DCT_PLANES = [
    "dct_resnet18_late",
    "dct_resnet50_late",
    "dct_resnet18_late_cifar",
    "dct_mg_resnet18",
    "dct_mg_resnet18_cifar",
]
RGB_MODELS = OCTAVE + MULTIGRID
DCT_MODELS = DCT_EARLY + DCT_PLANES
ALL = RGB_MODELS + DCT_MODELS


def test_all_variants_are_registered():
    assert sorted(timm.list_models(["oct_*", "mg_*"])) == sorted(RGB_MODELS)
    assert sorted(timm.list_models(["dct_resnet*", "dct_mg_*"])) == sorted(DCT_MODELS)


def _small_input(name: str, model, batch: int = 2):
    """The model's real input type at a small size, and the feature grid it must give."""
    cfg = model.pretrained_cfg
    cifar = name.endswith("_cifar")
    if name in RGB_MODELS:
        size = 16 if cifar else 64  # 16 / 8 = 64 / 32 = 2, as 32 / 8 = 224 / 32 = pool_size
        return (torch.randn(batch, 3, size, size),), (2, 2)
    grid = cfg["input_size"][1] if cifar else 8  # luma blocks: 8 / 4 = 2, as 28 / 4 = 7 = pool_size
    out = (grid // 2,) * 2 if cifar else (2, 2)
    ky, kc = model.y_channels, model.c_channels
    if name in DCT_EARLY:
        return (torch.randn(batch, ky + 2 * kc, grid, grid) * 20,), out
    return (torch.randn(batch, ky, grid, grid) * 20, torch.randn(batch, 2 * kc, -(-grid // 2), -(-grid // 2))), out


def _first_convs(cfg) -> list[str]:
    first = cfg["first_conv"]
    return [first] if isinstance(first, str) else list(first)


@pytest.mark.parametrize("name", ALL)
def test_builds_runs_backward_and_matches_its_cfg(name):
    model = timm.create_model(name, num_classes=7)
    cfg = model.pretrained_cfg
    cifar = name.endswith("_cifar")
    assert cfg["num_classes"] == (10 if cifar else 1000) and model.num_classes == 7
    # Input size and pool size: the cfg's grid divided by the model's reduction is its pool size.
    reduction = (8 if cifar else 32) if name in RGB_MODELS else (2 if cifar else 4)
    assert tuple(s // reduction for s in cfg["input_size"][1:]) == cfg["pool_size"]
    assert cfg["input_size"][0] == (3 if name in RGB_MODELS else 192)
    inputs, grid = _small_input(name, model)
    features = model.forward_features(*inputs)
    assert features.shape == (2, model.num_features, *grid)
    logits = model.forward_head(features)
    assert logits.shape == (2, 7)
    logits.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.get_classifier() is model.get_submodule(cfg["classifier"])
    assert model.get_classifier().in_features == model.num_features
    # first_conv names the convolutions that read the input, with the input's channels.
    input_channels = sorted(t.shape[1] for t in inputs)
    convs = [model.get_submodule(n) for n in _first_convs(cfg)]
    assert all(isinstance(c, nn.Conv2d) for c in convs)
    if name.startswith("dct_resnet") and "late" in name:  # chroma enters with stage 3, beside the luma path
        assert convs[0].in_channels == inputs[0].shape[1]
        luma_features = 256 * (4 if "50" in name else 1)  # stage-3 width of ResNet-18 / -50
        assert convs[1].in_channels == luma_features + inputs[1].shape[1]
    elif name.startswith("dct_mg"):  # each path's first convolution reads both planes
        assert [c.in_channels for c in convs] == [sum(input_channels)] * 2
    else:
        assert sorted(c.in_channels for c in convs) == input_channels


@pytest.mark.parametrize(
    "name", ["oct_resnet18_cifar", "mg_resnet18_cifar", "dct_resnet18_cifar", "dct_mg_resnet18_cifar"]
)
def test_full_size_cfg_input_gives_pool_size(name):
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    if name in DCT_EARLY:
        inputs = (torch.randn(1, *cfg["input_size"]),)
    elif name in DCT_PLANES:
        h, w = cfg["input_size"][1:]
        inputs = (torch.randn(1, 64, h, w), torch.randn(1, 128, -(-h // 2), -(-w // 2)))
    else:
        inputs = (torch.randn(1, *cfg["input_size"]),)
    assert tuple(model.forward_features(*inputs).shape[-2:]) == cfg["pool_size"]


@pytest.mark.parametrize("name", ["dct_resnet18", "dct_resnet18_late", "dct_mg_resnet18"])
def test_imagenet_dct_models_at_their_28x28_grid(name):
    model = timm.create_model(name, y_channels=8, c_channels=4, num_classes=3).eval()
    if name in DCT_EARLY:
        inputs = (torch.randn(1, 16, 28, 28),)
    else:
        inputs = (torch.randn(1, 8, 28, 28), torch.randn(1, 8, 14, 14))
    assert tuple(model.forward_features(*inputs).shape[-2:]) == model.pretrained_cfg["pool_size"] == (7, 7)


@pytest.mark.parametrize("name", ["oct_resnet18_cifar", "mg_resnet18_cifar", "dct_resnet18_late_cifar"])
def test_reset_classifier(name):
    model = timm.create_model(name).eval()
    inputs, _ = _small_input(name, model, batch=1)
    model.reset_classifier(3)
    assert model.num_classes == 3 and model(*inputs).shape == (1, 3)
    assert model.get_classifier().out_features == 3
    model.reset_classifier(0)
    assert model(*inputs).shape == (1, model.num_features)
    assert torch.equal(model(*inputs), model.forward_head(model.forward_features(*inputs), pre_logits=True))


@pytest.mark.parametrize("name", ALL)
def test_pretrained_raises_a_clear_error(name):
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model(name, pretrained=True)


def test_late_and_multigrid_models_accept_every_planes_form():
    from collections import namedtuple

    Batch = namedtuple("Batch", "y cbcr labels")
    for name in ("dct_resnet18_late_cifar", "dct_mg_resnet18_cifar"):
        model = timm.create_model(name).eval()
        y, cbcr = torch.randn(2, 64, 4, 4), torch.randn(2, 128, 2, 2)
        expected = model(y, cbcr)
        assert torch.equal(model((y, cbcr)), expected)
        assert torch.equal(model(Batch(y, cbcr, torch.zeros(2))), expected)
        with pytest.raises(ValueError, match="4:2:0"):
            model(y, torch.randn(2, 128, 4, 4))
        with pytest.raises(ValueError, match="channels"):
            model(y[:, :16], cbcr)


def test_early_fusion_rejects_planes():
    model = timm.create_model("dct_resnet18_cifar")
    with pytest.raises(TypeError, match="stacked"):
        model(torch.randn(1, 64, 4, 4), torch.randn(1, 128, 2, 2))
    with pytest.raises(ValueError, match="192"):
        model(torch.randn(1, 64, 4, 4))


@pytest.mark.parametrize("name", ["dct_resnet18_cifar", "dct_resnet18_late_cifar", "dct_mg_resnet18_cifar"])
def test_frequency_selection_and_normalisation_match_the_cfg(name):
    model = timm.create_model(name, y_channels=10, c_channels=3)
    assert (model.y_channels, model.c_channels, model.in_chans) == (10, 3, 16)
    cfg = model.pretrained_cfg
    assert len(cfg["mean"]) == len(cfg["std"]) == 192 and min(cfg["std"]) >= 1.0
    # the lowest 10 luma and 3 + 3 chroma frequencies of the 3 x 64 zigzag-ordered statistics
    mean = [*cfg["mean"][:10], *cfg["mean"][64:67], *cfg["mean"][128:131]]
    std = [*cfg["std"][:10], *cfg["std"][64:67], *cfg["std"][128:131]]
    norms = [m for m in model.modules() if isinstance(m, DCTNormalize)]
    got_mean = torch.cat([m.mean.flatten() for m in norms])
    got_std = torch.cat([m.std.flatten() for m in norms])
    assert torch.equal(got_mean, torch.tensor(mean, dtype=torch.float32))
    assert torch.equal(got_std, torch.tensor(std, dtype=torch.float32))
    # in_chans alone selects k frequencies per plane; a mismatch is refused.
    assert timm.create_model(name, in_chans=48).y_channels == 16
    with pytest.raises(ValueError, match="in_chans"):
        timm.create_model(name, in_chans=50)
    with pytest.raises(ValueError, match="y_channels"):
        timm.create_model(name, y_channels=65)


@pytest.mark.parametrize("name", ["dct_resnet18_cifar", "dct_mg_resnet18_cifar"])
def test_normalize_input_false_equals_normalising_first(name):
    normalising = timm.create_model(name).eval()
    plain = timm.create_model(name, normalize_input=False).eval()
    plain.load_state_dict(normalising.state_dict(), strict=False)
    mean = torch.tensor(normalising.pretrained_cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(normalising.pretrained_cfg["std"]).view(1, -1, 1, 1)
    y, cb, cr = torch.randn(2, 64, 4, 4) * 30, torch.randn(2, 64, 2, 2) * 5, torch.randn(2, 64, 2, 2) * 5
    if name in DCT_EARLY:
        up = torch.cat([cb, cr], 1).repeat_interleave(2, -2).repeat_interleave(2, -1)
        x = torch.cat([y, up], 1)
        torch.testing.assert_close(plain((x - mean) / std), normalising(x), rtol=1e-5, atol=1e-5)
    else:
        cbcr = torch.cat([cb, cr], 1)
        expected = normalising(y, cbcr)
        got = plain((y - mean[:, :64]) / std[:, :64], (cbcr - mean[:, 64:]) / std[:, 64:])
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_octave_model_has_low_paths_and_merges_them():
    from freqnets.layers import OctConv2d

    model = timm.create_model("oct_resnet18_cifar", alpha=0.5)
    convs = [m for m in model.modules() if isinstance(m, OctConv2d)]
    assert convs[0].alpha_in == 0 and convs[0].alpha_out == 0.5
    assert any(c.alpha_in == 0.5 and c.alpha_out == 0 for c in convs)  # layer4 merges the paths
    assert sum(c.conv_ll is not None for c in convs) > 5
    with pytest.raises(ValueError, match="alpha"):
        timm.create_model("oct_resnet18_cifar", alpha=1.0)


def test_one_grid_multigrid_resnet_is_resnet18():
    """With one grid at full width every multigrid block is a plain basic block: ResNet-18's parameters."""
    from freqnets.models._converted import use_cifar_stem

    model = timm.create_model("mg_resnet18_cifar", num_grids=1, grid_widths=(1.0,))
    reference = timm.create_model("resnet18", num_classes=10)
    use_cifar_stem(reference, "conv1", "maxpool")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    shapes = sorted(tuple(p.shape) for p in model.parameters())
    assert shapes == sorted(tuple(p.shape) for p in reference.parameters())
    with pytest.raises(ValueError, match="grid_widths"):
        timm.create_model("mg_resnet18_cifar", num_grids=2, grid_widths=(1.0,))


@pytest.mark.parametrize("alpha", [0.25, 0.5])
def test_octave_resnet50_has_resnet50_parameter_count(alpha):
    """An octave convolution splits a plain one's weights into four blocks: the total stays the same."""
    model = timm.create_model("oct_resnet50", alpha=alpha)
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in timm.create_model("resnet50").parameters()
    )


def test_luma_only_dct_resnets():
    early = timm.create_model("dct_resnet18_cifar", y_channels=16, c_channels=0).eval()
    assert early(torch.randn(2, 16, 4, 4)).shape == (2, 10)
    late = timm.create_model("dct_resnet18_late_cifar", y_channels=16, c_channels=0).eval()
    assert late(torch.randn(2, 16, 4, 4), torch.randn(2, 0, 2, 2)).shape == (2, 10)
    with pytest.raises(ValueError, match="needs chroma"):
        timm.create_model("dct_mg_resnet18_cifar", c_channels=0)


@pytest.mark.parametrize("normalize_input", [True, False])
def test_bad_dct_statistics_and_stage_counts_raise_value_errors(normalize_input):
    with pytest.raises(ValueError, match="stats must be"):
        timm.create_model("dct_mg_resnet18_cifar", stats="mnist", normalize_input=normalize_input)
    with pytest.raises(ValueError, match="layers must be 3 positive ints"):
        timm.create_model("dct_mg_resnet18_cifar", layers=(2, 2))
    with pytest.raises(ValueError, match="strides must be 3"):
        timm.create_model("dct_mg_resnet18_cifar", strides=(1, 3, 2))


@pytest.mark.parametrize(
    ("cls", "args"),
    [
        (OctResNet, dict(layers=(2, 2, 2))),
        (MultigridResNet, dict(layers=(2, 0, 2, 2))),
        (DCTResNet, dict(block=BasicBlock, layers=(2, 2, 2, 2.5))),
    ],
)
def test_bad_stage_counts_raise_value_errors(cls, args):
    with pytest.raises(ValueError, match="layers must be 4 positive ints"):
        cls(**args)
