"""Run read_dct on hostile inputs in a memory- and time-limited subprocess, many cases per process.

The child imports freqnets once, then for each case resets its peak RSS (``/proc/self/clear_refs``),
reads, and reports one JSON line: the outcome (``"ok"`` with a digest of the coefficients, or the
freqnets error type, or ``"untyped"`` for any other exception), the peak RSS growth and the CPU time.
An address-space limit (``RLIMIT_AS``) keeps a regression from taking the machine down, and a
watchdog thread (``faulthandler.dump_traceback_later``) ends the child when one case runs too long.
When the child dies, the parent records the case it was in as a ``"crash"`` or ``"hang"`` and
continues with the next case in a new child. Linux only (``/proc``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent(
    """
    import faulthandler, hashlib, json, re, resource, sys, time
    import numpy as np
    from freqnets.jpeg import JpegError, read_dct

    def status(field):
        with open("/proc/self/status") as handle:
            return int(re.search(field + r":\\s+(\\d+)", handle.read()).group(1)) * 1024

    config = json.loads(sys.stdin.readline())
    read_dct(bytes.fromhex(config["warm"]))  # imports, tables and first allocations outside the measurements
    vm = status("VmSize")
    resource.setrlimit(resource.RLIMIT_AS, (vm + config["address_space"], vm + config["address_space"]))
    for line in sys.stdin:
        index, data, options = json.loads(line)
        if options.get("crop") is not None:
            options["crop"] = tuple(options["crop"])
        print(json.dumps(["start", index]), flush=True)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM (peak RSS) to the current RSS
        before = status("VmRSS")
        faulthandler.dump_traceback_later(config["case_timeout"], exit=True)
        start = time.process_time()
        try:
            coeffs = read_dct(bytes.fromhex(data), **options)
            digest = hashlib.sha1()
            for plane in coeffs.planes():
                digest.update(str(tuple(plane.shape)).encode())
                digest.update(plane.numpy())  # the buffer itself: no copy in the measured peak
            outcome = ["ok", digest.hexdigest()[:16], len(coeffs.warnings)]
        except JpegError as error:
            outcome = [type(error).__name__, str(error)[:160]]
        except BaseException as error:  # anything else is a finding
            outcome = ["untyped", repr(error)[:300]]
        cpu = time.process_time() - start
        faulthandler.cancel_dump_traceback_later()
        peak = status("VmHWM") - before
        print(json.dumps(["end", index, outcome, peak, cpu]), flush=True)
    """
)


def run_cases(
    cases: list[tuple[bytes, dict]],
    *,
    address_space: int = 2 << 30,
    case_timeout: float = 30.0,
    warm: bytes,
) -> list[dict]:
    """Read every ``(data, read_dct options)`` case in sandboxed children; one result per case, in order:
    ``{"outcome": [...], "peak": bytes, "cpu": seconds}``, outcome ``["crash", stderr]`` or ``["hang", ...]``
    when the case ended its child."""
    results: list[dict | None] = [None] * len(cases)
    config = json.dumps({"warm": warm.hex(), "address_space": address_space, "case_timeout": case_timeout})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    first = 0
    while first < len(cases):
        lines = [config] + [json.dumps([i, cases[i][0].hex(), cases[i][1]]) for i in range(first, len(cases))]
        run = subprocess.run(
            [sys.executable, "-c", _CHILD], input="\n".join(lines) + "\n", capture_output=True, text=True,
            timeout=case_timeout * 4 + 10 * (len(cases) - first), env=env,
        )  # fmt: skip
        started = None
        for line in run.stdout.splitlines():
            record = json.loads(line)
            if record[0] == "start":
                started = record[1]
            else:
                _, index, outcome, peak, cpu = record
                results[index] = {"outcome": outcome, "peak": peak, "cpu": cpu}
                started = None
        if started is None:  # every case of this child finished
            if run.returncode != 0:
                raise RuntimeError(f"sandbox child failed outside a case (rc {run.returncode}): {run.stderr[-2000:]}")
            break
        kind = "hang" if "Timeout (" in run.stderr else "crash"
        results[started] = {"outcome": [kind, f"rc {run.returncode}: {run.stderr[-600:]}"], "peak": 0, "cpu": 0.0}
        first = started + 1
    return [r if r is not None else {"outcome": ["lost", ""], "peak": 0, "cpu": 0.0} for r in results]
