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
