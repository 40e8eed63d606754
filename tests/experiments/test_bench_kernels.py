"""freqnets.experiments.bench_kernels (`freqnets bench kernels`) runs everywhere: on a machine without CuPy/GPU it says so and skips those rows."""

from __future__ import annotations

import pytest

from freqnets import kernels
from freqnets.experiments import bench_kernels


@pytest.mark.skipif(kernels.is_available(), reason="checks the CPU-only behaviour")
def test_runs_without_a_gpu_and_says_what_it_skipped(capsys):
    assert bench_kernels.main(["--batch", "1", "--quick", "--min-run-time", "0.01", "--no-model", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "CuPy rows skipped: backend='cupy' needs" in out and "cuDNN rows skipped" in out
    product_row = next(line for line in out.splitlines() if line.startswith("| 512 | 7 | 0.5 |"))  # first table
    cells = [c.strip() for c in product_row.strip("|").split("|")]
    assert float(cells[4]) > 0 and cells[5:] == ["skipped", "skipped", "-", "-"]
    assert any(line.startswith("| 512 | 7 | 0.5 |") and "| skipped |" in line for line in out.split("One 3x3 layer")[1].splitlines())
