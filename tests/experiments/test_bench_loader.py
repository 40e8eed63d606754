"""Bookkeeping of `freqnets bench loader` on a few bundled files (timings themselves are not tested)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from freqnets.experiments import bench_loader

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "cifar10-mini.zip"


@pytest.mark.skipif(not BUNDLED.exists(), reason="bundled data missing")
def test_pipelines_and_report():
    payloads = bench_loader.load_payloads(BUNDLED, 24, "train")
    assert len(payloads) == 24 and all(p[:2] == b"\xff\xd8" for p in payloads)
    dct, pil = bench_loader.DCTPipeline(False, payloads), bench_loader.PillowPipeline(False)
    x, labels = dct.collate([(dct.sample(p), 0) for p in payloads[:5]])
    assert x.shape == (5, 192, 4, 4) and labels.tolist() == [0] * 5
    # normalised with the statistics of these files: channel means near 0
    full, _ = dct.collate([(dct.sample(p), 0) for p in payloads])
    assert full.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    rgb, _ = pil.collate([(pil.sample(p), 0) for p in payloads[:5]])
    assert rgb.shape == (5, 3, 32, 32) and rgb.dtype == torch.float32
    source = bench_loader.Source("mini", payloads, False)
    threads = torch.get_num_threads()
    rows, notes = bench_loader.run([source], [0], 8, step=False)
    assert torch.get_num_threads() == threads and notes == []
    cores = os.cpu_count() or 1
    threaded = [f"DataLoader, 0 workers, batch 8, DCTReadCollate, {cores} threads"] if cores > 1 else []
    assert [r.mode for r in rows] == [
        "per image", "per image, DCTReadCollate", "DataLoader, 0 workers, batch 8",
        "DataLoader, 0 workers, batch 8, DCTReadCollate", *threaded,
    ]  # fmt: skip
    assert all(r.dct > 0 and r.pillow > 0 for r in rows)
    text = bench_loader.report(rows, notes)
    assert text.count("| mini |") == len(rows) and f"{rows[0].dct / rows[0].pillow:.2f}x" in text
    # reading in the collate gives the same batch, on one thread or several
    for threads in (1, 2):
        reader = bench_loader.DCTPipeline(False, payloads, in_collate=True, threads=threads)
        assert torch.equal(reader.collate([(reader.sample(p), 0) for p in payloads])[0], full)


@pytest.mark.skipif(not BUNDLED.exists(), reason="bundled data missing")
def test_imagenet_mode_adds_the_crop_variant_with_identical_batches():
    payloads = bench_loader.load_payloads(BUNDLED, 6, "train")
    full, crop = bench_loader.DCTPipeline(True, payloads), bench_loader.DCTPipeline(True, payloads, crop=True)
    a, _ = full.collate([(full.sample(p), 0) for p in payloads])
    b, _ = crop.collate([(crop.sample(p), 0) for p in payloads])
    assert a.shape == (6, 192, 28, 28) and torch.equal(a, b)
    planes = bench_loader.DCTPipeline(True, payloads, crop=True, layout="planes")
    y, cbcr, _ = planes.collate([(planes.sample(p), 0) for p in payloads])
    assert y.shape == (6, 64, 28, 28) and cbcr.shape == (6, 128, 14, 14)
    assert torch.equal(y, a[:, :64])  # the same values; stacked repeats each chroma block 2x2
    assert torch.equal(cbcr.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3), a[:, 64:])
    rows, _ = bench_loader.run([bench_loader.Source("in", payloads, True)], [0], 4, step=False)
    cores = os.cpu_count() or 1
    assert [r.mode for r in rows] == [
        "per image", "per image, read_dct crop", "per image, read_dct crop, planes layout",
        "per image, DCTReadCollate (crop)",
        "DataLoader, 0 workers, batch 4", "DataLoader, 0 workers, batch 4, read_dct crop",
        "DataLoader, 0 workers, batch 4, read_dct crop, planes layout",
        "DataLoader, 0 workers, batch 4, DCTReadCollate (crop)",
        *([f"DataLoader, 0 workers, batch 4, DCTReadCollate (crop), {cores} threads"] if cores > 1 else []),
    ]  # fmt: skip
    for threads in (1, 2):
        reader = bench_loader.DCTPipeline(True, payloads, crop=True, in_collate=True, threads=threads)
        assert torch.equal(reader.collate([(reader.sample(p), 0) for p in payloads])[0], b)


def test_sharing_strategy_is_restored():
    default = torch.multiprocessing.get_sharing_strategy()
    strategies = bench_loader._sharing_strategies()
    assert strategies[0] == default and set(strategies) == torch.multiprocessing.get_all_sharing_strategies()
    for strategy in strategies:
        with bench_loader._sharing_strategy(strategy):
            assert torch.multiprocessing.get_sharing_strategy() == strategy
        assert torch.multiprocessing.get_sharing_strategy() == default
    assert bench_loader._sharing_label(default) == "" and "file_system" in bench_loader._sharing_label("file_system")
