"""The GPU device check (scripts/device_check.py) and its parts, run on the CPU at tiny sizes (the dry run).

The dry run takes the code path of the GPU run, so a change that breaks the check fails here, not on
the GPU machine. The Table 2.1 part is checked for what the GPU run relies on: checkpoints loadable with
``weights_only=True``, a resumed run equal to an uninterrupted one, the data pack equal to its zips.
"""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.experiments import cifar_gpu

ROOT = Path(__file__).resolve().parents[2]
SHARED_CIFAR = next(
    (p / "shared" / "data" / "cifar10-jpeg" for p in ROOT.parents if (p / "shared" / "data" / "cifar10-jpeg").is_dir()),
    None,
)


def _script():
    spec = importlib.util.spec_from_file_location("device_check", ROOT / "scripts" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_check_dry_run_writes_the_summaries_with_every_measurement(tmp_path):
    device_check = _script()
    parts = "bench_product,bench_layer,profile_layer,bench_step,dct_step"
    assert device_check.main([str(tmp_path), "--dry-run", "--only", parts]) == 0
    data = json.loads((tmp_path / "device_check.json").read_text())
    assert {name: p["status"] for name, p in data["parts"].items()} == dict.fromkeys(parts.split(","), "ok")
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["date_utc"] and "cupy_backend" in env

    rows = [r for name in ("bench_product", "bench_layer", "bench_step") for r in data["parts"][name]["result"]]
    measured = [r for r in rows if "ms" in r]
    assert not [r for r in rows if "error" in r], [r["error"] for r in rows if "error" in r]
    # the dry run's settings: every torch-path case measured, the CuPy ones skipped with the reason
    steps = {(r["shape"], r["precision"], r["impl"], r["rate"]) for r in measured if r["part"] == "step"}
    for shape in ("imagenet 32px", "cifar 32px"):
        for precision in ("fp32", "bf16_cl"):
            assert {(shape, precision, "conv2d", None), (shape, precision, "bl_torch", 0.0),
                    (shape, precision, "bl_torch", 0.5)} <= steps  # fmt: skip
    assert all(r["ms"] > 0 and r["ms_min"] <= r["ms"] <= r["ms_max"] for r in measured)
    assert all(r["kernel_launches"] == 0 for r in measured)  # no GPU here: the torch path only
    skipped = [r for r in rows if "cupy" in r["impl"]]
    assert skipped and all("skipped" in r for r in skipped)
    graph_rows = [r for r in rows if r["impl"].endswith("+graph")]
    assert graph_rows and all("skipped" in r for r in graph_rows)
    assert all(r["skipped"] == "CUDA graphs need a GPU" for r in graph_rows if "cupy" not in r["impl"])

    # the layer profile: host time and op counts per implementation (no GPU time on the CPU)
    profiled = {r["impl"]: r for r in data["parts"]["profile_layer"]["result"]}
    assert set(profiled) == {"conv2d", "bl_torch", "bl_cupy"} and "skipped" in profiled["bl_cupy"]
    for impl in ("conv2d", "bl_torch"):
        assert profiled[impl]["ms"] > 0 and profiled[impl]["host_ms"] > 0 and profiled[impl]["kernels"] is None
    assert profiled["bl_torch"]["aten_ops"] > profiled["conv2d"]["aten_ops"] > 0

    # the targets are the ratios of the measured rows
    by_key = {(r["shape"], r["precision"], r["impl"], r["rate"]): r for r in measured if r["part"] == "step"}
    for target in data["targets"]:
        if target["target"] == "step time, rate 0.5 / rate 0" and target["where"].endswith("bl_torch"):
            shape, precision = target["where"].rsplit(" ", 2)[0], target["where"].split()[2]
            half, zero = (by_key[(shape, precision, "bl_torch", rate)] for rate in (0.5, 0.0))
            assert target["value"] == pytest.approx(half["ms"] / zero["ms"])
            assert target["met"] == (half["ms"] / zero["ms"] <= 0.7)

    dct = data["parts"]["dct_step"]["result"]
    assert dct["input_shape"] == [4, 192, 4, 4] and set(dct["steps"]) == {"fp32"}
    assert all(np.isfinite(s["first_loss"]) for s in dct["steps"].values())
    markdown = (tmp_path / "device_check.md").read_text()
    for title in ("Product over channels", "One 3x3 layer", "ResNet-18 training step", "targets (issue 13)", "dct_step",
                  "host time vs GPU time"):
        assert title in markdown


def test_unknown_part_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _script().main([str(tmp_path), "--dry-run", "--only", "bench_step,benchmark"])
    assert "unknown parts benchmark" in capsys.readouterr().err


def test_pytest_part_counts_passes_failures_and_skips(tmp_path):
    device_check = _script()
    tests = tmp_path / "test_sample.py"
    tests.write_text(
        "import pytest\n"
        "def test_a(): assert 1 + 1 == 2\n"
        "def test_b(): assert True\n"
        "def test_c(): assert 2 + 2 == 5, 'arithmetic'\n"
        "@pytest.mark.skip(reason='no GPU')\n"
        "def test_d(): pass\n"
    )
    result = device_check.run_pytest("sample", [str(tests)], tmp_path, timeout=120)
    assert result["counts"] == {"tests": 4, "failures": 1, "errors": 0, "skipped": 1, "passed": 2}
    assert [f["test"].split("::")[-1] for f in result["failed"]] == ["test_c"]
    assert "arithmetic" in result["failed"][0]["message"]
    assert result["returncode"] == 1 and not result["timed_out"] and (tmp_path / "pytest_sample.xml").is_file()


def test_pytest_part_reports_a_run_past_its_budget(tmp_path):
    device_check = _script()
    tests = tmp_path / "test_slow.py"
    tests.write_text("import time\ndef test_sleeps(): time.sleep(120)\n")
    result = device_check.run_pytest("slow", [str(tests)], tmp_path, timeout=4)
    assert result["timed_out"] and result["returncode"] is None and result["counts"] is None


def test_a_killed_run_still_logs_why_each_test_failed(tmp_path):
    # pytest prints tracebacks at the end, which a killed run never reaches; tests.live_failures prints them at once
    device_check = _script()
    tests = tmp_path / "test_killed.py"
    tests.write_text("import time\n"
                     "def test_planted(): assert [1, 2] == [1, 3], 'planted mismatch'\n"
                     "def test_sleeps(): time.sleep(120)\n")  # fmt: skip
    result = device_check.run_pytest("killed", [str(tests)], tmp_path, timeout=8)
    assert result["timed_out"] and result["counts"]["failures"] == 1
    assert result["failed"][0]["test"].endswith("test_planted")
    assert "planted mismatch" in result["failed"][0]["message"]
    assert "planted mismatch" in (tmp_path / "pytest_killed.log").read_text()


def test_verbose_output_of_a_killed_run_is_counted():
    device_check = _script()
    output = ("tests/a.py::test_x[cuda] PASSED   [ 10%]\ntests/a.py::test_y FAILED   [ 20%]\n"
              "tests/b.py::test_z SKIPPED (no GPU)   [ 30%]\nsome other line PASSED\n")  # fmt: skip
    result = device_check.verbose_summary(output)
    assert result["counts"] == {"tests": 3, "failures": 1, "errors": 0, "skipped": 1, "passed": 1}
    assert result["failed"] == [{"test": "tests/a.py::test_y", "kind": "failed", "message": ""}]


def _table(device_check, out: Path, state: Path, *extra: str) -> dict:
    argv = [str(out), "--part", "table", "--dry-run", "--synthetic", "--runs", "conv,0.5", "--state", str(state)]
    assert device_check.main(argv + list(extra)) == 0
    return json.loads((out / "table.json").read_text())


def test_table_dry_run_checkpoints_and_resumes_across_calls(tmp_path):
    device_check = _script()
    state = tmp_path / "state"
    first = _table(device_check, tmp_path / "a", state, "--max-epochs", "1")
    runs = first["parts"]["train"]["result"]
    assert [(r["run"], r["epochs_done"], r["finished"]) for r in runs] == [("conv2d", 1, False), ("bl_r0.5", 1, False)]
    for label in ("conv2d", "bl_r0.5"):
        saved = torch.load(state / f"{label}.pt", weights_only=True)
        assert saved["state"]["epoch"] == 1 and saved["recipe"]["epochs"] == 2

    second = _table(device_check, tmp_path / "b", state)
    runs = second["parts"]["train"]["result"]
    assert [(r["run"], r["epochs_done"], r["finished"]) for r in runs] == [("conv2d", 2, True), ("bl_r0.5", 2, True)]
    assert [r["backend"] for r in runs] == ["conv2d", "torch"]  # 'auto' on the CPU runs the torch path
    for run in runs:
        assert [h["epoch"] for h in run["history"]] == [1, 2] and 0 <= run["test_accuracy"] <= 1
        assert run["history"][-1]["schedule_steps"] == 2 * 4  # one-cycle resumed: 2 epochs of 32 / 8 steps
    assert second["targets"][0]["value"] is None  # no rate 0 run in this table
    assert "bl_resnet18_cifar" in (tmp_path / "b" / "table.md").read_text()
    third = _table(device_check, tmp_path / "c", state)  # finished runs are read back, not trained again
    assert third["parts"]["train"]["result"] == json.loads(json.dumps(runs))


def _synthetic_sets(device="cpu"):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.arange(24) % 10
    return cifar_gpu.DeviceImages(images, labels, torch.device(device))


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    torch.set_num_threads(1)
    data = _synthetic_sets()
    recipe = cifar_gpu.Recipe(epochs=3, batch_size=8, width=8, bf16=False)  # width 4 + channels_last: torch CPU bug
    whole = cifar_gpu.train_run(None, data, data, recipe, tmp_path / "whole", 1e9)
    for _ in range(3):
        split = cifar_gpu.train_run(None, data, data, recipe, tmp_path / "split", 1e9, max_epochs=1)
    assert split["finished"] and split["epochs_done"] == 3
    a = torch.load(tmp_path / "whole" / "conv2d.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "conv2d.pt", weights_only=True)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert split["test_accuracy"] == whole["test_accuracy"]


def test_a_corrupt_checkpoint_is_moved_aside_and_the_run_starts_again(tmp_path, capsys):
    torch.set_num_threads(1)
    data = _synthetic_sets()
    recipe = cifar_gpu.Recipe(epochs=2, batch_size=8, width=8, bf16=False)
    whole = cifar_gpu.train_run(None, data, data, recipe, tmp_path / "whole", 1e9)
    state = tmp_path / "again"
    state.mkdir()
    (state / "conv2d.pt").write_bytes(b"not a checkpoint")
    again = cifar_gpu.train_run(None, data, data, recipe, state, 1e9)
    assert "conv2d.pt is corrupt" in capsys.readouterr().err
    assert (state / "conv2d.pt.corrupt").read_bytes() == b"not a checkpoint"
    assert again["finished"] and again["epochs_done"] == 2
    assert again["test_accuracy"] == whole["test_accuracy"]  # seeded: the same run as one never interrupted


def test_training_batches_are_reflect_padded_crops_and_flips():
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=generator)
    data = cifar_gpu.DeviceImages(images, torch.arange(6), torch.device("cpu"), mean=(0, 0, 0),
                                  std=(1 / 255,) * 3, channels_last=False)  # fmt: skip
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)), mode="reflect")
    seen_flip = seen_plain = 0
    for x, labels in data.train_batches(3, torch.Generator().manual_seed(5)):
        for sample, label in zip(x.numpy(), labels.tolist(), strict=True):
            windows = [padded[label, :, r : r + 8, c : c + 8] for r in range(9) for c in range(9)]
            plain = any(np.array_equal(sample, w) for w in windows)
            flipped = any(np.array_equal(sample, w[..., ::-1]) for w in windows)
            assert plain or flipped
            seen_plain, seen_flip = seen_plain + plain, seen_flip + flipped
    assert seen_plain and seen_flip


def _write_zip(path: Path, split: str, classes: list[str], per_class: int) -> dict[str, bytes]:
    rng = np.random.default_rng(len(split))
    members = {}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for cls in classes:
            for i in range(per_class):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="JPEG")
                name = f"{split}/{cls}/{i:04d}.jpg"
                archive.writestr(name, buffer.getvalue())
                members[name] = buffer.getvalue()
    return members


def _check_pack(pack: Path, source: Path, per_class: int) -> None:
    splits, classes = cifar_gpu.load_pack(pack)
    for name, split in splits.items():
        with zipfile.ZipFile(source / f"{name}.zip") as archive:
            names = [n for n in archive.namelist() if n.endswith(".jpg")]
            chosen = [n for c in classes for n in sorted(m for m in names if m.split("/")[1] == c)[:per_class]]
            assert [split.file(i) for i in range(len(split))] == [archive.read(n) for n in chosen]
            assert split.labels.tolist() == [classes.index(n.split("/")[1]) for n in chosen]
            images, labels = cifar_gpu.decode_split(split, workers=2)
            for i in (0, len(split) - 1):
                expected = np.asarray(Image.open(io.BytesIO(archive.read(chosen[i]))).convert("RGB"))
                np.testing.assert_array_equal(images[i].permute(1, 2, 0).numpy(), expected)
            assert labels.tolist() == split.labels.tolist()


def test_pack_holds_the_zips_files_in_order(tmp_path):
    classes = ["cat", "airplane", "dog"]
    for split in cifar_gpu.SPLITS:
        _write_zip(tmp_path / f"{split}.zip", split, classes, 3)
    info = cifar_gpu.pack_cifar_jpeg(tmp_path, tmp_path / "out" / "pack.npz", per_class=2)
    assert info["images"] == {"train": 6, "test": 6} and info["classes"] == sorted(classes)
    _check_pack(tmp_path / "out" / "pack.npz", tmp_path, 2)


@pytest.mark.skipif(SHARED_CIFAR is None, reason="../shared/data/cifar10-jpeg is absent")
def test_pack_of_the_shared_cifar10(tmp_path):
    info = cifar_gpu.pack_cifar_jpeg(SHARED_CIFAR, tmp_path / "pack.npz", per_class=3)
    assert info["images"] == {"train": 30, "test": 30} and len(info["classes"]) == 10
    _check_pack(tmp_path / "pack.npz", SHARED_CIFAR, 3)


def test_bad_inputs_raise_typed_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pack_device_data"):
        cifar_gpu.load_pack(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a CIFAR JPEG pack"):
        cifar_gpu.load_pack(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match=r"train\.zip"):
        cifar_gpu.pack_cifar_jpeg(tmp_path, tmp_path / "pack.npz")
    with pytest.raises(ValueError, match="uint8"):
        cifar_gpu.DeviceImages(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.int64), torch.device("cpu"))
    with pytest.raises(ValueError, match="rate"):
        cifar_gpu.build_model(1.5, "torch")
    with pytest.raises(ValueError, match="batch size"):
        cifar_gpu.train_run(None, _synthetic_sets(), _synthetic_sets(), cifar_gpu.Recipe(batch_size=64, width=8),
                            tmp_path, 10.0)  # fmt: skip


def test_cuda_graph_training_is_refused_without_a_gpu(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _script().main([str(tmp_path), "--part", "table", "--dry-run", "--cuda-graph"])
    assert "--cuda-graph needs a CUDA GPU" in capsys.readouterr().err
    data = _synthetic_sets()
    recipe = cifar_gpu.Recipe(epochs=1, batch_size=8, width=8, cuda_graph=True)
    with pytest.raises(ValueError, match="cuda_graph needs"):
        cifar_gpu.train_run(0.5, data, data, recipe, tmp_path, 60.0, backend="torch")
