"""Build time of the converted ResNet-18s against timm's resnet18 they convert, in one process.

Run once per source tree to compare before and after a change (ratios to resnet18 in each run):

    OMP_NUM_THREADS=1 PYTHONPATH=<tree> python benchmarks/bench_model_build.py --repeats 2

``build`` is ``timm.create_model(name)`` (fastest of ``--repeats``); ``+ first step`` adds one
forward and backward pass of a 2x3x32x32 batch, where work a layer defers to first use is paid
(SVD factorisation, Winograd mask selection), unless a checkpoint is loaded first.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch

import freqnets  # noqa: F401  (registers the models with timm)

MODELS = ["resnet18", "bl_resnet18_cifar", "dct_conv_resnet18_cifar", "wino_resnet18_cifar", "svd_resnet18_cifar"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("models", nargs="*", default=MODELS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(2, 3, 32, 32)
    base = None
    print("| model | build s | vs resnet18 | build + first step s | vs resnet18 |\n|---|---|---|---|---|")
    for name in args.models:
        builds, steps = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model = timm.create_model(name)
            builds.append(time.perf_counter() - start)
            model(x).sum().backward()
            steps.append(time.perf_counter() - start)
        build, step = min(builds), min(steps)
        base = base or (build, step)
        print(f"| {name} | {build:.3f} | {build / base[0]:.2f} | {step:.3f} | {step / base[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
