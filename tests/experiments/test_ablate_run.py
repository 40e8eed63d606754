"""freqnets ablate end to end on the tiny preset: resume equality, result files, shards and merge, the CLI."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from freqnets.cli import main
from freqnets.experiments.ablate import (
    ResumeMismatch,
    build_config,
    merge,
    report_folder,
    run_ablation,
)
from freqnets.experiments.ablate.report import CSV_COLUMNS, markdown_table


def _tiny(out, **overrides):
    return build_config("tiny", overrides={"out": str(out), **overrides})


def _weights(out, run_id):
    return torch.load(out / "runs" / run_id / "model.pt", weights_only=True)


class Interrupted(RuntimeError):
    """Stands for a kill after a checkpoint."""


def _stop_after(epoch):
    def after_epoch(run, finished):
        if finished == epoch:
            raise Interrupted(f"{run.run_id} stopped after epoch {finished}")

    return after_epoch


def test_an_interrupted_study_resumes_to_the_uninterrupted_result(tmp_path):
    settings = dict(epochs=2, rates=[0.5], baselines=["dynamic"])
    straight = run_ablation(_tiny(tmp_path / "straight", **settings), plots=False)

    with pytest.raises(Interrupted):
        run_ablation(_tiny(tmp_path / "resumed", **settings), plots=False, after_epoch=_stop_after(1))
    first = straight["rows"][0]["run_id"]
    assert (tmp_path / "resumed" / "runs" / first / "checkpoint.pt").is_file()
    assert not (tmp_path / "resumed" / "runs" / first / "result.json").exists()
    resumed = run_ablation(_tiny(tmp_path / "resumed", **settings), plots=False)

    assert [r["resumed_from_epoch"] for r in resumed["rows"]] == [1, None]
    for a, b in zip(straight["rows"], resumed["rows"], strict=True):
        assert a["run_id"] == b["run_id"]
        for key in ("top1", "test_loss", "train_loss", "applied_rate", "layers", "params", "saved_bytes"):
            assert a[key] == b[key], key
        assert a["history"]["train_loss"] == b["history"]["train_loss"]
        wa, wb = _weights(tmp_path / "straight", a["run_id"]), _weights(tmp_path / "resumed", b["run_id"])
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not list((tmp_path / "resumed").rglob("checkpoint.pt"))


def test_finished_runs_are_skipped_and_other_settings_refused(tmp_path):
    first = run_ablation(_tiny(tmp_path), plots=False)
    again = run_ablation(_tiny(tmp_path), plots=False)
    assert again["rows"] == first["rows"]
    with pytest.raises(ResumeMismatch, match="other settings"):
        run_ablation(_tiny(tmp_path, lr=0.5), plots=False)
    with pytest.raises(ResumeMismatch, match="other settings"):
        run_ablation(_tiny(tmp_path, model_args={"width": 2}), plots=False)
    # The DCT model's settings do not touch RGB runs: they are still skipped, not refused.
    assert run_ablation(_tiny(tmp_path, dct_model_args={"depth": 1}), plots=False)["rows"] == first["rows"]


def test_result_files_schema_and_measurements(tmp_path):
    result = run_ablation(_tiny(tmp_path, rates=[0.0, 0.5], baselines=["conv", "bf16"]))
    out = tmp_path
    document = json.loads((out / "results.json").read_text())
    assert document["complete"] and document["schema_version"] == 1
    assert document["config"]["rates"] == [0.0, 0.5] and document["config"]["seed"] == 0
    assert {"torch", "timm", "python", "platform", "git_commit"} <= set(document["environment"])
    assert document["grid"] == [r["run_id"] for r in result["rows"]]
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CSV_COLUMNS and len(rows) == 4
    assert (out / "config.toml").is_file() and (out / "accuracy.png").stat().st_size > 1000
    assert build_config(None, out / "config.toml") == _tiny(tmp_path, rates=[0.0, 0.5], baselines=["conv", "bf16"])

    by_id = {r["run_id"]: r for r in document["runs"]}
    conv, bf16 = by_id["small_cnn-rgb-none-conv-r0"], by_id["small_cnn-rgb-none-bf16-r0"]
    fft0, fft5 = by_id["small_cnn-rgb-fft-fixed-r0"], by_id["small_cnn-rgb-fft-fixed-r0.5"]
    n_test = 2 * 10
    for row in document["runs"]:
        assert 0 <= row["top1"] <= 1 and round(row["top1"] * n_test) == pytest.approx(row["top1"] * n_test)
        assert row["seconds_per_epoch"] > 0 and row["seconds_per_step"] > 0 and row["params"] == conv["params"]
        assert row["peak_rss_bytes"] > 0 and row["gpu_peak_bytes"] is None
    # Five 3x3 convolutions of widths 4, 4, 8, 8, 16 on 32, 32, 16, 16, 8 pixel grids, and a 16 -> 10 linear layer.
    w = 4
    dense = (32 * 32 * (3 * w + w * w) + 16 * 16 * (w * 2 * w + 4 * w * w) + 8 * 8 * 2 * w * 4 * w) * 9 + 4 * w * 10
    assert conv["dense_macs"] == conv["executed_macs"] == fft5["dense_macs"] == dense
    assert fft5["executed_macs"] < fft0["executed_macs"]
    assert bf16["saved_bytes"] < conv["saved_bytes"] and fft5["saved_bytes"] < fft0["saved_bytes"]
    assert fft5["saved_ratio"] == fft5["saved_bytes"] / fft0["saved_bytes"] and fft0["time_ratio"] == 1.0
    assert fft5["reference_run"] == fft0["run_id"] and bf16["reference_run"] == conv["run_id"]
    assert [layer["compress_rate"] for layer in fft5["layers"]] == [0.5] * 5 and fft5["applied_rate"] == 0.5
    assert conv["layers"] == [] and conv["top1_delta_vs_conv"] == 0.0


def test_shards_share_a_folder_or_merge(tmp_path):
    whole = run_ablation(_tiny(tmp_path / "whole"), plots=False)
    half = run_ablation(_tiny(tmp_path / "shared"), shard="0/2", plots=False)
    assert not half["complete"] and len(half["rows"]) == 2
    assert run_ablation(_tiny(tmp_path / "shared"), shard="1/2", plots=False)["complete"]
    run_ablation(_tiny(tmp_path / "a"), shard="0/2", plots=False)
    run_ablation(_tiny(tmp_path / "b"), shard="1/2", plots=False)
    merged = merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged", plots=False)
    assert merged["complete"]
    key = ("run_id", "top1", "train_loss", "layers")
    assert [[r[k] for k in key] for r in merged["rows"]] == [[r[k] for k in key] for r in whole["rows"]]
    run_ablation(_tiny(tmp_path / "other", lr=0.5), shard="0/2", plots=False)
    with pytest.raises(ValueError, match="different studies"):
        merge([tmp_path / "a", tmp_path / "other"], tmp_path / "merged2", plots=False)


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["ablate", "--preset", "tiny", "--out", str(out), "--domains", "svd", "--rates", "0,0.5"]) == 0
    printed = capsys.readouterr().out
    assert "| small_cnn | rgb | svd | fixed | 0.5 |" in printed and "3 runs, complete" in printed
    assert (out / "results.csv").is_file()
    assert main(["ablate", "--preset", "tiny", "--out", str(out), "--rates", "0,1.5"]) == 2
    assert "rates must be" in capsys.readouterr().err
    assert main(["ablate", "--preset", "tiny", "--out", str(out), "--inputs", "hsv"]) == 2
    assert main(["ablate", "--preset", "tiny", "--data", str(tmp_path / "nothing"), "--out", str(out / "x")]) == 2
    assert "no such data" in capsys.readouterr().err


def test_report_tabulates_runs_of_several_commands(tmp_path, capsys):
    run_ablation(_tiny(tmp_path), plots=False)
    run_ablation(_tiny(tmp_path, domains=["svd"], rates=[0.5], baselines=[]), plots=False)
    assert [r["run_id"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]] == [
        "small_cnn-rgb-svd-fixed-r0.5"
    ]
    assert main(["ablate", "--report", "--out", str(tmp_path), "--no-plots"]) == 0
    assert "4 runs, complete" in capsys.readouterr().out
    document = json.loads((tmp_path / "results.json").read_text())
    assert [(r["variant"], r["domain"], r["rate"]) for r in document["runs"]] == [
        ("conv", "none", 0.0), ("fixed", "fft", 0.0), ("fixed", "fft", 0.5), ("fixed", "svd", 0.5)
    ]  # fmt: skip
    assert document["runs"][2]["reference_run"] == "small_cnn-rgb-fft-fixed-r0"
    retimed = report_folder(tmp_path, plots=False, retime_rounds=2)["rows"]
    assert all(r["retimed_seconds_per_step"] > 0 for r in retimed)
    assert [r["retimed_time_ratio"] for r in retimed[:2]] == [1.0, 1.0]
    assert "side-by-side ms/step" in markdown_table(retimed)
    with pytest.raises(ValueError, match=r"no results\.json"):
        report_folder(tmp_path / "empty")
