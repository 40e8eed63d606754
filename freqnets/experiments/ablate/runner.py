"""Train and evaluate one run of the grid, checkpointing every epoch so that a re-run resumes.

Layout of a run's folder ``<out>/runs/<run_id>/``: ``checkpoint.pt`` while it
trains (model, optimizer, scheduler, RNG state, next epoch, per-epoch history),
then ``result.json`` (the finished row) and ``model.pt`` (the trained weights).
A run whose ``result.json`` exists is not trained again.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ...layers import calibrate_rates, convert_model
from .. import storage
from ..training import EpochStats, train_epochs
from ..training import evaluate as evaluate_batches
from . import measure
from .config import AblationConfig
from .distributed import DistEnv, barrier, sum_across, sync_buffers
from .grid import RunSpec
from .models import build_model


class ResumeMismatch(ValueError):
    """A checkpoint or result in the output folder was made with other training settings."""


#: The settings a checkpoint or result depends on: resuming under others would mix two studies.
_TRAINING_KEYS = (
    "model_args", "data", "train_per_class", "test_per_class", "image_size", "epochs", "batch_size", "lr",
    "momentum", "weight_decay", "seed", "calibration_images", "dct_model", "dct_model_args",
)  # fmt: skip


#: Settings that do not touch runs of an input: RGB runs ignore the DCT model and vice versa.
_IRRELEVANT = {"rgb": {"dct_model", "dct_model_args"}, "dct": {"model_args", "image_size"}}


def training_fingerprint(config: AblationConfig, env: DistEnv) -> dict[str, Any]:
    values = {key: getattr(config, key) for key in _TRAINING_KEYS}
    return values | {"world_size": env.world_size}


def same_training(stored: dict[str, Any] | None, current: dict[str, Any], input_name: str) -> bool:
    """Whether a stored fingerprint matches ``current`` on every setting that affects runs of ``input_name``
    (``"any"``: on the settings every run shares)."""
    if stored is None:
        return False
    ignored = set().union(*_IRRELEVANT.values()) if input_name == "any" else _IRRELEVANT.get(input_name, set())
    keys = (set(stored) | set(current)) - ignored
    return all(stored.get(k) == current.get(k) for k in keys)


@dataclass
class History:
    """Per-epoch records, kept in the checkpoint (plain lists: loadable with ``weights_only=True``)."""

    train_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    step_seconds_median: list[float] = field(default_factory=list)
    mean_rate: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.__dict__.items()}


def make_model(spec: RunSpec, config: AblationConfig, num_classes: int, in_chans: int) -> nn.Module:
    """The run's network, initialised from ``config.seed`` (the same weights for every domain and rate),
    then converted by :func:`freqnets.convert_model` unless the run is an unconverted baseline."""
    torch.manual_seed(config.seed)
    model_args = config.model_args if spec.input == "rgb" else config.dct_model_args
    model = build_model(spec.model, num_classes, in_chans, model_args)
    if spec.domain != "none":
        model = convert_model(model, spec.domain, compress_rate=spec.rate if spec.rate is not None else 0.0)
    return model


def _autocast(spec: RunSpec, device: torch.device):
    if spec.variant == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _epoch_generator(config: AblationConfig, epoch: int, rank: int) -> torch.Generator:
    """Augmentation randomness of one epoch on one process: a function of (seed, epoch, rank) only."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 1_009 + rank)


def _calibrate(model: nn.Module, pipeline, config: AblationConfig, energy: float) -> None:
    x, _ = pipeline.plain_train_batch(config.calibration_images)
    calibrate_rates(model, x, energy)


def evaluate(model: nn.Module, pipeline, env: DistEnv, batch_size: int) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy on the test split (each process scores a strided share)."""
    indices = list(range(env.rank, pipeline.num_test, env.world_size))
    scores = evaluate_batches(model, pipeline.test_batches(indices, batch_size))
    correct, loss_sum = sum_across(env, [scores.correct, scores.loss_sum])
    return correct / pipeline.num_test, loss_sum / pipeline.num_test


def _finite_parameters(state: dict[str, torch.Tensor]) -> None:
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise ValueError(f"non-finite values in {', '.join(bad[:3])}")


def _check_checkpoint(spec: RunSpec, config: AblationConfig) -> Callable[[Any], None]:
    """The check of a run's ``checkpoint.pt``: its keys, its run, an epoch in ``1..epochs`` with a history
    of that length, and finite weights (settings are compared apart, as :class:`ResumeMismatch`)."""

    def check(state: Any) -> None:
        missing = {"model", "optimizer", "scheduler", "rng", "epoch", "history", "fingerprint"} - set(state)
        if missing:
            raise ValueError(f"missing {sorted(missing)}")
        if state.get("spec", spec.to_dict()) != spec.to_dict():
            raise ValueError(f"it belongs to another run ({state['spec']})")
        epoch = state["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= config.epochs:
            raise ValueError(f"epoch {epoch!r} is outside 1..{config.epochs}")
        History(**state["history"])  # raises TypeError on unknown fields
        if any(len(v) != epoch for v in state["history"].values()):
            raise ValueError(f"its history does not have {epoch} epochs")
        _finite_parameters(state["model"])

    return check


def _check_result(spec: RunSpec, config: AblationConfig) -> Callable[[Any], None]:
    """The check of a run's ``result.json``: a row of this run and of ``config.epochs`` epochs, with an
    accuracy in [0, 1] (settings are compared apart, as :class:`ResumeMismatch`)."""

    def check(row: Any) -> None:
        if not isinstance(row, dict) or row.get("run_id") != spec.run_id:
            raise ValueError(f"it is not the result of run {spec.run_id}")
        if row.get("epochs") != config.epochs or not isinstance(row.get("fingerprint"), dict):
            raise ValueError(f"it does not record {config.epochs} epochs of training")
        if not isinstance(row.get("top1"), int | float) or not 0 <= row["top1"] <= 1:
            raise ValueError(f"top1 {row.get('top1')!r} is not an accuracy")

    return check


def run_one(
    spec: RunSpec,
    config: AblationConfig,
    pipeline,
    env: DistEnv,
    out: Path,
    progress=None,
    after_epoch: Callable[[RunSpec, int], None] | None = None,
) -> dict[str, Any]:
    """Train ``spec`` to ``config.epochs`` (resuming from its checkpoint), evaluate and measure it.

    A ``checkpoint.pt`` or ``result.json`` that cannot be read or fails its check (epoch range, run,
    finite weights) is named on stderr and moved aside (``*.corrupt``); the run goes on from the last
    good state (its start, when the checkpoint is the corrupt one).

    Args:
        after_epoch: called as ``after_epoch(spec, epoch)`` once epoch ``epoch`` (1-based) is checkpointed;
            an exception raised in it stops the run there, as a kill would (the next call resumes).

    Returns:
        The result row (also written to ``<out>/runs/<run_id>/result.json`` by rank 0).

    Raises:
        ResumeMismatch: the run's folder holds a checkpoint or result made with other settings.
    """
    run_dir = out / "runs" / spec.run_id
    result_path, checkpoint_path = run_dir / "result.json", run_dir / "checkpoint.pt"
    fingerprint = training_fingerprint(config, env)
    if result_path.is_file():
        row = _load_or_move_aside(env, lambda: storage.read_json(result_path, _check_result(spec, config)))
        if row is not None:
            if not same_training(row.get("fingerprint"), fingerprint, spec.input):
                raise ResumeMismatch(
                    f"{result_path} was made with other settings ({row.get('fingerprint')}); use another --out"
                )
            return row

    if env.is_main and run_dir.is_dir():
        storage.sweep_temporaries(run_dir)  # left by a process killed while writing
    peak = measure.PeakMemory(env.device).start()
    device = env.device
    model = make_model(spec, config, pipeline.num_classes, pipeline.in_chans).to(device)
    core = model
    if env.distributed:
        model = DistributedDataParallel(core, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(
        core.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True
    )
    sampler = DistributedSampler(
        range(pipeline.num_train), num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=config.seed,
        drop_last=True,
    )  # fmt: skip
    steps_per_epoch = len(sampler) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the {len(sampler)} training images per process"
        )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * steps_per_epoch)
    history, start_epoch, resumed_from = History(), 0, None
    state = None
    if checkpoint_path.is_file():
        state = _load_or_move_aside(
            env, lambda: storage.load_torch(checkpoint_path, device, _check_checkpoint(spec, config))
        )
    if state is not None:
        if not same_training(state["fingerprint"], fingerprint, spec.input):
            raise ResumeMismatch(f"{checkpoint_path} was made with other settings ({state['fingerprint']})")
        try:
            core.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"].cpu())
        except (RuntimeError, ValueError, KeyError, TypeError) as error:  # e.g. weights of another shape
            corrupt = storage.CorruptFile(checkpoint_path, f"it does not fit the run's model: {error}")
            _load_or_move_aside(env, lambda: _raise(corrupt))
            return run_one(spec, config, pipeline, env, out, progress, after_epoch)  # from the start
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
        history = History(**state["history"])
        start_epoch = resumed_from = state["epoch"]
    autocast = _autocast(spec, device)

    epochs = range(start_epoch, config.epochs)
    if progress is not None:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="epochs", unit="epoch", leave=False, position=1, disable=not env.is_main,
                      initial=start_epoch, total=config.epochs)  # fmt: skip

    def before_epoch(epoch: int) -> None:
        if spec.variant == "dynamic":
            sync_buffers(env, core)  # every process measures the same network, so all pick the same rates
            _calibrate(core, pipeline, config, spec.energy)
        history.mean_rate.append(measure.mean_rate(measure.applied_compression(core)))
        sampler.set_epoch(epoch)

    def batches(epoch: int):
        order = list(sampler)
        generator = _epoch_generator(config, epoch, env.rank)
        for step in range(steps_per_epoch):
            yield pipeline.train_batch(order[step * config.batch_size : (step + 1) * config.batch_size], generator)

    def report_step(epoch: int, step: int) -> None:
        if progress is not None:
            progress.set_postfix_str(f"epoch {epoch + 1}/{config.epochs} step {step + 1}/{steps_per_epoch}")

    def finish_epoch(stats: EpochStats) -> None:
        history.epoch_seconds.append(stats.seconds)
        history.train_loss.append(sum_across(env, [stats.mean_step_loss])[0] / env.world_size)
        history.step_seconds_median.append(statistics.median(stats.step_seconds))
        if env.is_main:
            storage.save_torch(
                checkpoint_path,
                {
                    "model": core.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "epoch": stats.epoch + 1,
                    "history": history.to_dict(), "fingerprint": fingerprint, "spec": spec.to_dict(),
                } | ({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
            )  # fmt: skip
        barrier(env)
        if after_epoch is not None:
            after_epoch(spec, stats.epoch + 1)

    train_epochs(
        model, optimizer, batches, epochs, scheduler=scheduler, autocast=autocast, device=device,
        before_epoch=before_epoch, after_step=report_step, after_epoch=finish_epoch,
    )  # fmt: skip

    sync_buffers(env, core)
    top1, test_loss = evaluate(core, pipeline, env, max(config.batch_size, 256))
    row = _result_row(spec, config, pipeline, env, core, history, top1, test_loss, peak, autocast, resumed_from)
    row["fingerprint"] = fingerprint
    if env.is_main:
        storage.save_torch(run_dir / "model.pt", core.state_dict())
        storage.write_json(result_path, row)
        checkpoint_path.unlink(missing_ok=True)
    barrier(env)  # every process returns after rank 0 has written the run's files
    return row


def _raise(error: Exception):
    raise error


def _load_or_move_aside(env: DistEnv, load: Callable[[], Any]) -> Any:
    """``load()``, or ``None`` when the file is corrupt: rank 0 moves it aside (the others only skip it)."""
    try:
        return load()
    except storage.CorruptFile as error:
        barrier(env)  # every process has read (and rejected) the file before rank 0 moves it
        if env.is_main:
            storage.move_aside(error.path, str(error))
        return None


def _result_row(spec, config, pipeline, env, core, history, top1, test_loss, peak, autocast, resumed_from) -> dict:
    x, y = pipeline.plain_train_batch(min(config.batch_size, pipeline.num_train))
    example = x[:1]
    layers = measure.applied_compression(core)
    timed_epochs = history.epoch_seconds[1:] or history.epoch_seconds
    return spec.to_dict() | {
        "top1": top1,
        "test_loss": test_loss,
        "train_loss": history.train_loss[-1],
        "epochs": config.epochs,
        "seconds_per_epoch": statistics.mean(timed_epochs),
        "seconds_per_step": statistics.median(history.step_seconds_median),
        "saved_bytes": measure.measure_saved_bytes(core, F.cross_entropy, x, y, autocast),
        "saved_bytes_batch": len(x),
        "peak_rss_bytes": peak.peak_bytes(),
        "rss_growth_bytes": peak.growth_bytes(),
        "peak_rss_method": peak.method if resumed_from is None else f"{peak.method}, since resume at {resumed_from}",
        "gpu_peak_bytes": peak.gpu_peak_bytes(),
        "params": measure.count_parameters(core),
        "dense_macs": measure.dense_macs(core, example),
        "executed_macs": measure.executed_macs(core, example),
        "applied_rate": statistics.mean(history.mean_rate),
        "converted_layers": sum(r["converted"] for r in layers),
        "conv_layers": len(layers),
        "resumed_from_epoch": resumed_from,
        "device": str(env.device),
        "world_size": env.world_size,
        "threads": torch.get_num_threads(),
        "history": history.to_dict(),
        "layers": layers,
        "finite": math.isfinite(history.train_loss[-1]),
    }
