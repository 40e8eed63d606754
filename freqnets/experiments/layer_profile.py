"""Where one band-limited layer's time goes on a device: host issue time, GPU time, kernels per call.

The first GPU run (docs/benchmarks.md, 2026-12-04) found a band-limited 3x3 layer's forward + backward
taking about 2 ms at 512 channels x 7x7 (batch 32) at every compress rate, where its product over
channels takes 0.2-0.3 ms and cuDNN's whole layer 0.3 ms: a fixed cost per call, not the arithmetic.
:func:`profile_rows` measures, side by side per implementation, what a call costs the host to issue
(``host_ms``: ``perf_counter`` over calls issued without waiting for the GPU), what it costs end to end
(``ms``: CUDA events, the GPU finishing the work), the GPU's busy time (``gpu_kernel_ms``: the
kernels' durations from ``torch.profiler``) and the kernels launched per call. When ``host_ms`` is about
``ms`` and ``gpu_kernel_ms`` is much smaller, the GPU waits for the host (launch-bound): fewer, larger
kernels or a CUDA graph help, not less arithmetic.

On the CPU (the device check's dry run) the same code runs at tiny sizes; there is no GPU time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from ..layers import BandLimitedConv2d
from .bench_kernels import BenchSettings, Deadline, cell, cupy_skip_reason, run_case, time_ms

__all__ = ["profile_report", "profile_rows"]

#: Layer shapes profiled: (channels, spatial size); the largest and the smallest ResNet-18 stage.
PROFILE_SHAPES = ((64, 56), (512, 7))


def _host_ms(fn: Callable[[], object], device: torch.device, calls: int) -> float:
    """Milliseconds per call the host spends issuing ``calls`` calls (the GPU may still be busy after)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    issued = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return issued * 1e3 / calls


def _kernel_profile(fn: Callable[[], object], device: torch.device, top: int = 6) -> dict:
    """Kernels launched by one call of ``fn``, their total GPU time and the ``top`` longest, via ``torch.profiler``."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    averages = prof.key_averages()
    ops = sum(e.count for e in averages if e.device_type == DeviceType.CPU and e.key.startswith("aten::"))
    if device.type != "cuda":
        return {"aten_ops": ops, "kernels": None, "gpu_kernel_ms": None, "top_kernels": []}
    gpu = [e for e in averages if e.device_type == DeviceType.CUDA]
    gpu.sort(key=lambda e: e.self_device_time_total, reverse=True)
    return {
        "aten_ops": ops,
        "kernels": sum(e.count for e in gpu),
        "gpu_kernel_ms": sum(e.self_device_time_total for e in gpu) / 1e3,
        "top_kernels": [
            {"name": e.key[:80], "count": e.count, "ms": e.self_device_time_total / 1e3} for e in gpu[:top]
        ],
    }


def profile_rows(settings: BenchSettings, deadline: Deadline, shapes=PROFILE_SHAPES, rate: float = 0.5) -> list[dict]:
    """One 3x3 layer's forward + backward per shape, float32: ``nn.Conv2d`` then ``BandLimitedConv2d`` per
    backend at ``rate``; each row ``{"ms", "host_ms", "gpu_kernel_ms", "kernels", "aten_ops", "top_kernels"}``."""
    device = torch.device(settings.device)
    batch, cupy_skip = settings.layer_batch, cupy_skip_reason(settings)
    if device.type != "cuda":
        shapes = settings.layer_shapes  # the dry run's tiny shapes
    rows = []
    for channels, size in shapes:
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device)
        x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
        grad = torch.randn(batch, channels, size, size, device=device)
        conv_name = "cudnn" if device.type == "cuda" else "conv2d"
        impls: list[tuple[str, Callable[[], nn.Module]]] = [(conv_name, lambda conv=conv: conv)]
        for backend in settings.backends:

            def make(backend=backend, channels=channels, conv=conv):
                layer = BandLimitedConv2d(channels, channels, 3, padding=1, bias=False, compress_rate=rate,
                                          backend=backend).to(device)  # fmt: skip
                layer.load_state_dict(conv.state_dict())
                return layer

            impls.append((f"bl_{backend}", make))
        for impl, make in impls:
            row = {"part": "profile", "shape": f"{channels}x{size}", "precision": "fp32", "batch": batch,
                   "impl": impl, "rate": None if impl == conv_name else rate}  # fmt: skip
            if impl == "bl_cupy" and cupy_skip:
                rows.append(row | {"skipped": cupy_skip})
                continue

            def run(make=make, x=x, grad=grad):
                layer = make()

                def step():
                    layer(x).backward(grad)

                times = time_ms(step, device, settings.warmup, settings.repeats)
                host = _host_ms(step, device, settings.repeats)
                return {"ms": statistics.median(times), "host_ms": host} | _kernel_profile(step, device)

            rows.append(run_case(row, run, deadline))
    return rows


def profile_report(rows: list[dict]) -> str:
    """Markdown table of :func:`profile_rows`, with the longest kernels of each band-limited row."""
    lines = ["### One layer's forward + backward: host time vs GPU time (float32)", "",
             "| shape | impl | rate | batch | ms per call | host ms per call | GPU kernel ms | kernels | aten ops "
             "| host / ms | note |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        ms, host = row.get("ms"), row.get("host_ms")
        share = None if ms is None or host is None or ms == 0 else host / ms
        note = row.get("error") or row.get("skipped") or ""
        lines.append(
            f"| {row['shape']} | {row['impl']} | {cell(row['rate'])} | {row['batch']} | {cell(ms, 3)} "
            f"| {cell(host, 3)} | {cell(row.get('gpu_kernel_ms'), 3)} | {cell(row.get('kernels'), 0)} "
            f"| {row.get('aten_ops', '-')} | {cell(share)} | {note[:120].replace('|', '/')} |"
        )
    tops = [(row, k) for row in rows for k in row.get("top_kernels", []) if row["impl"].startswith("bl_")]
    if tops:
        lines += ["", "Longest kernels of the band-limited rows (GPU ms per call, count):", ""]
        lines += [f"- {row['shape']} {row['impl']}: `{k['name']}` {k['ms']:.3f} ms x{k['count']}" for row, k in tops]
    return "\n".join(lines) + "\n"
