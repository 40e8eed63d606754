"""Plots of an ablation (matplotlib, Agg backend): accuracy, time and memory against compression."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

#: ``(file name, y column, y label, normalised)`` of each plot.
PLOTS = [
    ("accuracy.png", "top1", "test top-1 accuracy", False),
    ("time.png", "time_ratio", "step time / uncompressed", True),
    ("memory.png", "saved_ratio", "saved for backward / uncompressed", True),
    ("rss_growth.png", "growth_ratio", "memory growth / uncompressed", True),
]


def _series(rows: list[dict], y: str) -> dict[str, list[tuple[float, float]]]:
    """Points ``(applied rate, y)`` per line: one line per model/input/domain (fixed rates) and per
    model/input dynamic baseline."""
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r.get(y) is None or r["variant"] not in ("fixed", "dynamic"):
            continue
        label = f"{r['domain']} fixed" if r["variant"] == "fixed" else "fft dynamic (energy)"
        prefix = f"{r['model']} {r['input']} " if len({(q["model"], q["input"]) for q in rows}) > 1 else ""
        lines[prefix + label].append((r["applied_rate"], r[y]))
    return {k: sorted(v) for k, v in lines.items()}


def write_plots(out: Path, rows: list[dict]) -> list[Path]:
    """Write the :data:`PLOTS` into ``out`` (atomically) and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    retimed = any(r.get("retimed_time_ratio") is not None for r in rows)
    for name, y, label, normalised in PLOTS:
        if retimed and y == "time_ratio":  # side-by-side timings are the comparable ones
            y, label = "retimed_time_ratio", "step time / uncompressed, side by side"
        series = _series(rows, y)
        if not series:
            continue
        figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
        for line, points in series.items():
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o" if "fixed" in line else "s", linestyle="-" if "fixed" in line else "--",
                      label=line)  # fmt: skip
        baseline_labels = {"conv": "nn.Conv2d, float32", "bf16": "nn.Conv2d, bfloat16 autocast"}
        for r in rows:
            if r["variant"] in baseline_labels and r.get(y) is not None:
                color = "grey" if r["variant"] == "conv" else "tab:brown"
                several = len({(q["model"], q["input"]) for q in rows}) > 1
                prefix = f"{r['model']} {r['input']} " if several else ""
                label_text = prefix + baseline_labels[r["variant"]]
                axes.axhline(r[y], color=color, linewidth=0.8, linestyle=":", label=label_text)
        if normalised:
            axes.axhline(1.0, color="black", linewidth=0.5)
        axes.set_xlabel("applied compress rate (fraction discarded, mean over layers)", fontsize=9)
        axes.set_ylabel(label, fontsize=9)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
        figure.tight_layout()
        path = out / name
        tmp = out / f".{name}.tmp.png"
        figure.savefig(tmp)
        plt.close(figure)
        tmp.replace(path)
        written.append(path)
    return written
