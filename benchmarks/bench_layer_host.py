"""Host cost of one band-limited layer call against ``nn.Conv2d``, at sizes where the arithmetic is negligible.

On a GPU a small layer's time is what the host spends issuing it (docs/benchmarks.md, first GPU run: the
band-limited layer took about 2 ms per forward + backward at every compress rate). That host cost is the
same Python and dispatcher work on the CPU, so it is measured here on tiny tensors, single-threaded.

Run once per source tree, back to back, to compare before and after a change (ratios to ``nn.Conv2d`` in
each run)::

    taskset -c 0 env PYTHONPATH=<tree> python benchmarks/bench_layer_host.py

Per case and mode: microseconds per call (median over ``--rounds`` rounds of ``--calls`` calls each, the
cases interleaved inside every round so a change of machine load hits all of them alike), the ratio to
``nn.Conv2d`` in the same mode, and the aten ops one call dispatches (``torch.profiler``, ops whose name
starts with ``aten::``, nested ones included). Modes: ``fwd+bwd`` is ``layer(x).backward(grad)`` with ``x``
requiring grad (a layer inside a network); ``fwd no_grad`` is ``layer(x)`` under ``torch.no_grad()``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from freqnets.layers import BandLimitedConv2d

#: (channels, spatial size, batch): tiny ResNet-like 3x3 layers where compute is a small part of the call.
SHAPES = ((8, 7, 2), (64, 8, 2))
RATES = (0.0, 0.5)
MODES = ("fwd+bwd", "fwd no_grad")


def make_step(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor, mode: str) -> Callable[[], None]:
    """One call of ``layer`` in ``mode``."""
    if mode == "fwd+bwd":

        def step() -> None:
            layer(x).backward(grad)

        return step

    def forward() -> None:
        with torch.no_grad():
            layer(x)

    return forward


def aten_ops(step: Callable[[], None]) -> int:
    """Number of aten ops (CPU-side dispatcher calls named ``aten::...``) one call of ``step`` makes."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return sum(e.count for e in prof.key_averages() if e.device_type == DeviceType.CPU and e.key.startswith("aten::"))


def per_call_us(step: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) * 1e6 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the median per case is reported")
    parser.add_argument("--calls", type=int, default=200, help="calls per case and round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    cases: list[dict] = []
    for channels, size, batch in SHAPES:
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        x = torch.randn(batch, channels, size, size, requires_grad=True)
        grad = torch.randn(batch, channels, size, size)
        layers: list[tuple[str, nn.Module]] = [("nn.Conv2d", conv)]
        for rate in RATES:
            layer = BandLimitedConv2d(channels, channels, 3, padding=1, bias=False, compress_rate=rate)
            layer.load_state_dict(conv.state_dict())
            layers.append((f"BandLimitedConv2d rate {rate}", layer))
        for mode in MODES:
            for name, layer in layers:
                step = make_step(layer, x, grad, mode)
                for _ in range(20):  # warm-up: plans, DFT matrices, allocator
                    step()
                shape = f"{channels}ch {size}x{size} b{batch}"
                cases.append({"shape": shape, "mode": mode, "layer": name, "step": step, "us": []})

    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for case in cases:
            case["us"].append(per_call_us(case["step"], args.calls))
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} rounds x {args.calls} calls; "
          f"1-minute load average {load:.2f} before, {os.getloadavg()[0]:.2f} after\n")  # fmt: skip

    print("| shape | mode | layer | us per call | vs nn.Conv2d | aten ops | vs nn.Conv2d |")
    print("|---|---|---|---|---|---|---|")
    base: dict[tuple[str, str], tuple[float, int]] = {}
    for case in cases:
        us, ops = statistics.median(case["us"]), aten_ops(case["step"])
        key = (case["shape"], case["mode"])
        base.setdefault(key, (us, ops))
        print(
            f"| {case['shape']} | {case['mode']} | {case['layer']} | {us:.1f} | {us / base[key][0]:.2f} "
            f"| {ops} | {ops / base[key][1]:.1f} |"
        )


if __name__ == "__main__":
    main()
