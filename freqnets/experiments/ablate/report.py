"""Results files of an ablation: ``results.csv``, ``results.json``, ``config.toml``, the markdown table."""

from __future__ import annotations

import csv
import io
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from .. import storage
from .config import AblationConfig

#: Columns of ``results.csv`` (the rows of ``results.json`` also hold ``history`` and per-layer ``layers``).
CSV_COLUMNS = [
    "run_id", "model", "input", "domain", "variant", "rate", "energy", "applied_rate", "top1", "test_loss",
    "train_loss", "epochs", "seconds_per_epoch", "seconds_per_step", "saved_bytes", "saved_bytes_batch",
    "peak_rss_bytes", "rss_growth_bytes", "peak_rss_method", "gpu_peak_bytes", "params", "dense_macs", "executed_macs",
    "converted_layers", "conv_layers", "time_ratio", "saved_ratio", "growth_ratio", "reference_run",
    "top1_delta_vs_conv", "retimed_seconds_per_step", "retimed_time_ratio", "resumed_from_epoch", "device",
    "world_size", "threads",
]  # fmt: skip
SCHEMA_VERSION = 1


def environment() -> dict[str, Any]:
    """Versions and the machine, recorded in ``results.json``."""
    import numpy
    import timm

    import freqnets

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(freqnets.__file__).resolve().parents[1],
        ).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "freqnets": freqnets.__version__,
        "git_commit": commit,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "hostname": socket.gethostname(),
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _reference(row: dict, rows: list[dict]) -> dict | None:
    """The uncompressed run ``row`` is normalised to: its domain at rate 0 (dynamic runs: ``fft`` at rate 0),
    or for the unconverted baselines, the float32 ``conv`` run."""
    same = [r for r in rows if r["model"] == row["model"] and r["input"] == row["input"]]
    domain = row["domain"]
    if row["variant"] in ("fixed", "dynamic"):
        for r in same:
            if r["domain"] == domain and r["variant"] == "fixed" and r["rate"] == 0.0:
                return r
    for r in same:
        if r["variant"] == "conv":
            return r
    return None


def add_ratios(rows: list[dict]) -> list[dict]:
    """Add time, saved-bytes and peak ratios to the reference run, and the top-1 change vs ``conv``."""
    for row in rows:
        ref = _reference(row, rows)
        conv = next((r for r in rows if r["variant"] == "conv" and r["model"] == row["model"]
                     and r["input"] == row["input"]), None)  # fmt: skip
        row["reference_run"] = ref["run_id"] if ref else None
        for key, source in (("time_ratio", "seconds_per_step"), ("saved_ratio", "saved_bytes"),
                            ("growth_ratio", "rss_growth_bytes")):  # fmt: skip
            row[key] = row[source] / ref[source] if ref and ref[source] else None
        row["top1_delta_vs_conv"] = row["top1"] - conv["top1"] if conv else None
    return rows


def write_results(out: Path, config: AblationConfig, rows: list[dict], grid: list[str], extra: dict) -> None:
    """``results.json`` (config, environment, grid, rows), ``results.csv`` and ``config.toml``, atomically.

    ``rows`` get their ratio columns (:func:`add_ratios`) first."""
    rows = add_ratios(rows)
    document = {
        "schema_version": SCHEMA_VERSION,
        "config": config.to_dict(),
        "environment": environment(),
        "grid": grid,
        "complete": sorted(grid) == sorted(r["run_id"] for r in rows),
        **extra,
        "runs": rows,
    }
    storage.write_json(out / "results.json", document)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(out / "results.csv", buffer.getvalue())
    storage.write_text(out / "config.toml", to_toml(config.to_dict()))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(values: dict[str, Any]) -> str:
    """The resolved config as TOML under ``[ablate]`` (readable again with ``--config``)."""
    lines = ["# freqnets ablate: the resolved configuration of this study", "[ablate]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f}"


def _ratio(r: float | None) -> str:
    return "" if r is None else f" ({r:.2f}x)"


def markdown_table(rows: list[dict]) -> str:
    """One line per run: accuracy, time, memory (ratios to the uncompressed run), cost and applied rate.

    Rows re-timed side by side (``--retime``) get a column of those step times and ratios.
    """
    retimed = any(r.get("retimed_seconds_per_step") is not None for r in rows)
    lines = [
        "| model | input | domain | variant | rate | applied rate | top-1 | vs conv | s/epoch | ms/step "
        + ("| side-by-side ms/step " if retimed else "")
        + "| saved for backward MiB | RSS growth MiB | params | executed MMACs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if retimed else ""),
    ]
    for r in rows:
        setting = f"E={r['energy']:g}" if r["energy"] is not None else f"{r['rate']:g}"
        delta = r.get("top1_delta_vs_conv")
        lines.append(
            f"| {r['model']} | {r['input']} | {r['domain']} | {r['variant']} | {setting} | {r['applied_rate']:.3f} "
            f"| {r['top1']:.2%} | {'' if delta is None else f'{delta * 100:+.2f}'} | {r['seconds_per_epoch']:.1f} "
            f"| {r['seconds_per_step'] * 1e3:.0f}{_ratio(r.get('time_ratio'))} "
            + (f"| {r['retimed_seconds_per_step'] * 1e3:.0f}{_ratio(r.get('retimed_time_ratio'))} " if retimed else "")
            + f"| {_mib(r['saved_bytes'])}{_ratio(r.get('saved_ratio'))} "
            f"| {_mib(r['rss_growth_bytes'])}{_ratio(r.get('growth_ratio'))} | {r['params']:,} "
            f"| {r['executed_macs'] / 1e6:.2f} |"
        )
    return "\n".join(lines)
