"""Files of the experiments' output folders: atomic writes, checked reads, caches, and a lock per folder.

Writes go to a temporary file in the same folder, then ``os.replace``: a reader (or a resumed run
after a kill) sees either the previous file or the new one, never a half-written one. A temporary
file's name holds the writing process's id, so that a sweep removes only those of dead processes.

A file that cannot be read back (truncated, garbage, or failing its check) raises :class:`CorruptFile`
naming it; :func:`move_aside` renames it to ``<name>.corrupt`` so that the run can go on from the last
good state.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pickle
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


class CorruptFile(ValueError):
    """A saved file that cannot be read back or fails its check; ``path`` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is corrupt ({reason})")
        self.path = Path(path)


class FolderLocked(RuntimeError):
    """Another live process holds the output folder's lock."""


class NotWritable(ValueError):
    """An output folder that is a file, or that cannot be created or written."""


def check_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed and write (then delete) a probe file in it, so that a bad output
    folder is refused before any work.

    Raises:
        NotWritable: ``folder`` is a file or device (``/dev/null``), or cannot be created or written
            (read-only, no permission, disk full).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotWritable(f"output folder {folder} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _temporary_beside(folder / "write-probe").unlink()
    except OSError as error:
        raise NotWritable(f"cannot write to output folder {folder}: {error.strerror or error}") from None


def _temporary_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(name)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def sweep_temporaries(folder: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files in ``folder`` left by processes that are no longer alive (a kill while
    writing); another live process's file in flight is kept. Returns the deleted paths."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        writer = tmp.name.split(".")[-3]  # .<name>.<pid>.<random>.tmp
        if writer.isdigit() and _process_alive(int(writer)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def write_text(path: Path, text: str) -> None:
    tmp = _temporary_beside(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=False, allow_nan=True) + "\n")


def read_json(path: Path, check: Callable[[Any], None] | None = None) -> Any:
    """The JSON value in ``path``, passed through ``check`` (which raises ``ValueError`` on a bad value).

    Raises:
        CorruptFile: the file is not valid JSON (truncated, garbage, too deep) or fails ``check``.
    """
    try:
        value = json.loads(Path(path).read_bytes())
        if check is not None:
            check(value)
    except (ValueError, UnicodeDecodeError, RecursionError, KeyError, TypeError, AttributeError) as error:
        raise CorruptFile(path, f"{type(error).__name__}: {error}") from error
    return value


def save_torch(path: Path, value: Any) -> None:
    tmp = _temporary_beside(path)
    try:
        torch.save(value, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_torch(path: Path, map_location: torch.device | str = "cpu", check: Callable[[Any], None] | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` (tensors, numbers, strings, lists and dicts only), passed
    through ``check`` (which raises ``ValueError``, ``KeyError`` or ``TypeError`` on a bad value).

    Raises:
        CorruptFile: the file cannot be unpickled (truncated, garbage, forbidden types) or fails ``check``.
    """
    try:
        value = torch.load(path, map_location=map_location, weights_only=True)
        if check is not None:
            check(value)
    except (
        EOFError, pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, ValueError, KeyError, TypeError,
        AttributeError, IndexError, UnicodeDecodeError, OSError,
    ) as error:  # fmt: skip
        if isinstance(error, PermissionError | FileNotFoundError | IsADirectoryError):
            raise  # the file system's answer, not the file's content
        raise CorruptFile(path, f"{type(error).__name__}: {error}") from error
    return value


def move_aside(path: Path, reason: str | None = None) -> Path:
    """Rename a corrupt ``path`` to ``<path>.corrupt`` (``.corrupt-2`` ... if taken), say so on stderr,
    and return the new path."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{n}")
    os.replace(path, target)
    print(f"freqnets: {reason or f'{path} is corrupt'}; moved it to {target.name} and continuing", file=sys.stderr)
    return target


def cached(
    cache_dir: Path, prefix: str, stamp: str, build: Callable[[], dict], check: Callable[[dict], None] | None = None
) -> dict:
    """``build()`` (a dict of tensors, numbers, strings, lists) kept in ``cache_dir``: built and saved
    atomically the first time, loaded (``weights_only``, then ``check``) afterwards. ``stamp`` names
    what it depends on (its hash is in the file name, ``<prefix>-<hash>.pt``). A corrupt cache file is
    moved aside and rebuilt."""
    path = Path(cache_dir) / f"{prefix}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        try:
            return load_torch(path, check=check)
        except CorruptFile as error:
            move_aside(path, str(error))
    value = build()
    save_torch(path, value)
    return value


class FolderLock:
    """A lock on an output folder (``fcntl.flock`` of ``<folder>/<name>``), held while a command works in
    it and released when it ends or dies (the kernel drops the lock of a dead process, so a stale lock
    file never blocks). ``shared`` locks coexist with each other (the shards of one study), not with an
    exclusive one. Use as a context manager.

    Raises:
        FolderLocked: another live process holds a conflicting lock (the message names the folder).
    """

    def __init__(self, folder: Path, shared: bool = False, name: str = ".lock") -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.shared = shared
        self._handle: int | None = None

    def __enter__(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(handle, 64, 0).decode(errors="replace").strip()
            os.close(handle)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                by = f" (pid {holder})" if holder.isdigit() else ""
                raise FolderLocked(f"{self.folder} is in use by another freqnets process{by}") from None
            raise
        if not self.shared:
            os.ftruncate(handle, 0)
            os.pwrite(handle, str(os.getpid()).encode(), 0)
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            os.close(self._handle)  # closing releases the flock
            self._handle = None
