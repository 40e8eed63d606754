"""The convolution benchmark's bookkeeping on tiny cases (timings themselves are not tested)."""

from __future__ import annotations

import torch

from freqnets.experiments import bench_conv


def test_runs_measures_and_reports(monkeypatch):
    tiny = {
        "tiny 2D": ((2, 4, 12, 12), 2, dict(in_channels=4, out_channels=4, kernel_size=3, padding=1, bias=False)),
        "tiny 1D": ((2, 3, 200), 1, dict(in_channels=3, out_channels=3, kernel_size=9, padding=4, bias=False)),
    }
    monkeypatch.setattr(bench_conv, "CASES", tiny)
    results = bench_conv.run([0.0, 0.5], "cpu", min_run_time=0.01, quick=False, peak=False, domains=["fft", "svd"])
    assert [r.implementation for r in results] == [
        "Conv2d", "fft 0", "fft 0.5", "svd 0", "svd 0.5", "Conv1d", "fft 0", "fft 0.5"
    ]  # fmt: skip
    by_name = {(r.layer, r.implementation): r for r in results}
    # nn.Conv2d saves its input and weight: 2*4*12*12 + 4*4*3*3 floats.
    assert by_name[("tiny 2D", "Conv2d")].saved_bytes == (2 * 4 * 12 * 12 + 4 * 4 * 9) * 4
    for layer in tiny:
        assert by_name[(layer, "fft 0.5")].saved_bytes <= 0.6 * by_name[(layer, "fft 0")].saved_bytes
    table = bench_conv.report(results, "cpu")
    assert table.count("\n| tiny") == 8 and "| tiny 2D | Conv2d |" in table and "n/a" in table


def test_build_case_copies_the_reference_weights():
    module, x = bench_conv.build_case(next(iter(bench_conv.CASES)), "converted", 0.0)
    reference, _ = bench_conv.build_case(next(iter(bench_conv.CASES)), "reference", 0.0)
    assert torch.equal(module.weight, reference.weight) and x.requires_grad
