"""A short, real demonstration of the transform layer on real images.

For every domain (and its main variants) and a list of rates, compress each
colour plane of the images and report the kept fraction and the
reconstruction quality (PSNR); pick the rate that keeps 99% of the energy in
each domain; and check tiled Winograd convolution against ``F.conv2d``.
Until ``freqnets ablate`` exists this is what the README's main command runs.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..transforms import get_domain, winograd_conv2d

DOMAIN_VARIANTS: list[tuple[str, str, dict]] = [
    ("fft", "fft", {}),
    ("dct", "dct", {}),
    ("dct-8x8", "dct", {"block_size": 8}),
    ("svd", "svd", {}),
    ("winograd-F(2,3)", "winograd", {"m": 2}),
    ("winograd-F(4,3)", "winograd", {"m": 4}),
]


@dataclass
class CompressionRow:
    domain: str
    rate: float
    kept_fraction: float
    psnr_db: float
    relative_error: float


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Mean over images of the peak signal-to-noise ratio (peak 1.0), in dB; ``inf`` if equal."""
    mse = (reference - estimate.clamp(0, 1)).square().flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-20))).mean().item()


def _kept_fraction(domain, images: torch.Tensor, rate: float) -> float:
    if domain.fixed_grid:
        return domain.kept_fraction(tuple(images.shape[-2:]), rate)
    if domain.name == "svd":
        n = min(images.shape[-2:])
        return round((1 - rate) * n) / n
    return domain.kept_mask_of(domain.forward(images), rate).double().mean().item()


def compression_table(images: torch.Tensor, rates: list[float]) -> list[CompressionRow]:
    """PSNR and kept fraction for every domain variant and rate, on ``(N, 3, H, W)`` images."""
    rows = []
    for label, name, options in DOMAIN_VARIANTS:
        domain = get_domain(name, **options)
        for rate in rates:
            out = domain.compress(images, rate)
            rel = ((out - images).norm() / images.norm()).item()
            rows.append(CompressionRow(label, rate, _kept_fraction(domain, images, rate), psnr(images, out), rel))
    return rows


def energy_rates(images: torch.Tensor, energy: float) -> dict[str, float]:
    """The rate each domain variant chooses to keep ``energy`` of the (mean-removed) images' energy."""
    centred = images - images.mean(dim=(-2, -1), keepdim=True)
    return {
        label: get_domain(name, **options).rate_for_energy(centred, energy) for label, name, options in DOMAIN_VARIANTS
    }


def winograd_check(images: torch.Tensor) -> list[dict]:
    """Float32 tiled Winograd vs float64 ``F.conv2d`` on the images with random 3x3 filters."""
    x = images[:64].float()
    weight = torch.randn(16, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    reference = F.conv2d(x.double(), weight.double(), padding=1)
    results = []
    for m in (2, 4, 6):
        start = time.perf_counter()
        out = winograd_conv2d(x, weight, padding=1, m=m)
        seconds = time.perf_counter() - start
        error = ((out.double() - reference).abs().max() / reference.abs().max()).item()
        results.append({"algorithm": f"F({m},3)", "max_relative_error_float32": error, "seconds": seconds})
    return results


def _format_psnr(value: float) -> str:
    return "exact" if value > 140 or math.isinf(value) else f"{value:.1f}"


def markdown_report(
    rows: list[CompressionRow], rates: list[float], chosen: dict[str, float], wino: list[dict], n: int
) -> str:
    lines = [
        f"PSNR (dB) of {n} images compressed per colour plane, by domain and compress_rate",
        "(kept fraction of coefficients in brackets):",
        "",
        "| domain | " + " | ".join(f"rate {r:g}" for r in rates) + " | rate for 99% energy |",
        "|---|" + "---|" * (len(rates) + 1),
    ]
    for label in dict.fromkeys(row.domain for row in rows):
        cells = [f"{_format_psnr(r.psnr_db)} ({r.kept_fraction:.2f})" for r in rows if r.domain == label]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {chosen[label]:.2f} |")
    lines += ["", "Tiled Winograd convolution (float32) vs F.conv2d (float64), 3x3 filters:", ""]
    lines += ["| algorithm | max relative error |", "|---|---|"]
    lines += [f"| {w['algorithm']} | {w['max_relative_error_float32']:.1e} |" for w in wino]
    return "\n".join(lines)


def run_demo(images: torch.Tensor, rates: list[float], out_dir: Path | None) -> str:
    """Run every part of the demonstration; write ``transforms.json`` and ``transforms.md`` to ``out_dir``."""
    rows = compression_table(images, rates)
    chosen = energy_rates(images, 0.99)
    wino = winograd_check(images)
    report = markdown_report(rows, rates, chosen, wino, len(images))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "images": len(images),
            "rates": rates,
            "compression": [asdict(r) for r in rows],
            "rate_for_99_percent_energy": chosen,
            "winograd_conv2d": wino,
            "torch": torch.__version__,
        }
        tmp = out_dir / "transforms.json.tmp"
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(out_dir / "transforms.json")
        (out_dir / "transforms.md").write_text(report + "\n")
    return report
