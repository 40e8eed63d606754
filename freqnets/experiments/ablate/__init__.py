"""``freqnets ablate``: train one network in every domain at every compress rate, and compare.

The grid (:mod:`.grid`) crosses input representations, models, ``convert_model``
domains and rates, plus the paper's baselines (plain float32 and bfloat16
convolutions, energy-based dynamic FFT rates). Each run trains from the same
initial weights (:mod:`.runner`), checkpoints every epoch and resumes, and
records accuracy, time, memory, cost and the per-layer compression
(:mod:`.measure`). The study writes ``results.csv``, ``results.json``,
``config.toml`` and plots (:mod:`.report`, :mod:`.plots`) into its output folder.
See docs/ablation.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import storage
from .config import AblationConfig, ConfigError, build_config
from .distributed import DistEnv, setup, teardown
from .grid import RunSpec, expand, parse_shard, select_shard
from .report import add_ratios, markdown_table, write_results
from .runner import ResumeMismatch, run_one, same_training

__all__ = [
    "AblationConfig",
    "ConfigError",
    "ResumeMismatch",
    "build_config",
    "collect",
    "expand",
    "merge",
    "preflight",
    "report_folder",
    "run_ablation",
]


def make_pipeline(input_name: str, config: AblationConfig, env: DistEnv, cache: dict):
    """The input pipeline of ``input_name``, loaded once per study (``cache``)."""
    if input_name not in cache:
        if input_name == "rgb":
            from ..data import load_cached
            from .inputs import RGBInput

            cache_dir = Path(config.out) / "cache"
            train = load_cached(config.data, "train", config.train_per_class, config.image_size, cache_dir)
            test = load_cached(config.data, "test", config.test_per_class, config.image_size, cache_dir)
            cache[input_name] = RGBInput(train, test, env.device)
        else:
            from .dct_input import make_dct_input

            cache[input_name] = make_dct_input(config, env)
    return cache[input_name]


def preflight(config: AblationConfig) -> None:
    """What a study needs, checked before any work: its data (the files of both splits are listed, none
    read), every model built once with its ``model_args``, and a writable output folder.

    Raises:
        FileNotFoundError: ``config.data`` does not exist.
        ConfigError: data that is not a zip or folder of class folders of images, a model that cannot
            be built with its arguments, or an output folder that cannot be written.
    """
    from ..data import labelled_files
    from .dct_input import DCT_CHANNELS, refuse_cifar10
    from .models import build_model

    if "dct" in config.inputs:
        refuse_cifar10(config.data)
    if config.data != "cifar10":
        for split, per_class in (("train", config.train_per_class), ("test", config.test_per_class)):
            try:
                labelled_files(config.data, split, per_class)
            except FileNotFoundError:
                raise
            except (ValueError, OSError) as error:
                raise ConfigError(f"data {config.data!r}: {error}") from None
    builds = [(name, 3, config.model_args) for name in config.models] if "rgb" in config.inputs else []
    builds += [(config.dct_model, DCT_CHANNELS, config.dct_model_args)] if "dct" in config.inputs else []
    for name, in_chans, model_args in builds:
        try:
            build_model(name, 10, in_chans, model_args)
        except Exception as error:  # any failure of a factory with these arguments is the user's setting
            raise ConfigError(f"model {name!r} with {model_args}: {error}") from None
    try:
        storage.check_writable_folder(Path(config.out))
    except storage.NotWritable as error:
        raise ConfigError(str(error)) from None


def collect(out: Path, runs: list[RunSpec]) -> list[dict]:
    """The finished rows of ``runs`` found in ``out/runs/*/result.json``, in grid order."""
    rows = []
    for run in runs:
        path = out / "runs" / run.run_id / "result.json"
        if path.is_file():
            rows.append(storage.read_json(path, _check_row))
    return rows


def _check_row(row: Any) -> None:
    """A result row has the fields the report reads (a finished run of ``freqnets ablate``)."""
    if not isinstance(row, dict) or not isinstance(row.get("fingerprint"), dict) or "run_id" not in row:
        raise ValueError("not a result row of freqnets ablate")


def _progress(iterable, env: DistEnv, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not env.is_main, dynamic_ncols=True, **kwargs)


def run_ablation(
    config: AblationConfig,
    shard: str | None = None,
    plots: bool = True,
    after_epoch: Callable[[RunSpec, int], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the runs of ``config`` this shard owns, then write the results of every finished run.

    Args:
        config: a validated :class:`AblationConfig` (see :func:`build_config`).
        shard: ``"i/n"`` to run only shard ``i`` of ``n`` (round robin over the grid); ``None`` for all.
        plots: also write the plots.
        after_epoch: called as ``after_epoch(run, epoch)`` after each checkpointed epoch of each run
            (progress, or stopping a study part-way: an exception raised in it ends the study there).

    Returns:
        ``{"rows": [...], "table": markdown, "out": Path, "complete": bool, "is_main": bool}`` (rows of
        every finished run of the grid in ``config.out``, this shard's and others' sharing the folder;
        ``is_main`` is false on the other processes of a torchrun job).
    """
    grid = expand(config)
    part = parse_shard(shard)
    mine = select_shard(grid, part)
    preflight(config)
    env = setup(config.device)
    threads_before = torch.get_num_threads()
    out = Path(config.out)
    try:
        with _study_lock(out, part) if env.is_main else contextlib.nullcontext():
            if config.threads:
                torch.set_num_threads(config.threads)
            cache: dict = {}
            bar = _progress(mine, env, desc="ablate runs", unit="run")
            for run in bar:
                bar.set_description(f"ablate {run.run_id}")
                run_one(run, config, make_pipeline(run.input, config, env, cache), env, out, bar, after_epoch)
            rows = add_ratios(collect(out, grid))
            table = markdown_table(rows) if rows else "(no finished runs)"
            if env.is_main and rows:
                extra = {"shard": shard, "world_size": env.world_size}
                _write_outputs(out, config, rows, [r.run_id for r in grid], extra, plots)
        complete = len(rows) == len(grid)
        return {"rows": rows, "table": table, "out": out, "complete": complete, "is_main": env.is_main}
    finally:
        torch.set_num_threads(threads_before)
        teardown(env)


def _study_lock(out: Path, part: tuple[int, int] | None) -> contextlib.ExitStack:
    """The lock of a study's process on ``out``: exclusive for a whole grid; for shard ``i/n``, shared
    with the other shards plus exclusive on that shard (shards complete one folder together, but never
    two processes the same runs)."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(storage.FolderLock(out, shared=part is not None))
        if part is not None:
            stack.enter_context(storage.FolderLock(out, name=f".lock-shard-{part[0]}-of-{part[1]}"))
    except BaseException:
        stack.close()
        raise
    return stack


def _write_outputs(out: Path, config: AblationConfig, rows: list[dict], grid: list[str], extra: dict, plots: bool):
    """The results files (:func:`write_results`) and, with ``plots``, the figures."""
    write_results(out, config, rows, grid, extra)
    if plots:
        from .plots import write_plots

        write_plots(out, rows)


_VARIANT_ORDER = {"conv": 0, "bf16": 1, "fixed": 2, "dynamic": 3}


def report_folder(out: Path, plots: bool = True, retime_rounds: int = 0) -> dict[str, Any]:
    """Tabulate every finished run in ``out/runs/`` (from any number of commands with the same training
    settings, e.g. one study extended by another list of domains), and rewrite the results files.

    ``retime_rounds > 0`` also re-times all trained networks side by side in this process
    (:mod:`.retime`), adding ``retimed_seconds_per_step`` and ``retimed_time_ratio``.

    Raises:
        ConfigError: ``out`` holds no ``results.json`` or no finished run, or runs of different training settings.
    """
    out = Path(out)
    if not (out / "results.json").is_file():
        raise ConfigError(f"{out} has no results.json: is it the output folder of freqnets ablate?")
    rows = [storage.read_json(p, _check_row) for p in sorted((out / "runs").glob("*/result.json"))]
    if not rows:
        raise ConfigError(f"no finished runs in {out / 'runs'}")
    if any(not same_training(r["fingerprint"], rows[0]["fingerprint"], "any") for r in rows):
        raise ConfigError(f"the runs in {out} were trained with different settings; report them separately")
    rows.sort(key=lambda r: (r["input"], r["model"], _VARIANT_ORDER.get(r["variant"], 9), r["domain"],
                             r["rate"] if r["rate"] is not None else -1.0, -(r["energy"] or 0.0)))  # fmt: skip
    document = storage.read_json(out / "results.json")
    config = build_config(None, overrides=document["config"])
    domains = sorted({r["domain"] for r in rows if r["variant"] == "fixed"})
    rates = sorted({r["rate"] for r in rows if r["variant"] == "fixed"})
    config.domains, config.rates = domains or config.domains, rates or config.rates
    config.out = str(out)
    if retime_rounds:
        from .distributed import DistEnv, pick_device
        from .retime import retime_folder

        if config.threads:
            torch.set_num_threads(config.threads)
        env = DistEnv(0, 1, 0, pick_device(config.device))
        rows = retime_folder(out, config, add_ratios(rows), env, retime_rounds)
    try:
        storage.check_writable_folder(out)
    except storage.NotWritable:  # a finished study on read-only storage: report it, write nothing
        return {"rows": rows, "table": markdown_table(rows), "out": out, "complete": True, "read_only": True}
    with storage.FolderLock(out):
        _write_outputs(out, config, rows, [r["run_id"] for r in rows], {"reported_from_folder": True}, plots)
    return {"rows": rows, "table": markdown_table(rows), "out": out, "complete": True}


def merge(sources: list[Path], out: Path, plots: bool = True) -> dict[str, Any]:
    """Merge the output folders of shards (run on other machines) into ``out`` and write its results.

    Every source must hold a ``results.json`` of the same study (equal configs but ``out``).

    Raises:
        ConfigError: no source, a source without ``results.json``, or sources of different studies.
    """
    import shutil

    if not sources:
        raise ConfigError("merge needs at least one shard output folder")
    documents = []
    for source in sources:
        path = Path(source) / "results.json"
        if not path.is_file():
            raise ConfigError(f"{source} has no results.json: is it the output folder of a shard?")
        documents.append(storage.read_json(path))
    study = [{k: v for k, v in d["config"].items() if k != "out"} for d in documents]
    if any(s != study[0] for s in study[1:]):
        raise ConfigError("the shard folders hold different studies (their configs differ); merge one study at a time")
    config = build_config(None, overrides=study[0] | {"out": str(out)})
    for source in sources:
        for run_dir in sorted((Path(source) / "runs").glob("*")):
            if (run_dir / "result.json").is_file() and Path(source).resolve() != Path(out).resolve():
                target = Path(out) / "runs" / run_dir.name
                target.mkdir(parents=True, exist_ok=True)
                for name in ("result.json", "model.pt"):
                    if (run_dir / name).is_file():
                        shutil.copyfile(run_dir / name, target / name)
    grid = expand(config)
    rows = collect(Path(out), grid)
    extra = {"merged_from": [str(s) for s in sources]}
    with storage.FolderLock(Path(out)):
        _write_outputs(Path(out), config, rows, [r.run_id for r in grid], extra, plots)
    return {"rows": rows, "table": markdown_table(rows), "out": Path(out), "complete": len(rows) == len(grid)}
