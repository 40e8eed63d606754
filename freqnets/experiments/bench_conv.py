"""``freqnets bench conv``: transform-domain convolutions vs ``nn.Conv1d``/``nn.Conv2d``, side by side.

For each layer shape, in one process and one run: forward+backward time
(median of repeated steps), bytes saved for backward (every tensor the autograd
graph keeps, through ``torch.autograd.graph.saved_tensors_hooks``), and the peak
growth of the process's resident memory during one step (Linux ``VmHWM`` after
resetting it; on a GPU, ``torch.cuda.max_memory_allocated``). Ratios are
printed against the framework's own convolution and against rate 0.
"""

from __future__ import annotations

import copy
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.benchmark import Timer

from ..layers import convert_model

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
    domain: str | None = None
    rate: float | None = None


def _saved_bytes(step) -> int:
    """Bytes autograd keeps for backward in one forward pass of ``step`` (the ablation's counter)."""
    from .ablate.measure import saved_for_backward_bytes

    return saved_for_backward_bytes(lambda: step(backward=False))


_PEAK_SCRIPT = """
import sys, torch
from pathlib import Path
from freqnets.experiments.bench_conv import build_case
torch.set_num_threads(int(sys.argv[4]))
module, x = build_case(sys.argv[1], sys.argv[2], float(sys.argv[3]), domain=sys.argv[5])
def step():
    y = module(x)
    y.backward(torch.ones_like(y))
def rss(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
before = rss("VmRSS")
step()
print(rss("VmHWM") - before)
"""


def _resident_peak(case: str, implementation: str, rate: float, device: torch.device, domain: str) -> int | None:
    """Peak memory growth of one fresh forward+backward step (a new process on CPU, so no allocator cache)."""
    if device.type == "cuda":
        module, x = build_case(case, implementation, rate, device, domain)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        y = module(x)
        y.backward(torch.ones_like(y))
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    if not Path("/proc/self/status").exists():
        return None
    args = [sys.executable, "-c", _PEAK_SCRIPT, case, implementation, str(rate), str(torch.get_num_threads()), domain]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def build_case(case: str, implementation: str, rate: float, device: torch.device | str = "cpu", domain: str = "fft"):
    """The module and input of one benchmark row: ``case`` is a key of :data:`CASES`.

    ``implementation`` is ``"reference"`` (``nn.Conv1d``/``nn.Conv2d``) or anything else for the
    reference converted to ``domain`` at ``rate`` by :func:`freqnets.convert_model`.
    """
    shape, spatial_dims, kwargs = CASES[case]
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, requires_grad=True)
    reference = (nn.Conv1d if spatial_dims == 1 else nn.Conv2d)(**kwargs).to(device)
    if implementation == "reference":
        return reference, x
    converted = convert_model(copy.deepcopy(reference), domain=domain, compress_rate=rate)
    if converted.freqnets_conversion.converted != 1:
        raise ValueError(f"{case}: {converted.freqnets_conversion.rows[0].note}")
    return converted, x


def measure(
    case: str,
    implementation: str,
    rate: float,
    device: torch.device,
    min_run_time: float,
    peak: bool = True,
    domain: str = "fft",
) -> Measurement:
    """Time and memory of forward+backward steps of one implementation on one case."""
    module, x = build_case(case, implementation, rate, device, domain)

    def step(backward: bool = True) -> None:
        y = module(x)
        if backward:
            y.backward(torch.ones_like(y))

    step()  # warm up caches and plans
    timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())
    seconds = timer.blocked_autorange(min_run_time=min_run_time).median
    reference = implementation == "reference"
    name = type(module).__name__ if reference else f"{domain} {rate:g}"
    peak_bytes = _resident_peak(case, implementation, rate, device, domain) if peak else None
    return Measurement(case, name, seconds * 1e3, _saved_bytes(step), peak_bytes, None if reference else domain, rate)


def _cases() -> dict[str, tuple]:
    cases = {}
    for batch, channels, size in RESNET18_CIFAR_SHAPES:
        kwargs = dict(in_channels=channels, out_channels=channels, kernel_size=3, padding=1, bias=False)
        cases[f"{channels}ch@{size}x{size} b{batch} 3x3"] = ((batch, channels, size, size), 2, kwargs)
    batch, channels, length, kernel = LONG_1D
    kwargs = dict(in_channels=channels, out_channels=channels, kernel_size=kernel, padding=kernel // 2, bias=False)
    cases[f"1D {channels}ch@{length} b{batch} k{kernel}"] = ((batch, channels, length), 1, kwargs)
    return cases


#: Benchmark cases by label: (input shape, spatial dims, convolution arguments).
CASES = _cases()


def run(
    rates: list[float],
    device: str,
    min_run_time: float,
    quick: bool,
    peak: bool = True,
    domains: list[str] | tuple[str, ...] = ("fft",),
) -> list[Measurement]:
    """Every case: the framework's convolution, then each domain at each rate (2D-only domains skip 1D)."""
    dev = torch.device(device)
    labels = list(CASES)
    if quick:
        labels = [labels[0], labels[-1]]
    results = []
    for case in labels:
        results.append(measure(case, "reference", 0.0, dev, min_run_time, peak))
        for domain in domains:
            if CASES[case][1] == 1 and domain != "fft":
                continue  # only the band-limited layer has a 1D form
            results += [measure(case, "converted", rate, dev, min_run_time, peak, domain) for rate in rates]
    return results


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f}"


def report(results: list[Measurement], device: str) -> str:
    lines = [
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {platform.machine()}",
        "",
        "| layer | implementation | fwd+bwd ms | vs conv | vs rate 0 | saved MiB | vs rate 0 | peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_layer: dict[str, list[Measurement]] = {}
    for m in results:
        by_layer.setdefault(m.layer, []).append(m)
    for layer, rows in by_layer.items():
        conv = rows[0]
        for r in rows:
            zero = next((z for z in rows if z.domain == r.domain and z.rate == 0.0 and z.domain), None)
            vs_zero_t = f"{r.milliseconds / zero.milliseconds:.2f}" if zero and r is not conv else ""
            vs_zero_m = f"{r.saved_bytes / zero.saved_bytes:.2f}" if zero and r is not conv else ""
            lines.append(
                f"| {layer} | {r.implementation} | {r.milliseconds:.1f} | {r.milliseconds / conv.milliseconds:.2f} | "
                f"{vs_zero_t} | {_mib(r.saved_bytes)} | {vs_zero_m} | {_mib(r.peak_bytes)} |"
            )
    return "\n".join(lines)


#: Product dtypes compared by :func:`precision_rows` (``None``: the default, float32 for every input).
PRECISIONS = (None, torch.bfloat16, torch.float16)


def precision_rows(rate: float, device: str, min_run_time: float, quick: bool) -> str:
    """The band-limited product over channels in float32, bfloat16 and float16: time and error, side by side.

    For each 2D case: forward+backward time of :func:`freqnets.layers.band_limited_conv2d` with
    ``product_dtype`` set (the transforms stay float32), its ratio to float32, and the error of the
    output and of the input gradient against the same computation in float64 (max-norm relative,
    ``max|a - b| / max|b|``). A bf16 ``F.conv2d`` under autocast is listed as the yardstick of what
    autocast users already accept.
    """
    dev = torch.device(device)
    labels = [label for label in CASES if CASES[label][1] == 2]
    labels = labels[:1] if quick else labels
    lines = [
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, rate {rate:g}",
        "",
        "| layer | product dtype | fwd+bwd ms | vs float32 | output error | input-gradient error |",
        "|---|---|---|---|---|---|",
    ]
    for label in labels:
        lines += _precision_case(label, rate, dev, min_run_time)
    return "\n".join(lines)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


def _precision_case(label: str, rate: float, dev: torch.device, min_run_time: float) -> list[str]:
    from ..layers import band_limited_conv2d

    shape, _, kwargs = CASES[label]
    torch.manual_seed(0)
    x64 = torch.randn(shape, device=dev, dtype=torch.float64, requires_grad=True)
    w64 = torch.randn(kwargs["out_channels"], kwargs["in_channels"], 3, 3, device=dev, dtype=torch.float64) / 24
    grad64 = torch.randn(shape[0], kwargs["out_channels"], *shape[2:], device=dev, dtype=torch.float64)
    x, w, grad = x64.detach().float().requires_grad_(), w64.float(), grad64.float()

    def timed(step, y_exact, gx_exact) -> tuple[float, float, float]:
        y, gx = step()
        seconds = Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=min_run_time).median
        return seconds, _relative(y, y_exact), _relative(gx, gx_exact)

    lines, base = [], None
    y64 = band_limited_conv2d(x64, w64, padding=1, compress_rate=rate)
    (gx64,) = torch.autograd.grad(y64, x64, grad64)
    for dtype in PRECISIONS:

        def step(dtype=dtype):
            y = band_limited_conv2d(x, w, padding=1, compress_rate=rate, product_dtype=dtype)
            return y, torch.autograd.grad(y, x, grad)[0]

        seconds, y_error, gx_error = timed(step, y64, gx64)
        base = base or seconds
        name = "float32 (default)" if dtype is None else str(dtype).removeprefix("torch.")
        ratio = seconds / base
        lines.append(f"| {label} | {name} | {seconds * 1e3:.1f} | {ratio:.2f} | {y_error:.1e} | {gx_error:.1e} |")

    def autocast_conv():
        with torch.autocast(dev.type, torch.bfloat16):
            y = nn.functional.conv2d(x, w, padding=1)
        return y, torch.autograd.grad(y, x, grad)[0]

    y_conv = nn.functional.conv2d(x64, w64, padding=1)
    (gx_conv,) = torch.autograd.grad(y_conv, x64, grad64)
    seconds, y_error, gx_error = timed(autocast_conv, y_conv, gx_conv)
    lines.append(
        f"| {label} | F.conv2d (rate 0), bf16 autocast | {seconds * 1e3:.1f} | {seconds / base:.2f} "
        f"| {y_error:.1e} | {gx_error:.1e} |"
    )
    return lines
