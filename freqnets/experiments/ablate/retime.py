"""Side-by-side re-timing of the trained networks of a study, for time ratios a busy machine cannot skew.

The time columns of a study are measured while each run trains, minutes or hours
apart; on a shared machine the load changes in between. :func:`retime` loads every
finished run's weights into one process and times training steps (forward, loss,
backward, on the same batch) of all of them interleaved, round after round, so
every network sees the same machine conditions. It adds ``retimed_seconds_per_step``
(median over rounds) and ``retimed_time_ratio`` (to the same uncompressed run as
``time_ratio``) to each row.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers import BandLimitedConv1d, BandLimitedConv2d
from .config import AblationConfig
from .distributed import DistEnv
from .grid import RunSpec
from .report import _reference
from .runner import _autocast, make_model


def _restore_rates(model: nn.Module, layers: list[dict]) -> None:
    """Give band-limited layers the rates a dynamic run ended with (rates are not in the state dict)."""
    for row in layers:
        layer = model.get_submodule(row["name"]) if row["name"] else model
        if row["converted"] and isinstance(layer, (BandLimitedConv1d, BandLimitedConv2d)):
            layer.rate_frozen = False
            layer.compress_rate = row["compress_rate"]
            layer.rate_frozen = True


def retime(rows: list[dict], config: AblationConfig, pipelines: dict, out, rounds: int = 10) -> list[dict]:
    """Time ``rounds`` interleaved training steps of every run in ``rows`` (see the module docstring).

    Args:
        rows: finished result rows; each run's ``model.pt`` must be in ``out/runs/<run_id>/``.
        pipelines: input name -> input pipeline (``make_pipeline``).
        rounds: timed steps per network, after two warm-up steps.

    Returns:
        ``rows``, each with ``retimed_seconds_per_step`` and ``retimed_time_ratio`` added.
    """
    steps = []
    for row in rows:
        spec = RunSpec(row["model"], row["input"], row["domain"], row["variant"], row["rate"], row["energy"])
        pipeline = pipelines[spec.input]
        model = make_model(spec, config, pipeline.num_classes, pipeline.in_chans).to(pipeline.device)
        state = torch.load(out / "runs" / spec.run_id / "model.pt", map_location=pipeline.device, weights_only=True)
        model.load_state_dict(state)
        _restore_rates(model, row["layers"])
        model.train()
        x, y = pipeline.plain_train_batch(min(config.batch_size, pipeline.num_train))
        autocast = _autocast(spec, pipeline.device)

        def step(model=model, x=x, y=y, autocast=autocast) -> None:
            model.zero_grad(set_to_none=True)
            with autocast():
                loss = F.cross_entropy(model(x), y)
            loss.backward()

        steps.append(step)
    times: list[list[float]] = [[] for _ in rows]
    for round_index in range(rounds + 2):
        for i, step in enumerate(steps):
            start = time.perf_counter()
            step()
            if pipeline.device.type == "cuda":
                torch.cuda.synchronize(pipeline.device)
            if round_index >= 2:
                times[i].append(time.perf_counter() - start)
    for row, measured in zip(rows, times, strict=True):
        row["retimed_seconds_per_step"] = statistics.median(measured)
    for row in rows:
        ref = _reference(row, rows)
        row["retimed_time_ratio"] = row["retimed_seconds_per_step"] / ref["retimed_seconds_per_step"] if ref else None
    return rows


def retime_folder(out, config: AblationConfig, rows: list[dict], env: DistEnv, rounds: int) -> list[dict]:
    """:func:`retime` with the input pipelines of ``config`` (loaded from the folder's cache)."""
    from . import make_pipeline

    cache: dict = {}
    pipelines = {name: make_pipeline(name, config, env, cache) for name in sorted({r["input"] for r in rows})}
    return retime(rows, config, pipelines, out, rounds)
