"""Short CPU training of each model family on the bundled CIFAR-10 JPEG subset, at the same budget.

    python scripts/train_sanity.py                         # all models below, 4 epochs each
    python scripts/train_sanity.py --models dct_resnet18_cifar resnet18_cifar --epochs 2

Every model sees the same 2000 training images (data/cifar10-mini.zip train/) in the same order
for the same number of epochs (AdamW, cosine learning rate, batch 64, no augmentation) and is
tested on the 500 test images. RGB models read decoded, normalised pixels; DCT models read the
files' coefficients (``freqnets.jpeg.read_dct`` -> ``DCTCollate``, 4:2:0 planes or stacked) and
normalise with their own statistics. The script also times the two input paths side by side
(JPEG -> DCT coefficients vs JPEG -> RGB pixels, one thread) and prints the ratio.

Results go to ``--out`` (default runs/train_sanity/results.json), one entry per model; a finished
model is skipped on a rerun and an interrupted one resumes from its last epoch's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import timm
import torch

import freqnets  # noqa: F401  (registers the models)
from freqnets.experiments.data import DEFAULT_DATA, decode_rgb, labelled_files, normalise
from freqnets.experiments.training import accuracy, tensor_batches, train_epochs
from freqnets.jpeg import DCTCollate, read_dct
from freqnets.models import use_cifar_stem

MODELS = [
    "dct_resnet18_cifar",
    "dct_resnet18_late_cifar",
    "dct_mg_resnet18_cifar",
    "resnet18_cifar",
    "oct_resnet18_cifar",
    "mg_resnet18_cifar",
]


def read_split(path: Path, split: str) -> tuple[list[bytes], torch.Tensor]:
    dataset, indices = labelled_files(path, split)
    return [dataset.read_bytes(i) for i in indices], torch.tensor([dataset.targets[i] for i in indices])


def decode_rgb_batch(files: list[bytes]) -> torch.Tensor:
    pixels = np.stack([decode_rgb(f, f"file {i}") for i, f in enumerate(files)])
    return normalise(torch.from_numpy(pixels).permute(0, 3, 1, 2))


def time_input_paths(files: list[bytes]) -> dict:
    """Seconds per image: JPEG bytes -> DCT coefficients vs JPEG bytes -> RGB pixel tensor (1 thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timings = {}
        paths = (("read_dct", lambda: [read_dct(f) for f in files]), ("pil_rgb", lambda: decode_rgb_batch(files)))
        for name, fn in paths:
            best = math.inf
            for _ in range(3):
                start = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - start)
            timings[name] = best / len(files)
    finally:
        torch.set_num_threads(threads)
    return {"seconds_per_image": timings, "dct_over_rgb": timings["read_dct"] / timings["pil_rgb"]}


def build(name: str) -> torch.nn.Module:
    if name == "resnet18_cifar":
        model = timm.create_model("resnet18", num_classes=10)
        use_cifar_stem(model, "conv1", "maxpool")
        return model
    return timm.create_model(name)


def inputs_for(name: str, data: dict) -> tuple[torch.Tensor, ...]:
    if not name.startswith("dct_"):
        return (data["rgb"],)
    if name == "dct_resnet18_cifar":
        return (data["stacked"],)
    return data["y"], data["cbcr"]


def load(files: list[bytes], labels: torch.Tensor) -> dict:
    coeffs = [(read_dct(f), int(label)) for f, label in zip(files, labels, strict=True)]
    planes = DCTCollate(layout="planes")(coeffs)
    stacked, _ = DCTCollate(layout="stacked")(coeffs)
    return {"rgb": decode_rgb_batch(files), "y": planes.y, "cbcr": planes.cbcr, "stacked": stacked, "labels": labels}


def train_one(name: str, train: dict, test: dict, epochs: int, batch: int, lr: float, out_dir: Path) -> dict:
    torch.manual_seed(0)
    model = build(name)
    inputs, labels = inputs_for(name, train), train["labels"]
    steps = epochs * math.ceil(len(labels) / batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    checkpoint = out_dir / f"{name}.pt"
    start_epoch, seconds, losses = 0, 0.0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, seconds, losses = state["epoch"], state["seconds"], state["losses"]

    def batches(epoch: int):
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch))
        return tensor_batches(inputs, labels, batch, order)

    def after_epoch(stats) -> None:
        nonlocal seconds
        seconds += stats.seconds
        losses.append(stats.mean_sample_loss)
        print(f"{name}: epoch {stats.epoch + 1}/{epochs} loss {losses[-1]:.3f} ({seconds:.0f} s)", flush=True)
        state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
        torch.save(state | dict(epoch=stats.epoch + 1, seconds=seconds, losses=losses), checkpoint)

    train_epochs(model, optimizer, batches, range(start_epoch, epochs), scheduler=scheduler, after_epoch=after_epoch)
    return {
        "model": name,
        "epochs": epochs,
        "train_loss": losses,
        "train_accuracy": accuracy(model, inputs, labels, 250),
        "test_accuracy": accuracy(model, inputs_for(name, test), test["labels"], 250),
        "train_seconds": seconds,
        "params": sum(p.numel() for p in model.parameters()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/train_sanity/results.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    train_files, train_labels = read_split(DEFAULT_DATA, "train")
    test_files, test_labels = read_split(DEFAULT_DATA, "test")
    if "input_paths" not in results:
        results["input_paths"] = time_input_paths(train_files[:500])
        print("input paths:", results["input_paths"], flush=True)
    train, test = load(train_files, train_labels), load(test_files, test_labels)
    for name in args.models:
        key = f"{name}@{args.epochs}"
        if key in results:
            continue
        results[key] = train_one(name, train, test, args.epochs, args.batch, args.lr, args.out.parent)
        print(json.dumps(results[key]), flush=True)
        args.out.write_text(json.dumps(results, indent=1))
    for key, row in results.items():
        if key != "input_paths":
            print(
                f"| {row['model']} | {row['epochs']} | {row['test_accuracy']:.3f} | {row['train_accuracy']:.3f} "
                f"| {row['train_seconds']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
