"""timm's model contract, checked on every model freqnets registers (the ideas of timm's own
tests/test_models.py, written for these models): cfg fields, forward_intermediates against
forward_features, features_only against forward_intermediates and feature_info, drop_path_rate in
train and eval mode, classifier reset."""

from __future__ import annotations

import re

import pytest
import timm
import torch
import torch.nn as nn

import freqnets  # noqa: F401  (registers the models)

FAMILY_MODULES = ["bl_resnet", "bl_densenet", "domain_resnet", "dct_resnet", "oct_resnet", "mg_resnet", "dct_mg_resnet"]
ALL = sorted(timm.list_models(module=FAMILY_MODULES))
CONVERTED = [n for n in ALL if n.split("_")[0] in ("bl", "svd", "wino") or n.startswith("dct_conv")]
DCT_INPUT = [n for n in ALL if n.startswith(("dct_resnet", "dct_mg"))]
ARXIV_OR_URL = re.compile(r"^(arXiv:\d{4}\.\d{4,5}|https://\S+)$")


def test_every_registered_freqnets_model_is_checked():
    registered = [n for n in timm.list_models() if timm.models.model_entrypoint(n).__module__.startswith("freqnets")]
    assert sorted(registered) == ALL and len(ALL) == 26


def small_input(name: str, model: nn.Module, batch: int = 2):
    """The model's real input type, small: RGB 32x32 (CIFAR 16x16), or a DCT grid of 8x8 (CIFAR 4x4) blocks."""
    cifar = name.endswith("_cifar")
    if name not in DCT_INPUT:
        return torch.randn(batch, 3, 16 if cifar else 32, 16 if cifar else 32)
    grid = 4 if cifar else 8
    ky, kc = model.y_channels, model.c_channels
    if getattr(model, "fusion", None) == "early":
        return torch.randn(batch, ky + 2 * kc, grid, grid) * 20
    return torch.randn(batch, ky, grid, grid) * 20, torch.randn(batch, 2 * kc, grid // 2, grid // 2) * 20


def grid_of(x) -> tuple[int, int]:
    first = x[0] if isinstance(x, tuple) else x
    return tuple(first.shape[-2:])


def channels_of(x) -> int:
    return sum(t.shape[1] for t in x) if isinstance(x, tuple) else x.shape[1]


def randomize_norms(model: nn.Module) -> None:
    """Non-zero batch-norm scales: zero_init_last would make every residual branch (and its drop) vanish."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)


def check_cfg(name: str, model: nn.Module, x) -> None:
    cfg = model.pretrained_cfg
    assert cfg["num_classes"] == (10 if name.endswith("_cifar") else 1000)
    paper_ids = (cfg["paper_ids"],) if isinstance(cfg["paper_ids"], str) else cfg["paper_ids"]
    assert paper_ids and all(ARXIV_OR_URL.match(p) for p in paper_ids), paper_ids
    assert isinstance(cfg["paper_name"], str) and cfg["paper_name"]
    if name in CONVERTED:
        assert cfg["compress_rate"] == 0.5 and cfg["domain"] in ("fft", "svd", "winograd", "dct")
    # first_conv: the convolutions reading the input; classifier: the head.
    first = [cfg["first_conv"]] if isinstance(cfg["first_conv"], str) else list(cfg["first_conv"])
    convs = [model.get_submodule(n) for n in first]
    # an nn.Conv2d or a domain conv with its drop-in contract (SVDConv2d: weight is the factors' filter bank)
    assert all(isinstance(c.weight, torch.Tensor) and c.weight.dim() == 4 and c.in_channels for c in convs)
    if name not in DCT_INPUT:
        assert [c.in_channels for c in convs] == [3] == [cfg["input_size"][0]]
    assert model.get_classifier() is model.get_submodule(cfg["classifier"])
    assert len(cfg["mean"]) == len(cfg["std"]) == cfg["input_size"][0]
    # pool_size: the cfg's input grid over the last feature's reduction.
    reduction = model.feature_info[-1]["reduction"]
    assert tuple(s // reduction for s in cfg["input_size"][1:]) == tuple(cfg["pool_size"])


# The band-limited ResNet-50s and DenseNets take minutes on a CPU (FFT convolutions, many layers); the
# ImageNet-size SVD and Winograd ResNet-18s repeat their _cifar twins at 7x the pixels. All run under -m soak.
SLOW = {"bl_resnet50", "bl_resnet50_cifar", "bl_densenet121", "bl_densenet121_cifar", "svd_resnet18", "wino_resnet18"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.soak) if n in SLOW else n for n in ALL])
def test_timm_interface(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, drop_path_rate=0.5)
    x = small_input(name, model, batch=2)
    check_cfg(name, model, x)
    assert model.num_classes == 5
    randomize_norms(model)
    model.eval()
    with torch.no_grad():
        # forward_intermediates: one map per feature_info entry, the last stage's output = forward_features.
        final, maps = model.forward_intermediates(x)
        features = model.forward_features(x)
        torch.testing.assert_close(final, features, rtol=0, atol=0)
        assert len(maps) == len(model.feature_info)
        height, width = grid_of(x)
        for fmap, info in zip(maps, model.feature_info, strict=True):
            expected = (x[0] if isinstance(x, tuple) else x).shape[0], info["num_chs"]
            assert fmap.shape == (*expected, height // info["reduction"], width // info["reduction"]), info
        torch.testing.assert_close(maps[-1], features, rtol=0, atol=0)
        only = model.forward_intermediates(x, indices=[1], intermediates_only=True)
        torch.testing.assert_close(only[0], maps[1], rtol=0, atol=0)
        last, early = model.forward_intermediates(x, indices=[0, 1], stop_early=True)
        torch.testing.assert_close(last, maps[1], rtol=0, atol=0)  # stopped after stage 1
        assert len(early) == 2 and all(torch.equal(a, b) for a, b in zip(early, maps[:2], strict=True))
        logits = model(x)
        assert logits.shape == (2, 5)

        # drop_path_rate: nothing in eval mode (same as the model without it) ...
        plain = timm.create_model(name, num_classes=5)
        plain.load_state_dict(model.state_dict())  # drop path adds no state
        torch.testing.assert_close(plain.eval()(x), logits, rtol=1e-5, atol=1e-5)
        # ... in train mode a different draw of skipped blocks gives different outputs; without it, none.
        model.train(), plain.train()
        outputs = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            outputs.append((model(x), plain(x)))
        assert not torch.allclose(outputs[0][0], outputs[1][0])
        torch.testing.assert_close(outputs[0][1], outputs[1][1], rtol=1e-5, atol=1e-5)
        model.eval()

        # reset_classifier: new class count; 0 gives the pooled features.
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.num_classes == 3
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features) == (2, model.feature_info[-1]["num_chs"])

    # features_only: timm's wrapper, the same maps as forward_intermediates of the same weights.
    torch.manual_seed(0)
    extractor = timm.create_model(name, num_classes=5, features_only=True).eval()
    torch.manual_seed(0)
    twin = timm.create_model(name, num_classes=5)
    randomize_norms(twin)
    twin.eval()
    extractor.model.load_state_dict(twin.state_dict(), strict=False)
    with torch.no_grad():
        got = extractor(x)
        _, want = twin.forward_intermediates(x)
    assert extractor.feature_info.channels() == [i["num_chs"] for i in model.feature_info]
    assert extractor.feature_info.reduction() == [i["reduction"] for i in model.feature_info]
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # out_indices that stop early prune the later stages and the head.
    pruned = timm.create_model(name, features_only=True, out_indices=(0, 1)).eval()
    with torch.no_grad():
        assert [m.shape[1] for m in pruned(x)] == [i["num_chs"] for i in model.feature_info[:2]]
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in twin.parameters())


@pytest.mark.parametrize("name", ["oct_resnet18_cifar", "mg_resnet18_cifar", "dct_mg_resnet18_cifar"])
def test_drop_path_rate_is_checked(name):
    with pytest.raises(ValueError, match="drop_path_rate must be in"):
        timm.create_model(name, drop_path_rate=1.0)


def test_a_grid_block_drops_all_its_grids_together():
    """Stochastic depth of a multigrid block skips the block for a sample on every grid at once."""
    from freqnets.layers import MultigridBasicBlock

    torch.manual_seed(0)
    block = MultigridBasicBlock((4, 4), (4, 4), drop_path=0.5)
    randomize_norms(block)
    grids = [torch.randn(64, 4, 8, 8), torch.randn(64, 4, 4, 4)]
    block.train()
    torch.manual_seed(3)
    out = block(grids)
    # a sample whose branch was dropped is relu(shortcut) on both grids, or on neither
    skipped = [[torch.equal(out[g][b], torch.relu(grids[g][b])) for b in range(64)] for g in range(2)]
    assert skipped[0] == skipped[1] and 10 < sum(skipped[0]) < 54
