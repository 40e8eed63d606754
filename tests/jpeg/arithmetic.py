"""Arithmetic-coded twins of JPEG files for tests: the same coefficients, re-encoded by libjpeg.

Pillow cannot write arithmetic-coded JPEGs. ``jpegtran -arithmetic`` (libjpeg-turbo's tools) can, and
does not change the quantised coefficients; where it is not installed, the small C program
``arith_transcode.c`` beside this file (the same libjpeg calls) is compiled once with the C compiler
and the libjpeg headers that build freqnets' own extension. :func:`transcoder` is ``None`` when
neither is available (the tests then skip).
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

SOURCE = Path(__file__).with_name("arith_transcode.c")


@lru_cache(maxsize=1)
def _program() -> list[str] | None:
    """The command that re-encodes stdin to stdout (options appended), or ``None``."""
    jpegtran = shutil.which("jpegtran")
    if jpegtran is not None:
        return [jpegtran, "-copy", "none"]
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    folder = tempfile.mkdtemp(prefix="freqnets-arith-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    binary = Path(folder) / "arith_transcode"
    built = subprocess.run([compiler, "-O1", "-o", str(binary), str(SOURCE), "-ljpeg"], capture_output=True)
    return [str(binary)] if built.returncode == 0 else None


def transcoder() -> Callable[..., bytes] | None:
    """``transcode(data, arithmetic=True, progressive=False) -> bytes``, or ``None`` when no tool builds."""
    program = _program()
    if program is None:
        return None

    def transcode(data: bytes, arithmetic: bool = True, progressive: bool = False) -> bytes:
        options = (["-arithmetic"] if arithmetic else []) + (["-progressive"] if progressive else [])
        done = subprocess.run([*program, *options], input=data, capture_output=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"re-encoding failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    return transcode
