"""Outputs of the robustness study: results.json, CSV tables, a markdown report and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` (dicts with the same keys) as a CSV file with a header (nothing for no rows)."""
    if not rows:
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown(state: dict[str, Any]) -> str:
    """The study's tables as markdown."""
    lines = []
    model = state.get("model", {})
    attacks = {k: v for k, v in state.get("attacks", {}).items() if isinstance(v, dict)}
    if model:
        lines.append(f"Model: clean test accuracy {_percent(model['clean_accuracy'])}.")
    if attacks:
        lines += ["", "| attack | images | accuracy under attack | delta_adv (mean L2) |", "|---|---|---|---|"]
        lines += [f"| {name} | {a['images']} | {_percent(a['adversarial_accuracy'])} | {a['delta_adv']:.3f} |"
                  for name, a in attacks.items()]  # fmt: skip
    sweep = state.get("sweep", {})
    if sweep:
        names = list(attacks)
        header = "| channel | strength | delta_c | clean acc. | " + " | ".join(f"{n} recovered" for n in names) + " |"
        lines += ["", "Non-adaptive attacks, then the channel (recovered = accuracy on the adversarial examples):", "",
                  header, "|---" * (4 + len(names)) + "|"]  # fmt: skip
        for rows in sweep.values():
            for r in rows:
                recovered = " | ".join(_percent(r[f"{n}_recovered_accuracy"]) for n in names)
                lines.append(f"| {r['channel']} | {r['strength_name']}={r['strength']} | {r['distortion']:.3f} | "
                             f"{_percent(r['clean_accuracy'])} | {recovered} |")  # fmt: skip
    adaptive = state.get("adaptive", {})
    if adaptive:
        lines += ["", "Best setting of each channel: non-adaptive PGD recovered vs adaptive PGD (BPDA/exact, EOT):", "",
                  "| channel | strength | backward | EOT draws | channel alone, clean | non-adaptive PGD recovered "
                  "| adaptive PGD accuracy | adaptive delta_adv |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r['channel']} | {r['strength']} | {r['backward']} | {r['eot_draws']} | "
                  f"{_percent(r['clean_accuracy']) if 'clean_accuracy' in r else '-'} | "  # older runs lack it
                  f"{_percent(r['non_adaptive_pgd_recovered'])} | {_percent(r['adaptive_accuracy'])} | "
                  f"{r['delta_adv']:.3f} |" for r in adaptive.values()]  # fmt: skip
    transfer = state.get("transfer")
    if transfer:
        lines += ["", f"Transfer: adaptive PGD against {transfer['source']} only "
                  f"(delta_adv {transfer['delta_adv']:.3f}; undefended accuracy "
                  f"{_percent(transfer['undefended_accuracy'])}), evaluated against each channel:",
                  "", "| channel | strength | accuracy |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {n} | {t['strength']} | {_percent(t['accuracy'])} |" for n, t in transfer["targets"].items()]
    blackbox = state.get("blackbox")
    if blackbox:
        lines += ["", f"Black-box attacks, band-limited (FFT rate {blackbox['rate']:g}, clean accuracy "
                  f"{_percent(blackbox['band_limited_clean_accuracy'])}) vs full-spectrum model, "
                  f"{blackbox['images']} images both classify correctly:", "",
                  "| attack | median L2 full | median L2 band-limited | success full | success band-limited "
                  "| band-limited needs more | equal |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, a in blackbox["attacks"].items():
            lines.append(f"| {name} | {a['full_median_l2']:.3f} | {a['band_limited_median_l2']:.3f} | "
                         f"{_percent(a['full_success'])} | {_percent(a['band_limited_success'])} | "
                         f"{_percent(a['share_band_limited_needs_more'])} | "
                         f"{_percent(a['share_equal'])} |")  # fmt: skip
    noise = state.get("noise")
    if noise:
        sigmas = list(next(iter(noise.values())))
        lines += ["", "Accuracy under Gaussian noise (sigma in [0, 1] pixel units, clipped):", "",
                  "| compress_rate | " + " | ".join(f"sigma={s}" for s in sigmas) + " |",
                  "|---" * (1 + len(sigmas)) + "|"]
        lines += [f"| {rate} | " + " | ".join(_percent(a[s]) for s in sigmas) + " |" for rate, a in noise.items()]
    measures = state.get("instability")
    if measures:
        import statistics

        lines += ["", "Instability (medians): M1 = ||grad_x loss||_2, M2 = top eigenvalue of the input Hessian:", "",
                  "| examples | median M1 | median M2 |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {kind} | {statistics.median(m['M1']):.4g} | {statistics.median(m['M2']):.4g} |"
                  for kind, m in measures.items()]  # fmt: skip
    seconds = state.get("seconds")
    if seconds:
        lines += ["", "| stage | wall s | CPU s |", "|---|---|---|"]
        lines += [f"| {stage} | {t['wall']:.0f} | {t['cpu']:.0f} |" for stage, t in seconds.items()
                  if isinstance(t, dict)]  # fmt: skip
    return "\n".join(lines) + "\n"


def plots(state: dict[str, Any], out: Path) -> list[Path]:
    """Distortion vs recovered accuracy per attack, noise curves and M1/M2 histograms (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    attacks = {k: v for k, v in state.get("attacks", {}).items() if isinstance(v, dict)}
    sweep = state.get("sweep", {})
    for attack, summary in attacks.items():
        if not sweep:
            break
        figure, axis = plt.subplots(figsize=(6, 4))
        for name, rows in sweep.items():
            axis.plot([r["distortion"] for r in rows], [r[f"{attack}_recovered_accuracy"] for r in rows], "o-",
                      label=name)  # fmt: skip
        axis.axvline(summary["delta_adv"], color="k", linestyle="--", label="delta_adv")
        axis.set(xlabel="channel distortion delta_c (mean L2)", ylabel="recovered accuracy",
                 title=f"{attack}: adversarial examples through each channel")  # fmt: skip
        axis.legend(fontsize=7)
        path = out / f"recovery_{attack}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    noise = state.get("noise")
    if noise:
        figure, axis = plt.subplots(figsize=(5, 4))
        for rate, accuracies in noise.items():
            axis.plot([float(s) for s in accuracies], list(accuracies.values()), "o-", label=f"rate {rate}")
        axis.set(xlabel="Gaussian noise sigma (pixel units)", ylabel="test accuracy", title="noise robustness")
        axis.legend()
        path = out / "noise.png"
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    measures = state.get("instability")
    if measures:
        figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for axis, key in zip(axes, ("M1", "M2"), strict=True):
            for kind, values in measures.items():
                axis.hist(values[key], bins=20, alpha=0.6, label=kind, log=False)
            axis.set(xlabel=key, ylabel="images", title=f"{key} around natural and adversarial examples")
            axis.legend()
        path = out / "instability.png"
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(path)
    return written


def write_outputs(state: dict[str, Any], out: Path) -> list[Path]:
    """Write results.json, CSV tables, report.md and plots to ``out``; return the paths."""
    out = Path(out)
    paths = [out / "results.json", out / "report.md"]
    (out / "results.json").write_text(json.dumps(state, indent=1, default=str))
    (out / "report.md").write_text(markdown(state))
    tables = {
        "sweep.csv": [r for rows in state.get("sweep", {}).values() for r in rows],
        "adaptive.csv": list(state.get("adaptive", {}).values()),
        "transfer.csv": [{"channel": n, **t} for n, t in state.get("transfer", {}).get("targets", {}).items()],
        "noise.csv": [{"compress_rate": r, **a} for r, a in state.get("noise", {}).items()],
        "blackbox.csv": [{"attack": n, **a} for n, a in state.get("blackbox", {}).get("attacks", {}).items()],
    }
    for name, rows in tables.items():
        if rows:
            _csv(out / name, rows)
            paths.append(out / name)
    measures = state.get("instability", {})
    if measures:
        rows = [{"examples": kind, "M1": m1, "M2": m2} for kind, m in measures.items()
                for m1, m2 in zip(m["M1"], m["M2"], strict=True)]  # fmt: skip
        _csv(out / "instability.csv", rows)
        paths.append(out / "instability.csv")
    return paths + plots(state, out)
