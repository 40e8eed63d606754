"""``freqnets bench conv``: band-limited convolution vs ``nn.Conv1d``/``nn.Conv2d``, side by side.

For each layer shape, in one process and one run: forward+backward time
(median of repeated steps), bytes saved for backward (every tensor the autograd
graph keeps, through ``torch.autograd.graph.saved_tensors_hooks``), and the peak
growth of the process's resident memory during one step (Linux ``VmHWM`` after
resetting it; on a GPU, ``torch.cuda.max_memory_allocated``). Ratios are
printed against the framework's own convolution and against rate 0.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.benchmark import Timer

from ..layers import BandLimitedConv1d, BandLimitedConv2d

#: ResNet-18 CIFAR layer shapes (batch, channels, size) with 3x3 kernels, and the long 1D case.
RESNET18_CIFAR_SHAPES = [(128, 64, 32), (128, 128, 16), (128, 256, 8), (128, 512, 4)]
LONG_1D = (32, 32, 4096, 129)


@dataclass
class Measurement:
    layer: str
    implementation: str
    milliseconds: float
    saved_bytes: int
    peak_bytes: int | None


def _saved_bytes(step) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(backward=False)
    return sum(storages.values())


def _resident_peak(step, device: torch.device) -> int | None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(backward=True)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    status = Path("/proc/self/status")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return None

    def read(field: str) -> int:
        for line in status.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        raise KeyError(field)

    before = read("VmRSS")
    step(backward=True)
    return read("VmHWM") - before


def measure(layer_name: str, name: str, module: nn.Module, x: torch.Tensor, min_run_time: float) -> Measurement:
    """Time and memory of one forward+backward step of ``module`` on ``x``."""

    def step(backward: bool = True) -> None:
        y = module(x)
        if backward:
            y.backward(torch.ones_like(y))

    step()  # warm up caches and plans
    seconds = Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=min_run_time).median
    return Measurement(layer_name, name, seconds * 1e3, _saved_bytes(step), _resident_peak(step, x.device))


def run(rates: list[float], device: str, min_run_time: float, quick: bool) -> list[Measurement]:
    dev = torch.device(device)
    cases: list[tuple[str, type, type, tuple, dict]] = []
    shapes = RESNET18_CIFAR_SHAPES[:1] if quick else RESNET18_CIFAR_SHAPES
    for batch, channels, size in shapes:
        cases.append(
            (
                f"{channels}ch@{size}x{size} b{batch} 3x3",
                nn.Conv2d,
                BandLimitedConv2d,
                (batch, channels, size, size),
                dict(in_channels=channels, out_channels=channels, kernel_size=3, padding=1, bias=False),
            )
        )
    batch, channels, length, kernel = LONG_1D
    cases.append(
        (
            f"1D {channels}ch@{length} b{batch} k{kernel}",
            nn.Conv1d,
            BandLimitedConv1d,
            (batch, channels, length),
            dict(in_channels=channels, out_channels=channels, kernel_size=kernel, padding=kernel // 2, bias=False),
        )
    )
    results = []
    for label, reference_cls, banded_cls, shape, kwargs in cases:
        torch.manual_seed(0)
        x = torch.randn(shape, device=dev, requires_grad=True)
        reference = reference_cls(**kwargs).to(dev)
        results.append(measure(label, reference_cls.__name__, reference, x, min_run_time))
        for rate in rates:
            banded = banded_cls(**kwargs, compress_rate=rate).to(dev)
            banded.load_state_dict(reference.state_dict())
            results.append(measure(label, f"rate {rate:g}", banded, x, min_run_time))
    return results


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f}"


def report(results: list[Measurement], device: str) -> str:
    lines = [
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}",
        "",
        "| layer | implementation | fwd+bwd ms | vs conv | vs rate 0 | saved MiB | vs rate 0 | peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_layer: dict[str, list[Measurement]] = {}
    for m in results:
        by_layer.setdefault(m.layer, []).append(m)
    for layer, rows in by_layer.items():
        conv = rows[0]
        zero = next((r for r in rows if r.implementation == "rate 0"), None)
        for r in rows:
            vs_zero_t = f"{r.milliseconds / zero.milliseconds:.2f}" if zero and r is not conv else ""
            vs_zero_m = f"{r.saved_bytes / zero.saved_bytes:.2f}" if zero and r is not conv else ""
            lines.append(
                f"| {layer} | {r.implementation} | {r.milliseconds:.1f} | {r.milliseconds / conv.milliseconds:.2f} | "
                f"{vs_zero_t} | {_mib(r.saved_bytes)} | {vs_zero_m} | {_mib(r.peak_bytes)} |"
            )
    return "\n".join(lines)
