"""Issue 14's packaging items: the bundled default data ships inside the package (so that `freqnets
ablate` runs from a wheel), and `freqnets --version`."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import freqnets
from freqnets.experiments.ablate.config import AblationConfig
from freqnets.experiments.data import DEFAULT_DATA

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_data_is_a_package_resource():
    resource = importlib.resources.files("freqnets.experiments") / "bundled" / "cifar10-mini.zip"
    assert resource.is_file() and Path(str(resource)).resolve() == DEFAULT_DATA.resolve()
    assert AblationConfig().data == str(DEFAULT_DATA)
    with zipfile.ZipFile(DEFAULT_DATA) as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
    assert sum(n.startswith("train/") for n in names) == 2000 and sum(n.startswith("test/") for n in names) == 500
    # The source checkout's data/ path (docs, scripts, ./dev.sh) names the same file.
    checkout = ROOT / "data" / "cifar10-mini.zip"
    if checkout.exists():
        assert checkout.read_bytes() == DEFAULT_DATA.read_bytes()


@pytest.mark.slow
def test_a_wheel_holds_the_data_and_runs_ablate_outside_the_checkout(tmp_path):
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler for the optional JPEG extension's build")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("freqnets-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = archive.read("freqnets/experiments/bundled/cifar10-mini.zip")
    assert hashlib.sha256(packed).digest() == hashlib.sha256(DEFAULT_DATA.read_bytes()).digest()
    # Installed apart from the checkout, the command finds its default data in the installed package.
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run(
        [sys.executable, "-m", "freqnets.cli", "ablate", "--preset", "tiny", "--out", str(tmp_path / "out"),
         "--no-plots"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "runs, complete" in run.stdout and (tmp_path / "out" / "results.json").is_file()
    probe = subprocess.run([sys.executable, "-c", "import freqnets; print(freqnets.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env=env, check=True)  # fmt: skip
    assert Path(probe.stdout.strip()).is_relative_to(site)


def test_version_matches_the_package_metadata():
    result = subprocess.run([sys.executable, "-m", "freqnets.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"freqnets {freqnets.__version__}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{freqnets.__version__}"' in pyproject
