"""The package as a user meets it: import cost, the command line, the bundled data."""

from __future__ import annotations

import doctest
import hashlib
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import freqnets
from freqnets.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"


def test_import_is_light():
    # timm itself may pull in tqdm; what matters is what freqnets adds on top.
    code = (
        "import sys, time, timm; before = set(sys.modules); start = time.perf_counter(); import freqnets; "
        "added = set(sys.modules) - before; "
        "print([m for m in ('scipy', 'cupy', 'matplotlib', 'tqdm', 'foolbox', 'freqnets.experiments') if m in added]); "
        "print(time.perf_counter() - start)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    heavy, seconds = out.stdout.strip().splitlines()
    assert heavy == "[]"
    assert float(seconds) < 5.0  # after torch and timm, freqnets itself is small


def test_jpeg_is_an_attribute_after_a_bare_import_and_is_imported_on_first_use():
    # A fresh interpreter: the test session has long imported freqnets.jpeg.
    code = (
        "import sys, freqnets; loaded_by_import = 'freqnets.jpeg' in sys.modules; "
        "read = freqnets.jpeg.read_dct; "
        "from freqnets.jpeg import read_dct; "
        "print(loaded_by_import, read is read_dct, 'jpeg' in dir(freqnets), sys.modules['freqnets.jpeg'] is freqnets.jpeg)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "True", "True", "True"]
    with pytest.raises(AttributeError, match="has no attribute 'not_a_subpackage'"):
        freqnets.not_a_subpackage  # noqa: B018


@pytest.mark.parametrize(
    "module",
    ["base", "fft", "dct", "svd", "winograd", "color", "__init__"],
)
def test_docstring_examples_run(module):
    name = "freqnets.transforms" if module == "__init__" else f"freqnets.transforms.{module}"
    result = doctest.testmod(importlib.import_module(name), extraglobs={"torch": __import__("torch")})
    assert result.failed == 0
    if module in ("fft", "dct", "svd", "winograd"):
        assert result.attempted > 0


def test_demo_writes_its_report(tmp_path, capsys):
    assert main(["demo", "--limit", "16", "--rates", "0,0.5", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "demonstration of the transform layer" in printed and "freqnets ablate" in printed
    report = json.loads((tmp_path / "transforms.json").read_text())
    assert report["images"] == 16
    rows = {(row["domain"], row["rate"]): row for row in report["compression"]}
    for label in ("fft", "dct", "dct-8x8", "svd", "winograd-F(2,3)", "winograd-F(4,3)"):
        assert rows[(label, 0.0)]["relative_error"] < 1e-6
        assert abs(rows[(label, 0.5)]["kept_fraction"] - 0.5) <= 0.02
        assert 15 < rows[(label, 0.5)]["psnr_db"] < 80
    assert all(w["max_relative_error_float32"] < 1e-4 for w in report["winograd_conv2d"][:2])
    assert (tmp_path / "transforms.md").read_text().startswith("PSNR")


def test_demo_reports_missing_data(tmp_path, capsys):
    assert main(["demo", "--data", str(tmp_path / "nothing.zip")]) == 2
    assert "no such data" in capsys.readouterr().err


def test_bad_rates_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--rates", "0,1.2"])
    assert "rate must be in [0, 1)" in capsys.readouterr().err


def test_version():
    assert freqnets.__version__ == "0.1.0"


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="../shared/data/cifar10-jpeg is not on this machine")
def test_bundled_data_is_rebuilt_byte_for_byte(tmp_path):
    out = tmp_path / "mini.zip"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make_default_data.py"),
            "--source",
            str(SHARED_CIFAR),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest == hashlib.sha256((ROOT / "data" / "cifar10-mini.zip").read_bytes()).hexdigest()
