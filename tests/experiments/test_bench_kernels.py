"""freqnets.experiments.bench_kernels (`freqnets bench kernels`) runs everywhere: on a machine without CuPy/GPU it
says so, skips those rows, and its ratios are those of the rows it measured."""

from __future__ import annotations

import pytest
import torch

from freqnets import kernels
from freqnets.experiments import bench_kernels


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.mark.skipif(kernels.is_available(), reason="checks the CPU-only behaviour")
def test_runs_without_a_gpu_and_says_what_it_skipped(capsys):
    threads = torch.get_num_threads()
    try:
        assert bench_kernels.main(["--batch", "1", "--quick", "--repeats", "1", "--no-model", "--threads", "1",
                                   "--rates", "0,0.5"]) == 0  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "CuPy rows skipped: backend='cupy'" in out and "cuDNN rows skipped" in out
    product = out.split("### Product over channels")[1].split("###")[0]
    rows = {(c[2], c[3]): c for c in map(_cells, product.splitlines()) if c[0] == "512x7"}
    assert float(rows[("torch", "0.50")][5]) > 0 and rows[("torch", "0.50")][7] == "1.00"  # ms / torch path
    assert rows[("cupy", "0.50")][5] == "-" and "CUDA" in rows[("cupy", "0.50")][-1]
    layer = out.split("### One 3x3 layer")[1].split("##")[0]
    rows = {(c[2], c[3]): c for c in map(_cells, layer.splitlines()) if c[0] == "512x7"}
    conv, half, zero = (float(rows[k][5]) for k in (("conv2d", "-"), ("bl_torch", "0.50"), ("bl_torch", "0.00")))
    assert rows[("bl_torch", "0.50")][7] == f"{half / conv:.2f}" and rows[("bl_torch", "0.50")][9] == f"{half / zero:.2f}"
    assert "needs" in rows[("bl_cupy", "0.50")][-1] or "CUDA" in rows[("bl_cupy", "0.50")][-1]


def test_bad_precision_is_refused():
    with pytest.raises(SystemExit):
        bench_kernels.main(["--precisions", "fp16", "--no-model"])


def test_a_graph_step_needs_cuda_tensors():
    model = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="CUDA graph needs CUDA tensors"):
        bench_kernels.training_step(model, torch.randn(2, 4), torch.tensor([0, 1]), "fp32", graph=True)


def test_graph_rows_are_compared_with_the_graph_baseline():
    def row(impl, rate, ms, peak):
        return {"part": "step", "shape": "cifar 32px", "precision": "fp32", "impl": impl, "rate": rate, "batch": 8,
                "ms": ms, "peak_mib": peak}  # fmt: skip

    rows = [row("cudnn", None, 10.0, 100.0), row("bl_torch", 0.0, 50.0, 300.0), row("bl_torch", 0.5, 40.0, 200.0),
            row("cudnn+graph", None, 5.0, 100.0), row("bl_torch+graph", 0.0, 20.0, 300.0),
            row("bl_torch+graph", 0.5, 12.0, 200.0)]  # fmt: skip
    table = {(c[2], c[3]): c for c in map(_cells, bench_kernels.report(rows).splitlines()) if c[0] == "cifar 32px"}
    assert table[("bl_torch", "0.50")][7] == "4.00"  # 40 / 10 (eager cuDNN)
    assert table[("bl_torch+graph", "0.50")][7] == "2.40"  # 12 / 5 (cuDNN in a graph), not 12 / 10
    assert table[("bl_torch+graph", "0.50")][9] == "0.60"  # 12 / 20 (rate 0 in a graph)
    found = {(t["target"], t["where"]): t for t in bench_kernels.targets(rows)}
    graph_vs_timm = found[("step time, rate 0.5 / timm resnet18", "cifar 32px fp32 bl_torch+graph")]
    assert graph_vs_timm["value"] == pytest.approx(2.4) and graph_vs_timm["met"] is False
    assert found[("step time, rate 0.5 / rate 0", "cifar 32px fp32 bl_torch+graph")]["met"] is True


@pytest.mark.parametrize("precision", bench_kernels.PRECISIONS)
def test_each_precision_holds_its_flags_through_forward_and_backward(precision):
    # TF32 must cover the backward GEMMs too (two thirds of a step's work); autocast covers the forward
    before = torch.backends.cuda.matmul.allow_tf32
    seen = {}
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.randn(1, 3, 6, 6))  # materialise the lazy layer

    def forward_hook(module, args, out):
        seen["forward"] = (torch.backends.cuda.matmul.allow_tf32, torch.is_autocast_enabled("cpu"))

    def backward_hook(module, grad_input, grad_output):
        seen["backward"] = torch.backends.cuda.matmul.allow_tf32

    model[0].register_forward_hook(forward_hook)
    model[0].register_full_backward_hook(backward_hook)
    step = bench_kernels.training_step(model, torch.randn(2, 3, 6, 6), torch.tensor([0, 1]), precision)
    assert torch.isfinite(step())
    tf32 = precision == "tf32" or before
    assert seen == {"forward": (tf32, precision.startswith("bf16")), "backward": tf32}
    assert torch.backends.cuda.matmul.allow_tf32 == before and not torch.is_autocast_enabled("cpu")
