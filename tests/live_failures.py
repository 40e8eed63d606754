"""pytest plugin: print each failure's traceback (and each slow test's time) the moment the test ends.

pytest prints tracebacks in its final summary, which a run killed at its time limit never reaches; the GPU
device check (``scripts/device_check.py``) runs its test parts with ``-p tests.live_failures`` so that a
killed part's log still says why each test failed and where the time went.
"""

from __future__ import annotations

import pytest

#: Tests whose call phase takes at least this many seconds get a timing line.
SLOW_SECONDS = 2.0

_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    lines = []
    if report.failed:
        lines += [f"[live] {report.nodeid} {report.when} FAILED after {report.duration:.1f} s:", report.longreprtext]
    elif report.when == "call" and report.duration >= SLOW_SECONDS:
        lines.append(f"[live] {report.nodeid} took {report.duration:.1f} s")
    reporter = _config.pluginmanager.get_plugin("terminalreporter") if _config else None
    for line in lines:
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line)
        else:
            print(line, flush=True)
