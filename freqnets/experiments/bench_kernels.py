"""CuPy kernels vs the torch path vs cuDNN: product, one layer and a ResNet-18 training step, ratios in one run.

    freqnets bench kernels [--rates 0,0.5,0.75] [--quick]
    python -m freqnets.experiments.bench_kernels [--batch 32] [--rates 0,0.5,0.75] [--precisions fp32,bf16,bf16_cl]
        [--repeats 10] [--quick] [--no-model] [--threads N]

``scripts/device_check.py`` runs the same measurements on the GPU machine (docs/device.md).

Each measurement compares implementations side by side in one process, on one device:

* ``product``: the product over channels on the kept spectra, the torch path
  (:func:`~freqnets.layers.spectral_product.reference_product`) against the CuPy kernel
  (:func:`~freqnets.layers.spectral_product.bl_product`, 4-multiplication and Gauss);
* ``layer``: one 3x3 layer forward + backward, ``BandLimitedConv2d`` with ``backend='torch'`` and
  ``'cupy'`` against ``nn.Conv2d`` (cuDNN on a GPU);
* ``step``: a whole SGD training step of ResNet-18, ImageNet stem at 224 px and the CIFAR variant
  at 32 px, ``bl_resnet18[_cifar]`` per backend and rate against timm's ``resnet18`` (cuDNN).

Precisions: ``fp32`` (float32), ``bf16`` (bfloat16 autocast) and ``bf16_cl`` (bfloat16 autocast,
model and input in ``channels_last``, which cuDNN's bf16 convolutions prefer). Times are the median
of ``repeats`` calls after ``warmup`` calls, read with CUDA events on a GPU (``perf_counter`` on the
CPU); ``peak_mib`` is ``torch.cuda.max_memory_allocated`` during one call after a reset (model,
gradients and optimizer state included), ``extra_mib`` the part above what was allocated before.

Every row is a flat dict (``part``, ``shape``, ``rate``, ``precision``, ``impl`` and the numbers, or
``error`` / ``skipped``), so one failing case costs one row, and a :class:`Deadline` stops a part
between cases. On a machine without CUDA or CuPy the same code runs on the CPU at tiny sizes
(:data:`DRY_RUN`), with the CuPy rows marked skipped and the reason.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, replace

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import kernels
from ..layers import BandLimitedConv2d
from ..layers.spectral_plan import make_plan
from ..layers.spectral_product import bl_product, reference_product
from ..models import use_cifar_stem

__all__ = [
    "DRY_RUN",
    "PRECISIONS",
    "RESNET18_LAYERS",
    "BenchSettings",
    "Deadline",
    "layer_rows",
    "measure",
    "model_step_rows",
    "product_rows",
    "report",
    "targets",
    "targets_table",
]

#: ``fp32``: float32; ``bf16``: bfloat16 autocast; ``bf16_cl``: bfloat16 autocast and channels_last.
#: ``tf32``: float32 tensors with TF32 tensor-core matmuls allowed (``torch.backends.cuda.matmul.allow_tf32``;
#: off by default in torch, while cuDNN's float32 convolutions use TF32 by default, so ``fp32`` rows compare
#: full-float32 transforms with TF32 convolutions; ``tf32`` rows compare like with like).
PRECISIONS = ("fp32", "tf32", "bf16", "bf16_cl")

#: The 3x3 stride-1 convolutions of ResNet-18 at 224 px: (channels, spatial size) per stage.
RESNET18_LAYERS = ((64, 56), (128, 28), (256, 14), (512, 7))


@dataclass(frozen=True)
class BenchSettings:
    """Sizes and repetitions of one benchmark run (the defaults are the GPU run's)."""

    device: str = "cuda"
    rates: tuple[float, ...] = (0.0, 0.5, 0.75)
    precisions: tuple[str, ...] = PRECISIONS
    backends: tuple[str, ...] = ("torch", "cupy")
    layer_shapes: tuple[tuple[int, int], ...] = RESNET18_LAYERS
    product_batch: int = 32
    layer_batch: int = 32
    step_batch_imagenet: int = 64
    step_batch_cifar: int = 256
    imagenet_size: int = 224
    warmup: int = 3
    repeats: int = 10
    #: Training steps also captured in a CUDA graph and replayed (impl ``<impl>+graph``; GPU only): which
    #: rates and precisions (the graph removes the host's per-kernel launch cost from the step's time).
    graph_rates: tuple[float, ...] = (0.0, 0.5)
    graph_precisions: tuple[str, ...] = ("fp32", "bf16_cl")
    width: int = 64  # ResNet-18 stage widths width * (1, 2, 4, 8); the dry run narrows them (not below 8: torch
    # 2.14's CPU convolution backward in channels_last corrupts the heap with 4 channels)


#: The CPU dry run: the same code path at sizes that take seconds.
DRY_RUN = BenchSettings(
    device="cpu", rates=(0.0, 0.5), precisions=("fp32", "bf16_cl"), layer_shapes=((8, 7),), product_batch=2,
    layer_batch=2, step_batch_imagenet=2, step_batch_cifar=2, imagenet_size=32, warmup=1, repeats=1, width=8,
)  # fmt: skip


class Deadline:
    """A point in time a part must finish by; ``left()`` seconds remain."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def expired(self) -> bool:
        return self.left() <= 0


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _synchronize(device)
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in events]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def peak_mib(fn: Callable[[], object], device: torch.device) -> tuple[float | None, float | None]:
    """(peak MiB allocated during one call of ``fn``, the part above what was allocated before); None on CPU."""
    if device.type != "cuda":
        return None, None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return peak / 2**20, (peak - base) / 2**20


def measure(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> dict:
    """``{"ms": median, "ms_min", "ms_max", "repeats", "peak_mib", "extra_mib", "kernel_launches"}`` of ``fn``.

    ``kernel_launches`` counts the CuPy kernels the timed calls launched (0 proves a path ran without them).
    """
    before = kernels.launch_count()
    times = time_ms(fn, device, warmup, repeats)
    launches = kernels.launch_count() - before
    peak, extra = peak_mib(fn, device)
    return {"ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times), "repeats": repeats,
            "peak_mib": peak, "extra_mib": extra, "kernel_launches": launches}  # fmt: skip


def run_case(row: dict, fn: Callable[[], dict], deadline: Deadline) -> dict:
    """``row`` completed by ``fn()``'s numbers, or by ``error`` (the exception) or ``skipped`` (no time left)."""
    if deadline.expired():
        return row | {"skipped": "time budget of the part spent"}
    try:
        return row | fn()
    except Exception as error:  # one case's failure is a result, not the end of the run
        return row | {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=6)}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def cupy_skip_reason(settings: BenchSettings) -> str | None:
    if "cupy" not in settings.backends:
        return "not requested"
    if settings.device != "cuda":
        return "backend='cupy' runs on CUDA tensors only (CPU run)"
    return kernels.unavailable_reason()


def _products(x_spec: torch.Tensor, w_spec: torch.Tensor, batch: int) -> dict[str, Callable[[], torch.Tensor]]:
    """The forward product ``(2, K, B*C) x (2, K, O*C) -> (2, K, B*O)`` (one group) by each implementation."""
    return {
        "torch": lambda: reference_product("forward", x_spec, w_spec, batch, 1),
        "cupy": lambda: bl_product("forward", x_spec, w_spec, batch, 1, False, "cupy"),
        "cupy_gauss": lambda: bl_product("forward", x_spec, w_spec, batch, 1, True, "cupy"),
    }


def product_rows(settings: BenchSettings, deadline: Deadline) -> list[dict]:
    """The product over channels of one 3x3 layer's forward pass, float32, per layer shape and rate."""
    device = torch.device(settings.device)
    batch, cupy_skip = settings.product_batch, cupy_skip_reason(settings)
    rows = []
    for channels, size in settings.layer_shapes:
        for rate in settings.rates:
            kept = make_plan((size + 2, size + 2), rate).num_kept
            x_spec = torch.randn(2, kept, batch * channels, device=device)
            w_spec = torch.randn(2, kept, channels * channels, device=device)
            for impl, fn in _products(x_spec, w_spec, batch).items():
                row = {"part": "product", "shape": f"{channels}x{size}", "rate": rate, "kept": kept,
                       "precision": "fp32", "impl": impl, "batch": batch}  # fmt: skip
                if impl != "torch" and cupy_skip:
                    rows.append(row | {"skipped": cupy_skip})
                    continue
                timed = lambda fn=fn: measure(fn, device, settings.warmup, settings.repeats)  # noqa: E731
                rows.append(run_case(row, timed, deadline))
    return rows


@contextmanager
def _tf32(precision: str):
    """TF32 matmuls allowed for ``tf32`` (forward, backward and optimizer step alike), the flag restored after."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32" or before
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _autocast(precision: str, device: torch.device, cache_enabled: bool = True):
    """bf16 autocast for the forward pass of ``bf16*`` precisions (the backward follows the forward's dtypes)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"),
                          cache_enabled=cache_enabled)  # fmt: skip


def _memory_format(precision: str) -> torch.memory_format:
    return torch.channels_last if precision.endswith("_cl") else torch.contiguous_format


def layer_rows(settings: BenchSettings, deadline: Deadline) -> list[dict]:
    """One 3x3 layer forward + backward per shape, precision and rate: nn.Conv2d, then each backend."""
    device = torch.device(settings.device)
    batch, cupy_skip = settings.layer_batch, cupy_skip_reason(settings)
    conv_name = "cudnn" if device.type == "cuda" else "conv2d"
    rows = []
    for channels, size in settings.layer_shapes:
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device)
        for precision in settings.precisions:
            fmt = _memory_format(precision)
            x = torch.randn(batch, channels, size, size, device=device).contiguous(memory_format=fmt)
            x.requires_grad_(True)
            grad = torch.randn(batch, channels, size, size, device=device).contiguous(memory_format=fmt)

            def step(layer, x=x, grad=grad, precision=precision):
                with _tf32(precision):
                    with _autocast(precision, device):
                        out = layer(x)
                    out.backward(grad.to(out.dtype))

            base = {"part": "layer", "shape": f"{channels}x{size}", "precision": precision, "batch": batch}
            row = base | {"rate": None, "impl": conv_name}
            conv.to(memory_format=fmt)
            rows.append(run_case(row, lambda step=step, conv=conv: measure(lambda: step(conv), device, settings.warmup,
                                                                        settings.repeats), deadline))  # fmt: skip
            for rate in settings.rates:
                for backend in settings.backends:
                    row = base | {"rate": rate, "impl": f"bl_{backend}"}
                    if backend == "cupy" and cupy_skip:
                        rows.append(row | {"skipped": cupy_skip})
                        continue

                    def run(rate=rate, backend=backend, fmt=fmt, step=step, channels=channels, conv=conv):
                        layer = BandLimitedConv2d(channels, channels, 3, padding=1, bias=False, compress_rate=rate,
                                                  backend=backend).to(device, memory_format=fmt)  # fmt: skip
                        layer.load_state_dict(conv.state_dict())
                        return measure(lambda: step(layer), device, settings.warmup, settings.repeats)

                    rows.append(run_case(row, run, deadline))
    return rows


def _resnet18(variant: str, impl: str, rate: float | None, width: int = 64) -> nn.Module:
    """timm's ``resnet18`` (impl ``cudnn``/``conv2d``) or ``bl_resnet18`` at ``rate`` with ``impl``'s backend."""
    cifar = variant == "cifar"
    size = {} if width == 64 else {"stem_width": width, "channels": tuple(width * m for m in (1, 2, 4, 8))}
    if impl.startswith("bl_"):
        name = "bl_resnet18_cifar" if cifar else "bl_resnet18"
        return timm.create_model(name, compress_rate=rate, backend=impl.removeprefix("bl_"), **size)
    model = timm.create_model("resnet18", num_classes=10 if cifar else 1000, **size)
    if cifar:
        use_cifar_stem(model, "conv1", "maxpool")
    return model


def training_step(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: str, graph: bool = False
) -> Callable[[], torch.Tensor]:
    """One SGD (momentum 0.9) step of ``model`` on the batch under ``precision``; returns the step function.

    ``model`` and ``images`` (``(B, 3, H, W)``) must be on the same device; ``bf16_cl`` puts both in
    channels_last. The step returns the (detached) loss. With ``graph=True`` (CUDA only) the step is run
    three times on a side stream, then captured once in a CUDA graph, and each call replays the graph
    (PyTorch's whole-network capture: static inputs, gradients and optimizer state in the graph's memory),
    so the host issues one launch per step instead of one per kernel.

    Raises:
        ValueError: ``graph=True`` for tensors that are not on a CUDA device.
    """
    fmt = _memory_format(precision)
    model.to(memory_format=fmt).train()
    images = images.contiguous(memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    device = images.device
    if graph and device.type != "cuda":
        raise ValueError(f"a CUDA graph needs CUDA tensors, got tensors on {device}")

    def body() -> torch.Tensor:
        with _tf32(precision):
            # autocast's weight cache would hold casts made outside the graph's memory: off while capturing
            with _autocast(precision, device, cache_enabled=not graph):
                loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
        return loss.detach()

    if not graph:

        def step() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            return body()

        return step
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up: cuDNN's algorithm search, cached DFT matrices, CuPy's module load
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            body()
    torch.cuda.current_stream(device).wait_stream(side)
    captured = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)  # backward allocates the gradients inside the graph's memory
    with torch.cuda.graph(captured):
        static_loss = body()
    torch.cuda.synchronize(device)

    def replay() -> torch.Tensor:
        captured.replay()
        return static_loss

    # The graph reads and writes the model's parameters and gradients, the optimizer's momentum buffers and the
    # batch: they must live as long as the graph (nothing else holds the optimizer or the channels_last batch).
    replay.keep_alive = (model, optimizer, images, labels, body)
    # Memory of the replays lives in the graph's private pool and is not counted as allocated there: the step's
    # peak is the one of the eager warm-up steps and the capture (activations counted while alive).
    replay.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    return replay


def model_step_rows(settings: BenchSettings, deadline: Deadline) -> list[dict]:
    """ResNet-18 training steps: per variant (``imagenet``, ``cifar``) and precision, timm then each backend/rate;
    then, on a GPU, the same steps captured in a CUDA graph (impl ``<impl>+graph``) for ``settings.graph_*``, after
    every eager row (a capture that fails cannot disturb them). A graph row's ``peak_mib`` is the peak of its eager
    warm-up and capture (replays run in the graph's private pool), and its ``kernel_launches`` is None (replays
    launch the CuPy kernels without Python)."""
    device = torch.device(settings.device)
    cupy_skip = cupy_skip_reason(settings)
    conv_name = "cudnn" if device.type == "cuda" else "conv2d"
    variants = {
        "imagenet": (settings.step_batch_imagenet, settings.imagenet_size, 1000),
        "cifar": (settings.step_batch_cifar, 32, 10),
    }
    data = {}
    for variant, (batch, size, classes) in variants.items():
        data[variant] = (torch.randn(batch, 3, size, size, device=device),
                         torch.randint(0, classes, (batch,), device=device))  # fmt: skip
    cases = []
    for graph in (False, True):
        for variant in variants:
            for precision in settings.precisions:
                if graph and precision not in settings.graph_precisions:
                    continue
                rates = settings.graph_rates if graph else settings.rates
                cases += [(variant, precision, conv_name, None, graph)]
                cases += [(variant, precision, f"bl_{b}", r, graph) for r in rates for b in settings.backends]
    rows = []
    for variant, precision, impl, rate, graph in cases:
        batch, size, _ = variants[variant]
        row = {"part": "step", "shape": f"{variant} {size}px", "rate": rate, "precision": precision,
               "impl": impl + ("+graph" if graph else ""), "batch": batch}  # fmt: skip
        if impl == "bl_cupy" and cupy_skip:
            rows.append(row | {"skipped": cupy_skip})
            continue
        if graph and device.type != "cuda":
            rows.append(row | {"skipped": "CUDA graphs need a GPU"})
            continue

        def run(impl=impl, rate=rate, precision=precision, variant=variant, graph=graph):
            images, labels = data[variant]
            model = _resnet18(variant, impl, rate, settings.width).to(device)
            step = training_step(model, images, labels, precision, graph=graph)
            result = measure(step, device, settings.warmup, settings.repeats)
            if graph:
                result |= {"peak_mib": step.peak_mib, "extra_mib": None, "kernel_launches": None}
            del model, step
            return result

        rows.append(run_case(row, run, deadline))
    return rows


def _key(row: dict) -> tuple:
    return (row["part"], row["shape"], row["precision"])


def _find(rows: Iterable[dict], **match) -> dict | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()) and "ms" in row:
            return row
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _baseline_impl(rows: list[dict], part: str, impl: str = "") -> str:
    """The implementation a row's ratio is taken against: the torch path for the product, else cuDNN (or
    ``nn.Conv2d`` on the CPU), captured in a CUDA graph too when the row's ``impl`` is."""
    if part == "product":
        return "torch"
    base = "cudnn" if any(r.get("impl") == "cudnn" for r in rows) else "conv2d"
    return base + ("+graph" if impl.endswith("+graph") else "")


def report(rows: list[dict]) -> str:
    """Markdown tables of ``rows`` (one per part), with each time and peak as a ratio of the baseline in the
    same shape and precision (the torch path for the product, cuDNN / nn.Conv2d otherwise), and for the
    band-limited rows also of rate 0 with the same backend (the paper's claims compare those two)."""
    lines = []
    for part, title in (("product", "Product over channels (forward, float32)"),
                        ("layer", "One 3x3 layer, forward + backward"),
                        ("step", "ResNet-18 training step (SGD)")):  # fmt: skip
        part_rows = [r for r in rows if r["part"] == part]
        if not part_rows:
            continue
        base_impl = _baseline_impl(part_rows, part)
        lines += [f"### {title}", "",
                  f"| shape | precision | impl | rate | batch | ms (median) | peak MiB | ms / {base_impl} "
                  f"| peak / {base_impl} | ms / rate 0 | peak / rate 0 | note |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in part_rows:
            # the product's baseline is the torch path at the same rate; cuDNN has none (rate None)
            same_rate = {"rate": row["rate"]} if part == "product" else {}
            base = _find(part_rows, part=part, shape=row["shape"], precision=row["precision"],
                         impl=_baseline_impl(part_rows, part, row["impl"]), **same_rate)  # fmt: skip
            zero = _find(part_rows, part=part, shape=row["shape"], precision=row["precision"], impl=row["impl"],
                         rate=0.0) if row["rate"] not in (None, 0.0) else None  # fmt: skip
            ms, peak = row.get("ms"), row.get("peak_mib")
            note = row.get("error") or row.get("skipped") or ""
            lines.append(
                f"| {row['shape']} | {row['precision']} | {row['impl']} | {cell(row['rate'])} | {row['batch']} "
                f"| {cell(ms, 3)} | {cell(peak, 0)} | {cell(_ratio(ms, base and base['ms']))} "
                f"| {cell(_ratio(peak, base and base['peak_mib']))} | {cell(_ratio(ms, zero and zero['ms']))} "
                f"| {cell(_ratio(peak, zero and zero['peak_mib']))} | {note[:120].replace('|', '/')} |"
            )
        if any(r["impl"].endswith("+graph") for r in part_rows):
            lines += ["", f"Rows `+graph`: the step captured in a CUDA graph; their ratios are to `{base_impl}+graph`; "
                      "their peak is that of the eager warm-up and the capture (replays use the graph's own pool)."]
        lines.append("")
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[dict]:
    """The issue's measurable targets, each ``{"target", "where", "value", "limit", "met"}`` (``met`` None when
    a side is missing): CuPy product faster than the torch path at rate 0.5; the ``bl_resnet18`` step at rate
    0.5 against rate 0 (time <= 0.7x, peak <= 0.6x) and against timm's ResNet-18 (time <= 1.0x)."""
    found = []

    def add(target: str, where: str, value: float | None, limit: float) -> None:
        found.append({"target": target, "where": where, "value": value, "limit": limit,
                      "met": None if value is None else value <= limit})  # fmt: skip

    for row in rows:
        if row["part"] == "product" and row["impl"] == "cupy" and row["rate"] == 0.5:
            torch_row = _find(rows, part="product", shape=row["shape"], rate=0.5, impl="torch")
            add("cupy product / torch product at rate 0.5", row["shape"],
                _ratio(row.get("ms"), torch_row and torch_row["ms"]), 1.0)  # fmt: skip
        if row["part"] == "step" and row["impl"].startswith("bl_") and row["rate"] == 0.5:
            where = f"{row['shape']} {row['precision']} {row['impl']}"
            match = {"part": "step", "shape": row["shape"], "precision": row["precision"]}
            zero = _find(rows, **match, impl=row["impl"], rate=0.0)
            base = _find(rows, **match, impl=_baseline_impl(rows, "step", row["impl"]))
            add("step time, rate 0.5 / rate 0", where, _ratio(row.get("ms"), zero and zero["ms"]), 0.7)
            if not row["impl"].endswith("+graph"):  # a graph row's peak is its eager warm-up's: the same claim
                add("step peak memory, rate 0.5 / rate 0", where,
                    _ratio(row.get("peak_mib"), zero and zero["peak_mib"]), 0.6)  # fmt: skip
            add("step time, rate 0.5 / timm resnet18", where, _ratio(row.get("ms"), base and base["ms"]), 1.0)
    return found


def settings_for(device: str, dry_run: bool) -> BenchSettings:
    """The GPU run's settings on ``device``, or :data:`DRY_RUN`'s."""
    return DRY_RUN if dry_run else replace(BenchSettings(), device=device)


def targets_table(found: list[dict]) -> str:
    """Markdown table of :func:`targets`."""
    lines = ["| target | where | value | limit | met |", "|---|---|---|---|---|"]
    for t in found:
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        met = "-" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {t['target']} | {t['where']} | {value} | {t['limit']} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32, help="batch of the product and layer tables")
    parser.add_argument("--rates", default="0,0.5,0.75", help="comma-separated compress rates")
    parser.add_argument("--precisions", default=None, help=f"comma-separated among {', '.join(PRECISIONS)} "
                        "(default: all on a GPU, fp32 on the CPU)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="the last (smallest) layer shape only")
    parser.add_argument("--no-model", action="store_true", help="skip the ResNet-18 training steps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = args.precisions.split(",") if args.precisions else (PRECISIONS if device == "cuda" else ("fp32",))
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions must be among {', '.join(PRECISIONS)}, got {', '.join(unknown)}")
    settings = BenchSettings(
        device=device, rates=tuple(float(r) for r in args.rates.split(",") if r.strip()), precisions=tuple(precisions),
        layer_shapes=RESNET18_LAYERS[-1:] if args.quick else RESNET18_LAYERS, product_batch=args.batch,
        layer_batch=args.batch, repeats=args.repeats,
    )  # fmt: skip
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"freqnets bench kernels: torch {torch.__version__}, {name}, rates {list(settings.rates)}, "
          f"precisions {list(settings.precisions)}")  # fmt: skip
    reason = cupy_skip_reason(settings)
    if reason:
        print(f"CuPy rows skipped: {reason}")
    if device != "cuda":
        print("no GPU: cuDNN rows skipped; the torch path and nn.Conv2d run on the CPU instead")
    deadline = Deadline(float("inf"))
    rows = product_rows(settings, deadline) + layer_rows(settings, deadline)
    if not args.no_model:
        rows += model_step_rows(settings, deadline)
    print("\n" + report(rows))
    print(targets_table(targets(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
