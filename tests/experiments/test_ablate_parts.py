"""freqnets ablate's parts against independent references: multiply-adds, saved bytes, peak memory,
applied compression, data loading, the DCT input pipeline, and the DCT-input runs."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import freqnets
from freqnets.experiments.ablate import build_config, run_ablation
from freqnets.experiments.ablate.dct_input import _hflip_planes, stack_planes
from freqnets.experiments.ablate.measure import (
    PeakMemory,
    applied_compression,
    dense_macs,
    executed_macs,
    saved_for_backward_bytes,
)
from freqnets.experiments.ablate.models import build_model
from freqnets.experiments.data import DEFAULT_DATA, augment, load_split


def test_multiply_adds_match_the_textbook_count():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2),
        nn.Conv2d(8, 4, 1), nn.Flatten(), nn.Linear(4 * 5 * 5, 7),
    )  # fmt: skip
    x = torch.randn(1, 3, 10, 10)
    expected = 10 * 10 * 8 * 3 * 9 + 5 * 5 * 8 * 4 * 9 + 5 * 5 * 4 * 8 + 100 * 7
    assert dense_macs(model, x) == expected == executed_macs(model, x)
    svd = freqnets.convert_model(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False)), "svd", 0.5)
    rank = svd[0].rank
    # 3x1 convolution to `rank` channels on the padded 10-wide input (8x10 outputs), then 1x3 to 6 channels
    # (8x8 outputs): the executed cost; the dense count stays 6*4*9 per output pixel.
    assert executed_macs(svd, torch.randn(1, 4, 8, 8)) == 8 * 10 * rank * 4 * 3 + 8 * 8 * 6 * rank * 3
    assert dense_macs(svd, torch.randn(1, 4, 8, 8)) == 8 * 8 * 6 * 4 * 9


def test_saved_bytes_count_each_storage_once():
    conv = nn.Conv2d(4, 5, 3, bias=False)
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    # conv2d saves its input and weight; x.view(...) shares x's storage and is not counted twice.
    assert saved_for_backward_bytes(lambda: conv(x.view(2, 4, 9, 9)).sum()) == (2 * 4 * 81 + 5 * 4 * 9) * 4


def test_peak_memory_sees_a_large_allocation():
    # 256 MiB touched, at least 200 MiB seen: the resident set can also shrink meanwhile (the kernel drops clean
    # file-backed pages of a busy machine), which a 64 MiB block with a 60 MiB bar once failed under load
    peak = PeakMemory(torch.device("cpu")).start()
    block = np.ones(256 * 2**20 // 8)
    assert block.sum() > 0
    assert peak.growth_bytes() >= 200 * 2**20 or peak.method != "vmhwm-reset"
    del block


def test_applied_compression_reports_the_live_rates():
    model = build_model("small_cnn", 10, 3, {"width": 4})
    model = freqnets.convert_model(model, "svd", 0.5)
    rows = applied_compression(model)
    assert len(rows) == 5 and all(r["converted"] for r in rows)
    for row in rows:
        layer = model.get_submodule(row["name"])
        assert row["compress_rate"] == pytest.approx(1 - layer.rank / layer.full_rank)
    winograd = applied_compression(
        freqnets.convert_model(build_model("cifar_resnet", 10, 3, {"width": 4}), "winograd", 0.5)
    )
    skipped = [r for r in winograd if not r["converted"]]
    assert skipped and all(r["compress_rate"] == 0.0 and r["note"] for r in skipped)


def test_builtin_and_timm_models():
    x = torch.randn(2, 3, 32, 32)
    assert build_model("cifar_resnet", 10, 3, {"width": 4})(x).shape == (2, 10)
    resnet = build_model("resnet18", 7, 3, {"cifar_stem": True})
    assert resnet(x).shape == (2, 7) and resnet.conv1.stride == (1, 1)
    with pytest.raises(ValueError, match="timm model name"):
        build_model("no_such_net", 10)
    with pytest.raises(ValueError, match="do not fit"):
        build_model("small_cnn", 10, 3, {"depth": 3})


def _write_zip(path, splits):
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for split, counts in splits.items():
            for cls, count in counts.items():
                for i in range(count):
                    image = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
                    with archive.open(f"root/{split}/{cls}/{i:03d}.png", "w") as handle:
                        image.save(handle, format="PNG")


def test_loaders_agree_across_layouts(tmp_path):
    _write_zip(tmp_path / "set.zip", {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 1}})
    from_zip = load_split(tmp_path / "set.zip", "train", per_class=2, size=16)
    assert from_zip.classes == ["cat", "dog"] and from_zip.labels.tolist() == [0, 0, 1, 1]
    with zipfile.ZipFile(tmp_path / "set.zip") as archive:
        archive.extractall(tmp_path / "tree")
    from_tree = load_split(tmp_path / "tree" / "root", "train", per_class=2, size=16)
    assert torch.equal(from_zip.images, from_tree.images) and torch.equal(from_zip.labels, from_tree.labels)
    with Image.open(tmp_path / "tree/root/train/dog/001.png") as image:
        assert torch.equal(from_zip.images[3], torch.from_numpy(np.array(image)).permute(2, 0, 1))
    # An ImageFolder with no split: every fifth file of a class (name order) is the test set.
    _write_zip(tmp_path / "flat.zip", {"all": {"cat": 6, "dog": 5}})
    with zipfile.ZipFile(tmp_path / "flat.zip") as archive:
        archive.extractall(tmp_path / "flat")
    folder = tmp_path / "flat" / "root" / "all"
    held_out, kept = load_split(folder, "test", size=16), load_split(folder, "train", size=16)
    assert held_out.labels.tolist() == [0, 1] and kept.labels.tolist() == [0] * 5 + [1] * 4
    with Image.open(folder / "dog" / "004.png") as image:
        assert torch.equal(held_out.images[1], torch.from_numpy(np.array(image)).permute(2, 0, 1))
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path / "missing", "train")
    with pytest.raises(ValueError, match="split"):
        load_split(tmp_path / "set.zip", "val")


def test_augment_crops_and_flips_within_the_padding():
    x = torch.rand(32, 1, 6, 6, generator=torch.Generator().manual_seed(0))  # every window distinct
    out = augment(x, torch.Generator().manual_seed(1), padding=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    seen = set()
    for i in range(len(x)):
        draws = [(dy, dx, flip) for dy in range(5) for dx in range(5) for flip in (False, True)
                 if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 6].flip(-1) if flip else
                                padded[i, :, dy : dy + 6, dx : dx + 6])]  # fmt: skip
        assert len(draws) == 1  # a window of the padded image, flipped or not
        seen.add(draws[0])
    # the draws vary: several offsets, both with and without a flip (an identity would give one)
    assert len({(dy, dx) for dy, dx, _ in seen}) > 5 and {flip for *_, flip in seen} == {False, True}


def test_dct_stacking_and_flips_match_freqnets_jpeg():
    from freqnets.jpeg import DCTCollate, augment, encode_dct

    torch.manual_seed(0)
    samples = [(encode_dct(torch.rand(3, 32, 32)), i) for i in range(3)]
    planes = DCTCollate(layout="planes")([(c.to_order("zigzag"), i) for c, i in samples])
    stacked, _ = DCTCollate(layout="stacked")([(c.to_order("zigzag"), i) for c, i in samples])
    assert torch.equal(stack_planes(planes.y, planes.cbcr), stacked)
    flipped = DCTCollate(layout="planes")([(augment.hflip(c).to_order("zigzag"), i) for c, i in samples])
    torch.testing.assert_close(_hflip_planes(planes.y), flipped.y)
    torch.testing.assert_close(_hflip_planes(planes.cbcr), flipped.cbcr)


def test_dct_input_runs_next_to_rgb(tmp_path):
    config = build_config("tiny", overrides={
        "out": str(tmp_path), "inputs": ["rgb", "dct"], "dct_model": "small_cnn", "dct_model_args": {"width": 4},
        "rates": [0.5], "data": str(DEFAULT_DATA),
    })  # fmt: skip
    rows = run_ablation(config, plots=False)["rows"]
    dct_rows = [r for r in rows if r["input"] == "dct"]
    assert [r["variant"] for r in dct_rows] == ["conv", "fixed"]
    # small_cnn on 192 coefficient channels at the 4x4 luma block grid of 32x32 images.
    convs = 4 * 4 * 9 * (4 * 192 + 4 * 4) + 2 * 2 * 9 * (8 * 4 + 8 * 8) + 1 * 1 * 9 * 16 * 8
    assert dct_rows[0]["dense_macs"] == convs + 16 * 10
    conv_weights = 9 * (4 * 192 + 4 * 4 + 8 * 4 + 8 * 8 + 16 * 8)
    assert dct_rows[0]["params"] == conv_weights + 2 * (4 + 4 + 8 + 8 + 16) + 16 * 10 + 10
    assert dct_rows[1]["applied_rate"] == 0.5 and dct_rows[1]["converted_layers"] == 5


def test_cached_builds_once_then_loads(tmp_path):
    from freqnets.experiments import storage

    calls = []

    def build():
        calls.append(1)
        return {"x": torch.arange(5), "names": ["a", "b"]}

    first = storage.cached(tmp_path / "cache", "train", "stamp-1", build)
    second = storage.cached(tmp_path / "cache", "train", "stamp-1", build)
    other = storage.cached(tmp_path / "cache", "train", "stamp-2", build)  # another stamp: built again
    assert len(calls) == 2 and torch.equal(second["x"], first["x"]) and second["names"] == ["a", "b"]
    assert torch.equal(other["x"], first["x"])
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir()) == ["train", "train"]
