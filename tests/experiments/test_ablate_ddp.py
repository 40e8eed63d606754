"""freqnets ablate under torchrun: two CPU processes train with DistributedDataParallel (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_processes_train_with_ddp_and_only_rank_0_writes(tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "freqnets", "ablate", "--preset", "tiny", "--out", str(out), "--domains", "fft", "--rates", "0.5",
        "--baselines", "conv,dynamic", "--epochs", "2", "--no-plots",
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=200, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("3 runs, complete") == 1  # only rank 0 reports
    document = json.loads((out / "results.json").read_text())
    assert document["world_size"] == 2 and document["complete"]
    for row in document["runs"]:
        assert row["world_size"] == 2 and 0 <= row["top1"] <= 1
        # 40 training images over 2 processes, batch 8 each: 2 steps per epoch per process.
        assert len(row["history"]["train_loss"]) == 2
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and "cache" not in p.parts)
    assert [f for f in files if f.endswith(".tmp")] == []
    assert [r["variant"] for r in document["runs"]] == ["conv", "fixed", "dynamic"]
    assert 0 < document["runs"][2]["applied_rate"] < 1
    weights = torch.load(out / "runs" / document["runs"][1]["run_id"] / "model.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
