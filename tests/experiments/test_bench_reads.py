"""Bookkeeping of the per-file read rows (`freqnets bench loader --reads`); timings themselves are not tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from freqnets.cli import main
from freqnets.experiments import bench_reads
from freqnets.experiments.bench_loader import load_payloads
from freqnets.jpeg import available_backends

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "cifar10-mini.zip"
pytestmark = pytest.mark.skipif(not BUNDLED.exists(), reason="bundled data missing")


def test_rows_ratios_and_report():
    files = load_payloads(BUNDLED, 6, "train")
    result = bench_reads.measure("mini", files, repeats=1, python_files=1)
    labels = [row.label for row in result.rows]
    assert labels[:3] == ["pillow RGB", "pillow draft YCbCr", "parse_header"]
    assert labels[-1] == "read_dct[python] (1 files)" and result.rows[-1].files == 1
    assert result.files == 6 and result.layouts == {"4:2:0": 6} and result.mean_pixels == 32 * 32
    assert all(row.seconds > 0 and row.pillow > 0 for row in result.rows)
    if "libjpeg" in available_backends():
        assert {"read_dct[libjpeg]", "read_dct[libjpeg], direct path off"} <= set(labels)
    loads = [row for row in result.rows if row.label.startswith("jpeg2dct loads (")]
    if "jpeg2dct" in available_backends():  # every 4:2:0 file: ratios to loads on the same 6 files
        (row,) = loads
        assert row.jpeg2dct == row.seconds
        assert next(r for r in result.rows if r.label == "read_dct[libjpeg]").jpeg2dct == row.seconds
    else:
        assert loads == [] and all(row.jpeg2dct is None for row in result.rows)
    text = bench_reads.report([result])
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| read ")]
    assert len(lines) == len(result.rows)
    for line, row in zip(lines, result.rows, strict=True):  # the printed ratio is Pillow's time over the row's
        assert line.startswith(f"| {row.label} | {row.files} |")
        assert f"{row.pillow / row.seconds:.2f}x" in line


def test_nothing_to_time_is_refused():
    with pytest.raises(ValueError, match="no JPEG files"):
        bench_reads.measure("empty", [])
    with pytest.raises(ValueError, match="repeats"):
        bench_reads.measure("mini", load_payloads(BUNDLED, 1, "train"), repeats=0)


def test_the_command_prints_one_table_per_data_set(capsys):
    assert main(["bench", "loader", "--reads", "--quick", "--images", "3", "--data", str(BUNDLED)]) == 0
    out = capsys.readouterr().out
    assert "CIFAR-10 (cifar10-mini.zip): 3 files" in out
    assert len(re.findall(r"^\| pillow RGB \| 3 \|", out, flags=re.M)) == out.count(" files, mean ")
