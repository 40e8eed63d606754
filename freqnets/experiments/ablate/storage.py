"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A reader (or a resumed run after a kill) sees either the previous file or the
new one, never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _temporary_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(name)


def write_text(path: Path, text: str) -> None:
    tmp = _temporary_beside(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_torch(path: Path, value: Any) -> None:
    tmp = _temporary_beside(path)
    try:
        torch.save(value, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_torch(path: Path, map_location: torch.device | str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings, lists and dicts only."""
    return torch.load(path, map_location=map_location, weights_only=True)


def cached(cache_dir: Path, prefix: str, stamp: str, build: Callable[[], dict]) -> dict:
    """``build()`` (a dict of tensors, numbers, strings, lists) kept in ``cache_dir``: built and saved
    atomically the first time, loaded (``weights_only``) afterwards. ``stamp`` names what it depends on
    (its hash is in the file name, ``<prefix>-<hash>.pt``)."""
    path = Path(cache_dir) / f"{prefix}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        return load_torch(path)
    value = build()
    save_torch(path, value)
    return value
