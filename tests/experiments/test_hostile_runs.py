"""Issue 15's reproducers for the ablation's runs and the command line: caches keyed by the files they
hold, checkpoints and results checked on load (a corrupt one is moved aside and the run goes on), a
lock on the output folder, and every user error as one ``freqnets: error:`` line, exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from freqnets.cli import main
from freqnets.experiments import storage
from freqnets.experiments.ablate import build_config, run_ablation
from freqnets.experiments.data import load_cached


def _tiny(out, **overrides):
    return build_config("tiny", overrides={"out": str(out), **overrides})


def _image_tree(root, value=None, per_class=4):
    """``root/{train,test}/{a,b}/NNN.jpg``: uniform grey images (``value``) or seeded noise."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = np.full((32, 32, 3), value, np.uint8) if value is not None else rng.integers(0, 256, (32, 32, 3))
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / cls / f"{i:03d}.jpg", quality=95)


# -- caches -------------------------------------------------------------------------------------------


def test_an_image_rewritten_in_place_is_not_served_from_the_cache(tmp_path):
    _image_tree(tmp_path / "data", value=74)
    cache = tmp_path / "cache"
    before = load_cached(tmp_path / "data", "train", 0, 32, cache)
    assert abs(before.images.float().mean().item() - 74) < 2
    folder_stat = os.stat(tmp_path / "data")
    _image_tree(tmp_path / "data", value=194)  # same names, same folder: only the files' contents change
    os.utime(tmp_path / "data", ns=(folder_stat.st_atime_ns, folder_stat.st_mtime_ns))
    after = load_cached(tmp_path / "data", "train", 0, 32, cache)
    assert abs(after.images.float().mean().item() - 194) < 2
    assert len(list(cache.glob("train-*.pt"))) == 2


def test_a_rewritten_zip_member_is_not_served_from_the_cache(tmp_path):
    import zipfile

    def write(value):
        with zipfile.ZipFile(tmp_path / "set.zip", "w") as archive:
            for split in ("train", "test"):
                for cls in ("a", "b"):
                    with archive.open(f"{split}/{cls}/0.png", "w") as handle:
                        Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(handle, format="PNG")

    write(10)
    assert load_cached(tmp_path / "set.zip", "test", 0, 32, tmp_path / "cache").images.max() == 10
    write(200)
    assert load_cached(tmp_path / "set.zip", "test", 0, 32, tmp_path / "cache").images.max() == 200


def test_a_corrupt_cache_file_is_moved_aside_and_rebuilt(tmp_path, capsys):
    _image_tree(tmp_path / "data")
    first = load_cached(tmp_path / "data", "test", 0, 32, tmp_path / "cache")
    (cached,) = (tmp_path / "cache").glob("test-*.pt")
    cached.write_bytes(cached.read_bytes()[:100])  # truncated by a full disk or a kill
    again = load_cached(tmp_path / "data", "test", 0, 32, tmp_path / "cache")
    assert torch.equal(first.images, again.images)
    assert (cached.parent / (cached.name + ".corrupt")).is_file()
    assert cached.name in capsys.readouterr().err


# -- checkpoints and results ----------------------------------------------------------------------------


class Interrupted(RuntimeError):
    pass


def _stop_after_first_epoch(run, epoch):
    raise Interrupted(run.run_id)


def _interrupted_study(out):
    settings = dict(epochs=2, rates=[0.5], baselines=[])
    with pytest.raises(Interrupted):
        run_ablation(_tiny(out, **settings), plots=False, after_epoch=_stop_after_first_epoch)
    (run_dir,) = (out / "runs").iterdir()
    return settings, run_dir


def _tamper_epoch(value):
    def tamper(path):
        state = torch.load(path, weights_only=True)
        state["epoch"] = value
        torch.save(state, path)

    return tamper


def _nan_weights(path):
    state = torch.load(path, weights_only=True)
    next(v for v in state["model"].values() if v.is_floating_point()).fill_(float("nan"))
    torch.save(state, path)


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_epoch(99),  # once ended a 5-epoch run after 2 with a row claiming 5
        _tamper_epoch(-1),  # once trained one epoch too many
        _nan_weights,  # once finished with rc 0
        lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),  # truncated
        lambda path: path.write_bytes(b"not a checkpoint"),
    ],
    ids=["epoch-99", "epoch-minus-1", "nan-weights", "truncated", "garbage"],
)
def test_a_bad_checkpoint_is_named_moved_aside_and_the_run_restarts(tmp_path, capsys, tamper):
    settings, run_dir = _interrupted_study(tmp_path / "study")
    tamper(run_dir / "checkpoint.pt")
    capsys.readouterr()
    row = run_ablation(_tiny(tmp_path / "study", **settings), plots=False)["rows"][0]
    assert str(run_dir / "checkpoint.pt") in capsys.readouterr().err
    assert (run_dir / "checkpoint.pt.corrupt").is_file() and not (run_dir / "checkpoint.pt").exists()
    straight = run_ablation(_tiny(tmp_path / "straight", **settings), plots=False)["rows"][0]
    assert row["resumed_from_epoch"] is None and len(row["history"]["train_loss"]) == 2
    assert row["top1"] == straight["top1"] and row["test_loss"] == straight["test_loss"]
    assert row["history"]["train_loss"] == straight["history"]["train_loss"]


@pytest.mark.parametrize("content", [b"", b"{\"run_id\": ", b"[1, 2]", b"\xff\xfe garbage"])
def test_a_bad_result_is_moved_aside_and_the_run_trained_again(tmp_path, capsys, content):
    first = run_ablation(_tiny(tmp_path, rates=[0.5], baselines=[]), plots=False)["rows"][0]
    path = tmp_path / "runs" / first["run_id"] / "result.json"
    path.write_bytes(content)
    again = run_ablation(_tiny(tmp_path, rates=[0.5], baselines=[]), plots=False)["rows"][0]
    assert str(path) in capsys.readouterr().err and (path.parent / "result.json.corrupt").is_file()
    assert again["top1"] == first["top1"] and again["history"]["train_loss"] == first["history"]["train_loss"]
    assert json.loads(path.read_text())["run_id"] == first["run_id"]


# -- the output folder's lock and temporary files ------------------------------------------------------


def test_a_second_process_on_the_same_output_folder_is_refused_in_one_line(tmp_path, capsys):
    with storage.FolderLock(tmp_path):
        rc = main(["ablate", "--preset", "tiny", "--out", str(tmp_path), "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("freqnets: error:") and "in use" in err[-1]
    assert not (tmp_path / "runs").exists()
    # The lock of a process that died (the file is left, the kernel's lock is not) does not block.
    (tmp_path / ".lock").write_text("999999999")
    with storage.FolderLock(tmp_path):
        pass


def test_shards_share_a_folder_but_not_a_shard(tmp_path, capsys):
    from freqnets.experiments.ablate import _study_lock

    with _study_lock(tmp_path, (0, 2)), _study_lock(tmp_path, (1, 2)):  # two shards complete one folder
        with pytest.raises(storage.FolderLocked, match="in use"):
            _study_lock(tmp_path, (0, 2))
        assert main(["ablate", "--preset", "tiny", "--out", str(tmp_path), "--no-plots"]) == 2  # the whole grid
        assert main(["ablate", "--preset", "tiny", "--out", str(tmp_path), "--shard", "1/2", "--no-plots"]) == 2
    assert capsys.readouterr().err.count("freqnets: error:") == 2
    with _study_lock(tmp_path, None):
        pass


def test_the_temporary_sweep_keeps_a_live_process_file(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".checkpoint.pt.{sleeper.pid}.abcd1234.tmp"
        live.write_bytes(b"in flight")
        dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True, check=True).stdout.strip()  # fmt: skip
        dead = tmp_path / f".result.json.{dead_pid}.wxyz5678.tmp"
        dead.write_bytes(b"left by a kill")
        legacy = tmp_path / ".result.json.abcd.tmp"  # written before temporary names held the pid
        legacy.write_bytes(b"old")
        assert sorted(storage.sweep_temporaries(tmp_path)) == sorted([dead, legacy])
        assert live.is_file()
    finally:
        sleeper.kill()
        sleeper.wait()


# -- user errors of the command line -------------------------------------------------------------------


def _deep_toml(path):
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    return str(path)


def _deep_yaml(path):
    pytest.importorskip("yaml")
    path.write_text("x: " + "[" * 5000 + "]" * 5000 + "\n")
    return str(path)


USER_ERRORS = {
    "lr-overflow": ["ablate", "--lr", "1e999"],
    "lr-huge": ["ablate", "--lr", "1e308"],
    "lr-nan": ["ablate", "--lr", "nan"],
    "epochs-huge": ["ablate", "--epochs", "99999999999999999999"],
    "epochs-negative": ["ablate", "--epochs", "-1"],
    "per-class-negative": ["ablate", "--train-per-class", "-5"],
    "seed-huge": ["ablate", "--seed", str(2**64)],
    "model-name": ["ablate", "--models", "no_such_net"],
    "data-missing": ["ablate", "--data", "/nonexistent"],
    "data-device": ["ablate", "--data", "/dev/zero"],
    "out-device": ["ablate", "--out", "/dev/null"],
    "out-uncreatable": ["ablate", "--out", "/proc/version/study"],
    "bench-epochs": ["bench", "accuracy", "--epochs", "-1"],
    "bench-data": ["bench", "accuracy", "--data", "/dev/zero"],
    "bench-workers": ["bench", "loader", "--workers", "-1"],
    "bench-time": ["bench", "conv", "--min-run-time", "inf"],
    "bench-simd": ["bench", "loader", "--reads", "--simd", "/nonexistent"],
    "demo-limit": ["demo", "--limit", "-1"],
    "demo-data": ["demo", "--data", "/nonexistent"],
    "demo-out": ["demo", "--out", "/dev/null"],
    "robustness-data": ["robustness", "--data", "/nonexistent"],
    "robustness-epochs": ["robustness", "--epochs", "-2"],
    "robustness-out": ["robustness", "--out", "/dev/null", "--quiet"],
    "unknown-option": ["ablate", "--no-such-option"],
}


@pytest.mark.parametrize("argv", list(USER_ERRORS.values()), ids=list(USER_ERRORS))
def test_each_user_error_is_one_line_before_any_work(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)  # default output folders would land here
    with pytest.raises(SystemExit) as stopped:
        sys.exit(main(argv))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert stopped.value.code == 2 and len(lines) == 1 and lines[0].startswith("freqnets: error:"), err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("writer", [_deep_toml, _deep_yaml], ids=["toml", "yaml"])
def test_a_deeply_nested_config_file_is_one_line(tmp_path, capsys, writer):
    config = writer(tmp_path / ("deep.toml" if writer is _deep_toml else "deep.yaml"))
    assert main(["ablate", "--config", config, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("freqnets: error: cannot read config file"), err


def test_model_args_that_do_not_fit_are_refused_before_work(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("model_args = { width = -4 }\n")
    assert main(["ablate", "--preset", "tiny", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model 'small_cnn'" in err[0]
    assert not (tmp_path / "out" / "runs").exists()


def test_report_works_on_a_read_only_finished_study(tmp_path, capsys, monkeypatch):
    run_ablation(_tiny(tmp_path, rates=[0.5], baselines=[]), plots=False)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    if os.geteuid() == 0:  # root writes through permission bits: stand in for read-only storage
        def refuse(folder):
            raise storage.NotWritable(f"cannot write to output folder {folder}: Read-only file system")

        monkeypatch.setattr(storage, "check_writable_folder", refuse)
        monkeypatch.setattr(storage, "FolderLock", None)  # must not be taken on a read-only folder
    else:
        for path in [tmp_path, *tmp_path.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    try:
        assert main(["ablate", "--report", "--out", str(tmp_path), "--no-plots"]) == 0
    finally:
        for path in [tmp_path, *tmp_path.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    out = capsys.readouterr().out
    assert "fft" in out and "read-only" in out
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}



def test_the_robustness_study_moves_its_corrupt_files_aside(tmp_path, capsys):
    pytest.importorskip("foolbox")
    from freqnets.experiments.robustness.study import ImageClassifier, Study, StudyConfig
    from freqnets.experiments.training import small_cnn

    (tmp_path / "state.json").write_text('{"model": {"clean_accuracy": 0.5')  # truncated by a kill
    study = Study(StudyConfig(out=tmp_path), progress=False)
    assert study.state == {} and (tmp_path / "state.json.corrupt").is_file()
    assert "state.json" in capsys.readouterr().err
    model = ImageClassifier(small_cnn(width=4))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    nan_state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in initial.items()}
    torch.save(nan_state, tmp_path / "model.pt")
    assert study._load_weights(model, tmp_path / "model.pt", given=False) is False
    assert all(torch.equal(initial[k], v) for k, v in model.state_dict().items())  # not half-loaded
    assert (tmp_path / "model.pt.corrupt").is_file()
    (tmp_path / "given.pt").write_bytes(b"garbage")
    with pytest.raises(storage.CorruptFile, match=r"given\.pt"):  # a user's --checkpoint is never moved
        study._load_weights(model, tmp_path / "given.pt", given=True)
    assert (tmp_path / "given.pt").is_file()
