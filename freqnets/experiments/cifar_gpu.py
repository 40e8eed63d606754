"""The paper's Table 2.1 on a GPU: ``bl_resnet18_cifar`` on all of CIFAR-10 per compress rate, and the plain network.

Data: CIFAR-10's JPEG files (``../shared/data/cifar10-jpeg/{train,test}.zip``) repacked by
:func:`pack_cifar_jpeg` into one ``.npz`` (the files' bytes back to back, their offsets, their labels;
the identical JPEG headers compress away, about 18 MB for all 60,000 files), small enough to travel
with the checkout to a GPU machine. :func:`load_pack` reads it back; :func:`decode_split` decodes it
once to ``uint8`` images, which :class:`DeviceImages` keeps in GPU memory and augments there
(random 32x32 crop of the 4-pixel reflect-padded image, horizontal flip) for every batch.

Recipe (:class:`Recipe`): SGD with Nesterov momentum, one-cycle learning rate, label smoothing,
bfloat16 autocast, channels_last, the same number of epochs for every network, so the accuracies
compare at equal epochs as the paper's table does.

Runs (:func:`train_run`) checkpoint after every epoch into a state folder and resume from it
(``torch.load(..., weights_only=True)``), and stop before an epoch that would not fit the time
left, so a long table is split over several calls of at most a few minutes each.

Training and evaluation go through the experiments' shared loop (:mod:`.training`); this module
adds the GPU-resident data, the recipe and the checkpoints.
"""

from __future__ import annotations

import io
import math
import time
import traceback
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from .._checks import check_rate
from ..models import CIFAR10_MEAN, CIFAR10_STD, use_cifar_stem
from . import training
from .storage import CorruptFile, load_torch, move_aside, read_json, save_torch, write_json

__all__ = [
    "DeviceImages",
    "JpegSplit",
    "Recipe",
    "build_model",
    "decode_split",
    "evaluate",
    "load_pack",
    "make_optimizer",
    "pack_cifar_jpeg",
    "run_label",
    "train_epoch",
    "train_run",
]

SPLITS = ("train", "test")


@dataclass
class JpegSplit:
    """One split's JPEG files: ``payload`` (all bytes, uint8), ``offsets`` (``N + 1``, int64), ``labels`` (``N``)."""

    payload: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def file(self, index: int) -> bytes:
        """The bytes of JPEG file ``index``."""
        return self.payload[self.offsets[index] : self.offsets[index + 1]].tobytes()


def _read_zip(path: Path, split: str, per_class: int | None) -> tuple[list[bytes], list[int], list[str]]:
    """Files ``<split>/<class>/<name>.jpg`` of ``path``: classes in name order, files in name order per class."""
    with zipfile.ZipFile(path) as archive:
        by_class: dict[str, list[str]] = {}
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == split and name.lower().endswith((".jpg", ".jpeg")):
                by_class.setdefault(parts[1], []).append(name)
        classes = sorted(by_class)
        files, labels = [], []
        for label, cls in enumerate(classes):
            for name in sorted(by_class[cls])[:per_class]:
                files.append(archive.read(name))
                labels.append(label)
    if not files:
        raise ValueError(f"no {split}/<class>/*.jpg files in {path}")
    return files, labels, classes


def pack_cifar_jpeg(source: str | Path, out: str | Path, per_class: int | None = None) -> dict:
    """Pack ``source/train.zip`` and ``source/test.zip`` (``<split>/<class>/<file>.jpg``) into ``out`` (.npz).

    Args:
        source: folder holding the two zips (``../shared/data/cifar10-jpeg``).
        out: the ``.npz`` to write (compressed; its folder is created).
        per_class: the first files per class in name order (``None``: all).

    Returns:
        ``{"images": {split: count}, "bytes": size of out, "classes": [...]}``.

    Raises:
        FileNotFoundError: a zip is missing. ValueError: a zip holds no files of the layout, or the
        two splits name different classes.
    """
    source, out = Path(source), Path(out)
    arrays, counts, classes = {}, {}, None
    for split in SPLITS:
        path = source / f"{split}.zip"
        if not path.is_file():
            raise FileNotFoundError(f"no {path}")
        files, labels, split_classes = _read_zip(path, split, per_class)
        if classes is not None and split_classes != classes:
            raise ValueError(f"{split}.zip has classes {split_classes}, train.zip {classes}")
        classes = split_classes
        arrays[f"{split}_payload"] = np.frombuffer(b"".join(files), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(f) for f in files])]).astype(np.int64)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
        counts[split] = len(files)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, classes=np.asarray(classes), **arrays)
    return {"images": counts, "bytes": out.stat().st_size, "classes": classes}


def load_pack(path: str | Path, splits: tuple[str, ...] = SPLITS) -> tuple[dict[str, JpegSplit], list[str]]:
    """The ``splits`` and class names of a pack written by :func:`pack_cifar_jpeg` (only those are decompressed).

    Raises:
        FileNotFoundError: no such file. ValueError: the file is not such a pack, or an unknown split.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data pack {path} (build it with scripts/pack_device_data.py)")
    if not splits or any(s not in SPLITS for s in splits):
        raise ValueError(f"splits must be among {SPLITS}, got {splits!r}")
    with np.load(path, allow_pickle=False) as data:
        missing = [f"{s}_{k}" for s in splits for k in ("payload", "offsets", "labels") if f"{s}_{k}" not in data]
        if missing or "classes" not in data:
            raise ValueError(f"{path} is not a CIFAR JPEG pack: missing {missing or ['classes']}")
        loaded = {s: JpegSplit(data[f"{s}_payload"], data[f"{s}_offsets"], data[f"{s}_labels"]) for s in splits}
        classes = [str(c) for c in data["classes"]]
    for name, split in loaded.items():
        if len(split.offsets) != len(split) + 1 or split.offsets[-1] != len(split.payload):
            raise ValueError(f"{path}: {name} offsets do not match its payload and labels")
    return loaded, classes


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_split(split: JpegSplit, workers: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every file (Pillow) once: ``(N, 3, H, W)`` uint8 images and ``(N,)`` int64 labels.

    Raises:
        ValueError: the files do not all have one size (the message names the first odd one).
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:  # Pillow releases the GIL while it decodes
        arrays = list(pool.map(_decode, (split.file(i) for i in range(len(split)))))
    shape = arrays[0].shape
    odd = next((i for i, a in enumerate(arrays) if a.shape != shape), None)
    if odd is not None:
        raise ValueError(f"image {odd} is {arrays[odd].shape[:2]}, the first is {shape[:2]}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, torch.from_numpy(split.labels.astype(np.int64))


class DeviceImages:
    """A split held as ``uint8`` on the training device, batched and augmented there.

    Args:
        images: ``(N, 3, H, W)`` uint8; labels: ``(N,)`` int64 (moved to ``device``).
        mean, std: per-channel normalisation of the ``[0, 1]`` images.
        channels_last: batches in channels_last memory format.
    """

    PAD = 4

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        device: torch.device,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        channels_last: bool = True,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) uint8, got {tuple(images.shape)} {images.dtype}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images, self.labels = images.to(device), labels.to(device)
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self._padded: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        return ((images.float() - self.mean) / self.std).contiguous(memory_format=self.format)

    def pad_once(self) -> None:
        """Keep the reflect-padded images the crops are cut from (made on the first training batch otherwise)."""
        if self._padded is None:  # reflect padding needs float; stored back as uint8
            pad = (self.PAD,) * 4
            self._padded = F.pad(self.images.float(), pad, mode="reflect").to(torch.uint8)

    def _crop_flip(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.pad_once()
        batch, (height, width) = len(index), self.images.shape[-2:]
        top = torch.randint(0, 2 * self.PAD + 1, (batch, 1), device=self.device, generator=generator)
        left = torch.randint(0, 2 * self.PAD + 1, (batch, 1), device=self.device, generator=generator)
        rows = (top + torch.arange(height, device=self.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (left + torch.arange(width, device=self.device))[:, None, None, :]  # (B, 1, 1, W)
        channels = torch.arange(3, device=self.device)[None, :, None, None]
        crops = self._padded[index[:, None, None, None], channels, rows, cols]
        flip = torch.rand(batch, device=self.device, generator=generator) < 0.5
        return torch.where(flip[:, None, None, None], crops.flip(-1), crops)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled, augmented, normalised ``(x, labels)`` batches of one epoch (the last partial batch dropped)."""
        order = torch.randperm(len(self), device=self.device, generator=generator)
        for start in range(0, len(self) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield self._normalize(self._crop_flip(index, generator)), self.labels[index]

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised ``(x, labels)`` batches in order, no augmentation."""
        for start in range(0, len(self), batch_size):
            yield self._normalize(self.images[start : start + batch_size]), self.labels[start : start + batch_size]


@dataclass(frozen=True)
class Recipe:
    """Training recipe shared by every network of the table."""

    epochs: int = 18
    batch_size: int = 512
    lr: float = 0.4  # peak of the one-cycle schedule (0.1 per 128 images)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.25
    bf16: bool = True
    channels_last: bool = True
    seed: int = 0
    width: int = 64  # stage widths width * (1, 2, 4, 8): 64 is ResNet-18; the CPU dry run uses less
    #: Capture the network's forward and backward in CUDA graphs (``torch.cuda.make_graphed_callables``; the
    #: loss and the optimizer step stay eager): one launch per pass instead of one per kernel, for networks
    #: whose step time is the host's launch cost (docs/benchmarks.md). CUDA only.
    cuda_graph: bool = False


def run_label(rate: float | None) -> str:
    """``"conv2d"`` for the plain network (``rate=None``), else ``"bl_r<rate>"``."""
    return "conv2d" if rate is None else f"bl_r{rate:g}"


def build_model(rate: float | None, backend: str, num_classes: int = 10, width: int = 64) -> nn.Module:
    """The CIFAR ResNet-18: ``nn.Conv2d`` (timm's ``resnet18`` with the CIFAR stem) for ``rate=None``, else
    ``bl_resnet18_cifar`` at ``rate`` with ``backend`` (the same network with band-limited 3x3 convolutions).
    ``width`` other than 64 scales the stage widths (``width * (1, 2, 4, 8)``)."""
    size = {} if width == 64 else {"stem_width": width, "channels": tuple(width * m for m in (1, 2, 4, 8))}
    if rate is None:
        model = timm.create_model("resnet18", num_classes=num_classes, **size)
        use_cifar_stem(model, "conv1", "maxpool")
        return model
    rate = check_rate(rate, "rate")
    return timm.create_model("bl_resnet18_cifar", num_classes=num_classes, compress_rate=rate, backend=backend, **size)


def make_optimizer(
    model: nn.Module, recipe: Recipe, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with Nesterov momentum and its one-cycle schedule over all of ``recipe.epochs``."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True, weight_decay=recipe.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch, pct_start=recipe.warmup_fraction
    )
    return optimizer, schedule


def _autocast(recipe: Recipe, device: torch.device):
    # autocast's cache of weight casts would hold tensors made outside the graphs' memory: off with graphs
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.bf16, cache_enabled=not recipe.cuda_graph)


def _graphed(model: nn.Module, data: DeviceImages, recipe: Recipe) -> nn.Module:
    """``model`` with its training forward and backward captured in CUDA graphs on one training batch.

    ``torch.cuda.make_graphed_callables`` runs the batch through a few warm-up passes (they update the
    BatchNorm running statistics like any training batch) and then replays the graphs for every call in
    training mode with the same batch shape; in eval mode the module runs eagerly, so evaluation is unchanged.
    """
    generator = torch.Generator(device=data.device)
    generator.manual_seed(recipe.seed * 100_003 - 1)  # not any epoch's stream of batches
    sample, _ = next(data.train_batches(recipe.batch_size, generator))
    model.train()
    with _autocast(recipe, data.device):
        return torch.cuda.make_graphed_callables(model, (sample,))


def _build(rate: float | None, backend: str, recipe: Recipe, device: torch.device) -> nn.Module:
    model = build_model(rate, backend, width=recipe.width).to(device)
    return model.to(memory_format=torch.channels_last) if recipe.channels_last else model


def train_epoch(model, data: DeviceImages, optimizer, schedule, recipe: Recipe, epoch: int) -> dict:
    """Epoch ``epoch`` through the experiments' shared loop (:func:`.training.train_epochs`); returns
    ``{"loss", "seconds", "steps", "schedule_steps"}`` (mean training loss over samples). The batches of an
    epoch depend only on ``(recipe.seed, epoch)``, so a resumed run sees the same data as an uninterrupted one."""
    device = data.device
    generator = torch.Generator(device=device)
    generator.manual_seed(recipe.seed * 100_003 + epoch)
    (stats,) = training.train_epochs(
        model, optimizer, lambda _: data.train_batches(recipe.batch_size, generator), [epoch], scheduler=schedule,
        autocast=lambda: _autocast(recipe, device), device=device, label_smoothing=recipe.label_smoothing,
    )  # fmt: skip
    if not math.isfinite(stats.mean_sample_loss):
        raise FloatingPointError(f"training loss is not finite in epoch {epoch}")
    return {"loss": stats.mean_sample_loss, "seconds": stats.seconds, "steps": len(stats.step_losses),
            "schedule_steps": schedule.last_epoch}  # fmt: skip


def evaluate(model: nn.Module, data: DeviceImages, recipe: Recipe, batch_size: int = 1000) -> dict:
    """``{"loss", "accuracy"}`` of ``model`` on every image of ``data`` (plain cross-entropy, no smoothing)."""
    with _autocast(recipe, data.device):
        result = training.evaluate(model, data.test_batches(batch_size))
    return {"loss": result.loss_sum / result.count, "accuracy": result.accuracy}


@dataclass
class RunState:
    """What a run's checkpoint holds besides the tensors (plain values only, for ``weights_only=True``)."""

    epoch: int = 0
    history: list = field(default_factory=list)
    peak_mib: float | None = None
    backend: str = "torch"
    notes: list = field(default_factory=list)


def _checkpoint_path(state_dir: Path, label: str) -> Path:
    return state_dir / f"{label}.pt"


def _save(path: Path, model, optimizer, schedule, state: RunState, recipe: Recipe) -> None:
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
               "state": asdict(state), "recipe": asdict(recipe)}  # fmt: skip
    save_torch(path, payload)  # atomic: a call killed while saving leaves the previous checkpoint whole


def train_run(
    rate: float | None,
    train: DeviceImages,
    test: DeviceImages,
    recipe: Recipe,
    state_dir: Path,
    seconds_left: float,
    backend: str = "auto",
    max_epochs: int | None = None,
) -> dict:
    """Train (or resume) one network of the table for ``recipe.epochs`` epochs within ``seconds_left``.

    The checkpoint ``state_dir/<run_label(rate)>.pt`` is written after each epoch and loaded (weights only)
    when present with the same recipe. An epoch starts only when the previous one's time fits in what is
    left, and at most ``max_epochs`` epochs run in this call. When ``backend`` is not ``"torch"`` and the
    first epoch fails, the run restarts with the torch path and says so in ``notes`` (one failing kernel
    does not cost the table).

    Returns:
        ``{"run", "rate", "backend", "epochs_done", "epochs", "finished", "history", "test_accuracy",
        "test_loss", "seconds_per_epoch", "peak_mib", "notes"}``; test numbers once finished. ``peak_mib``
        is the peak of ``torch.cuda.max_memory_allocated`` while training, above what was allocated before the
        network was built (the data on the GPU excluded; weights, gradients, optimizer state included).
    """
    device = train.device
    if recipe.cuda_graph and device.type != "cuda":
        raise ValueError(f"recipe.cuda_graph needs the data and the network on a CUDA device, got {device}")
    label = run_label(rate)
    path = _checkpoint_path(state_dir, label)
    state_dir.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = len(train) // recipe.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {recipe.batch_size} is larger than the {len(train)} training images")
    state = RunState(backend=backend if rate is not None else "cudnn" if device.type == "cuda" else "conv2d")
    train.pad_once()  # the data's memory is not the network's: it is allocated before the peak's baseline
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    torch.manual_seed(recipe.seed)
    model = _build(rate, backend if rate is not None else "torch", recipe, device)
    optimizer, schedule = make_optimizer(model, recipe, steps_per_epoch)
    if rate is not None:  # "auto" named as what runs: "cupy" or "torch"
        state.backend = next(m.resolved_backend for m in model.modules() if hasattr(m, "resolved_backend"))
    saved = None
    if path.is_file():
        try:
            saved = load_torch(path, device)
        except CorruptFile as error:  # as the ablation: named, moved aside, the run starts again
            move_aside(path, str(error))
    if saved is not None:
        if saved["recipe"] != asdict(recipe):
            raise ValueError(f"{path} was trained with another recipe ({saved['recipe']}); remove it to restart")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = RunState(**saved["state"])
        del saved  # the loaded copies would count in the peak
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if recipe.cuda_graph:
        # After loading (the graphs keep the parameters' storage, which loading copies into) and after the peak's
        # reset: replays run in the graphs' private pool, not counted as allocated, so the peak is the warm-up's.
        model = _graphed(model, train, recipe)
    deadline = time.monotonic() + seconds_left
    stop_at = recipe.epochs if max_epochs is None else min(recipe.epochs, state.epoch + max_epochs)
    while state.epoch < stop_at:
        last = state.history[-1]["seconds"] if state.history else None
        if last is not None and time.monotonic() + 1.2 * last > deadline:
            break
        try:
            epoch = train_epoch(model, train, optimizer, schedule, recipe, state.epoch)
        except Exception:
            if state.epoch > 0 or rate is None or state.backend == "torch":
                raise
            state.notes.append(f"backend {state.backend!r} failed in epoch 0, restarted with 'torch': "
                               + traceback.format_exc(limit=3))  # fmt: skip
            state.backend = "torch"
            torch.manual_seed(recipe.seed)  # the same initial weights as the failed attempt
            model = _build(rate, "torch", recipe, device)
            optimizer, schedule = make_optimizer(model, recipe, steps_per_epoch)
            if recipe.cuda_graph:
                model = _graphed(model, train, recipe)
            continue
        epoch["epoch"] = state.epoch + 1
        state.history.append(epoch)
        state.epoch += 1
        if device.type == "cuda":
            peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
            state.peak_mib = max(state.peak_mib or 0.0, peak)
        _save(path, model, optimizer, schedule, state, recipe)
        if time.monotonic() > deadline:
            break
    result = {"run": label, "rate": rate, "backend": state.backend, "epochs_done": state.epoch,
              "epochs": recipe.epochs, "finished": state.epoch >= recipe.epochs, "history": state.history,
              "seconds_per_epoch": _median([h["seconds"] for h in state.history]), "peak_mib": state.peak_mib,
              "notes": state.notes}  # fmt: skip
    if result["finished"]:
        result |= {f"test_{k}": v for k, v in evaluate(model, test, recipe).items()}
    return result


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def run_table(
    rates: list[float | None],
    train: DeviceImages,
    test: DeviceImages,
    recipe: Recipe,
    state_dir: Path,
    seconds: float,
    backend: str = "auto",
    max_epochs: int | None = None,
    start_reserve: float = 20.0,
) -> list[dict]:
    """Train or resume each network of ``rates`` (``None``: the ``nn.Conv2d`` network) in order within
    ``seconds``. A finished run's result is kept in ``state_dir/<label>.json`` and read back instead of
    training again; a run starts only with more than ``start_reserve`` seconds left; a run that fails
    records its error and the next one starts."""
    end = time.monotonic() + seconds
    results = []
    for rate in rates:
        label = run_label(rate)
        done = state_dir / f"{label}.json"
        if done.is_file():
            try:
                results.append(read_json(done))
                continue
            except CorruptFile as error:
                move_aside(done, str(error))
        left = end - time.monotonic()
        if left <= start_reserve:
            results.append({"run": label, "rate": rate, "finished": False, "notes": ["not started: no time left"]})
            continue
        try:
            result = train_run(rate, train, test, recipe, state_dir, left, backend, max_epochs)
        except Exception as error:  # the next network still gets its turn
            result = {"run": label, "rate": rate, "finished": False, "error": f"{type(error).__name__}: {error}",
                      "traceback": traceback.format_exc(limit=8)}  # fmt: skip
        if result.get("finished"):
            write_json(done, result)
        results.append(result)
    return results


def table_report(results: list[dict], recipe: Recipe) -> str:
    """Markdown: one row per network, accuracy and its difference to ``bl`` rate 0 in points, median seconds
    per epoch and peak memory with their ratios to rate 0."""
    zero = next((r for r in results if r.get("rate") == 0.0 and r.get("finished")), None)

    def ratio(row: dict, key: str) -> str:
        a, b = row.get(key), zero and zero.get(key)
        return "-" if a is None or not b else f"{a / b:.2f}"

    lines = [
        f"Recipe: {recipe.epochs} epochs, batch {recipe.batch_size}, SGD Nesterov one-cycle peak lr {recipe.lr}, "
        f"weight decay {recipe.weight_decay}, label smoothing {recipe.label_smoothing}, "
        f"{'bf16 autocast' if recipe.bf16 else 'float32'}{', channels_last' if recipe.channels_last else ''}, "
        f"{'forward and backward in CUDA graphs, ' if recipe.cuda_graph else ''}"
        "random crop (4 px reflect padding) + flip on the GPU.",
        "",
        "| network | rate | backend | epochs | test accuracy % | vs rate 0 (points) | s / epoch | time vs rate 0 "
        "| peak MiB | memory vs rate 0 | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        accuracy = row.get("test_accuracy")
        delta = "-" if accuracy is None or zero is None else f"{100 * (accuracy - zero['test_accuracy']):+.2f}"
        network = "nn.Conv2d (timm resnet18, CIFAR stem)" if row.get("rate") is None else "bl_resnet18_cifar"
        note = row.get("error") or ("; ".join(n.splitlines()[0] for n in row.get("notes", [])))
        if not row.get("finished") and not row.get("error"):
            note = f"unfinished ({row.get('epochs_done', 0)}/{recipe.epochs} epochs)" + (f"; {note}" if note else "")
        spe, peak = row.get("seconds_per_epoch"), row.get("peak_mib")
        lines.append(
            f"| {network} | {'-' if row.get('rate') is None else row['rate']} | {row.get('backend', '-')} "
            f"| {row.get('epochs_done', '-')} | {'-' if accuracy is None else f'{100 * accuracy:.2f}'} | {delta} "
            f"| {'-' if spe is None else f'{spe:.1f}'} | {ratio(row, 'seconds_per_epoch')} "
            f"| {'-' if peak is None else f'{peak:.0f}'} | {ratio(row, 'peak_mib')} | {note[:160].replace('|', '/')} |"
        )
    return "\n".join(lines)
