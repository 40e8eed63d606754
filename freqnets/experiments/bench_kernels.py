"""CuPy kernels vs the torch path vs cuDNN on the ResNet-18 layer shapes: time, memory, ratios in one run.

    python -m freqnets.experiments.bench_kernels [--batch 32] [--rates 0.5] [--min-run-time 0.5] [--quick] [--no-model]

Three tables, each comparing implementations side by side in the same process:

1. the band-limited product over channels on the kept spectra (the kernel's job): the torch
   path (group split + Gauss ``complex_matmul`` + merge, as in ``_BandLimitedConv``) vs the
   CuPy kernel with the 4-multiplication and with Gauss's product;
2. one 3x3 layer, forward + backward: ``BandLimitedConv2d`` with ``backend='torch'`` and
   ``'cupy'`` vs ``nn.Conv2d`` (cuDNN on a GPU), with the peak memory each step allocates;
3. a ResNet-18 training step (SGD, 224x224) converted at the rate with each backend vs the
   plain timm ResNet-18 (cuDNN).

On a machine without CuPy or a GPU the CuPy and cuDNN rows are skipped with a message and
the torch-path rows run on the CPU, so the script itself is checked everywhere.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn as nn
from torch.utils.benchmark import Timer

from freqnets import convert_model, kernels
from freqnets.layers import BandLimitedConv2d
from freqnets.layers.band_limited_conv import _merge_groups, _split_groups
from freqnets.layers.spectral_plan import make_plan
from freqnets.layers.spectral_product import bl_product, complex_matmul

#: ResNet-18 (ImageNet, 224x224 input) 3x3 convolutions: (channels, spatial size, stride) of each stage.
RESNET18_SHAPES = [(64, 56, 1), (128, 28, 1), (256, 14, 1), (512, 7, 1)]


def seconds(fn, min_run_time: float) -> float:
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def peak_bytes(fn, device: torch.device) -> int | None:
    """Peak memory ``fn`` allocates on a CUDA device above what was allocated before (None on CPU)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def _ms(t: float | None) -> str:
    return "skipped" if t is None else f"{t * 1e3:.3f}"


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def product_rows(batch: int, rates: list[float], device: torch.device, cupy: bool, t: float, shapes) -> list[str]:
    lines = [
        "| channels | size | rate | K | torch path (ms) | cupy 4-mult (ms) | cupy Gauss (ms) | torch / cupy 4-mult "
        "| torch / cupy Gauss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for channels, size, _ in shapes:
        for rate in rates:
            plan = make_plan((size + 2, size + 2), rate)
            k = plan.num_kept
            x_spec = torch.randn(2, k, batch * channels, device=device)
            w_spec = torch.randn(2, k, channels * channels, device=device)

            def torch_path(x_spec=x_spec, w_spec=w_spec):
                xs = _split_groups(x_spec, batch, 1)
                ws = w_spec.view(2, k, channels, channels)
                return _merge_groups(complex_matmul(xs, ws.transpose(-1, -2), conj_right=True), 1)

            reference = seconds(torch_path, t)
            plain = gauss = None
            if cupy:
                plain = seconds(lambda x_spec=x_spec, w_spec=w_spec: bl_product(x_spec, w_spec, batch, 1, False), t)
                gauss = seconds(lambda x_spec=x_spec, w_spec=w_spec: bl_product(x_spec, w_spec, batch, 1, True), t)
            lines.append(
                f"| {channels} | {size} | {rate} | {k} | {_ms(reference)} | {_ms(plain)} | {_ms(gauss)} "
                f"| {_ratio(reference, plain)} | {_ratio(reference, gauss)} |"
            )
    return lines


def layer_rows(batch: int, rates: list[float], device: torch.device, cupy: bool, t: float, shapes) -> list[str]:
    conv_name = "cuDNN" if device.type == "cuda" else "nn.Conv2d"
    lines = [
        f"| channels | size | rate | torch path (ms) | cupy (ms) | {conv_name} (ms) | torch / cupy "
        f"| cupy / {conv_name} | peak MiB torch / cupy / {conv_name} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for channels, size, stride in shapes:
        conv = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False).to(device)
        x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
        grad = torch.randn_like(conv(x))

        def step(layer):
            layer(x).backward(grad)

        conv_time, conv_mem = seconds(lambda conv=conv: step(conv), t), peak_bytes(lambda conv=conv: step(conv), device)
        for rate in rates:
            results = {}
            for backend in ("torch", "cupy") if cupy else ("torch",):
                layer = BandLimitedConv2d(
                    channels, channels, 3, stride=stride, padding=1, bias=False, compress_rate=rate, backend=backend
                ).to(device)
                layer.load_state_dict(conv.state_dict())
                results[backend] = (
                    seconds(lambda layer=layer: step(layer), t),
                    peak_bytes(lambda layer=layer: step(layer), device),
                )
            torch_time, torch_mem = results["torch"]
            cupy_time, cupy_mem = results.get("cupy", (None, None))
            lines.append(
                f"| {channels} | {size} | {rate} | {_ms(torch_time)} | {_ms(cupy_time)} | {_ms(conv_time)} "
                f"| {_ratio(torch_time, cupy_time)} | {_ratio(cupy_time, conv_time)} "
                f"| {_mib(torch_mem)} / {_mib(cupy_mem)} / {_mib(conv_mem)} |"
            )
    return lines


def model_rows(batch: int, rates: list[float], device: torch.device, cupy: bool, t: float) -> list[str]:
    import timm

    conv_name = "cuDNN" if device.type == "cuda" else "nn.Conv2d"
    lines = [
        f"| model | rate | backend | step (ms) | {conv_name} step (ms) | step / {conv_name} | peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    x = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def timed(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), labels).backward()
            optimizer.step()

        step()
        return seconds(step, t), peak_bytes(step, device)

    baseline, baseline_mem = timed(timm.create_model("resnet18").to(device))
    lines.append(f"| resnet18 | - | {conv_name} | {_ms(baseline)} | {_ms(baseline)} | 1.00 | {_mib(baseline_mem)} |")
    for rate in rates:
        for backend in ("torch", "cupy") if cupy else ("torch",):
            model = convert_model(timm.create_model("resnet18"), compress_rate=rate, backend=backend).to(device)
            step_time, mem = timed(model)
            lines.append(
                f"| resnet18 converted | {rate} | {backend} | {_ms(step_time)} | {_ms(baseline)} "
                f"| {_ratio(step_time, baseline)} | {_mib(mem)} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rates", default="0.5", help="comma-separated compress rates (default 0.5)")
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds of timing per measurement")
    parser.add_argument("--quick", action="store_true", help="the last (smallest) layer shape only")
    parser.add_argument("--no-model", action="store_true", help="skip the ResNet-18 training step")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    shapes = RESNET18_SHAPES[-1:] if args.quick else RESNET18_SHAPES
    reason = kernels.unavailable_reason()
    cupy = reason is None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"freqnets bench kernels: torch {torch.__version__}, {name}, batch {args.batch}, float32, rates {rates}")
    if not cupy:
        print(f"CuPy rows skipped: {reason}")
    if device.type != "cuda":
        print("no GPU: cuDNN rows skipped; the torch path and nn.Conv2d run on the CPU instead")
    t = args.min_run_time
    print("\n## Product over channels on the kept spectra (one 3x3 layer's forward product)\n")
    print("\n".join(product_rows(args.batch, rates, device, cupy, t, shapes)))
    print("\n## One 3x3 layer, forward + backward\n")
    print("\n".join(layer_rows(args.batch, rates, device, cupy, t, shapes)))
    if not args.no_model:
        print("\n## ResNet-18 training step (SGD, 224x224)\n")
        print("\n".join(model_rows(args.batch, rates, device, cupy, t)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
