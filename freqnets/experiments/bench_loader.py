"""``freqnets bench loader``: JPEG bytes -> model-ready tensors, DCT reading vs Pillow decoding, side by side.

Two pipelines on the same in-memory JPEG files (the zip is read once, so disk speed is out):

* **DCT**: :func:`freqnets.jpeg.read_dct` (default backend, ``order="zigzag"``, ``chroma="420"``: chroma
  planes of 4:4:4, 4:2:2, ... files converted to 4:2:0 in the DCT domain while reading, per sample) ->
  :class:`freqnets.jpeg.DCTCollate` (stacked layout, 64 + 2 x 64 channels, per-channel normalisation;
  ImageNet files centre-cropped/zero-padded to 28 x 28 blocks = 224 px). For ImageNet a
  second row reads with ``read_dct(..., crop=(28, 28))`` (only the window that the collate keeps is laid
  out; the batches are identical, tested in ``tests/jpeg/test_crop.py``), and a third the same in
  ``layout="planes"`` (luma ``(B, 64, 28, 28)`` and chroma ``(B, 128, 14, 14)``: the input of the
  late-fusion and multigrid DCT models, half the bytes of the stacked layout). Rows marked
  ``DCTReadCollate`` give the DataLoader the files' bytes and read them in the collate function,
  straight into the batch (:class:`freqnets.jpeg.DCTReadCollate`; for ImageNet with the 28 x 28 window).
* **Pillow**: ``PIL.Image.open(...).convert("RGB")`` -> (ImageNet: ``CenterCrop(224)``, padding
  small images) -> ``ToTensor`` -> ``Normalize``, batched by torch's ``default_collate`` (which, in
  DataLoader workers, stacks straight into shared memory, as ``DCTCollate`` does).

Each is timed per image (one process, bytes -> a batch of one) and through a ``DataLoader`` with
0 and 2 workers (the second of two epochs with persistent workers, so worker start-up is out; an
epoch is the files repeated to 10,000 samples for CIFAR-10 and 1,000 for ImageNet; worker rows
once with torch's default sharing strategy and once with each other one, e.g. ``file_system``),
all with one torch thread per process (what ``DataLoader`` workers use).
The ratio DCT / Pillow is printed for each. Finally one training step (forward, backward, SGD)
of a DCT-input ResNet-18 (``dct_resnet18_cifar`` / ``dct_resnet18`` in timm) on a loader batch is
timed, to show whether the loader would be the bottleneck of training on this machine.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from PIL import __version__ as PIL_VERSION
from torch.utils.data import default_collate
from torchvision import transforms

from ..jpeg import DCTCollate, DCTReadCollate, read_dct
from .data import image_payloads

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass
class Source:
    """In-memory JPEG files to benchmark on."""

    name: str
    payloads: list[bytes]
    imagenet: bool  # varied sizes: centre crop / pad to 224 px
    epoch: int = 0  # DataLoader samples per epoch: the files repeated in order up to this (0: each once)


def load_payloads(path: Path, limit: int, split: str | None = None) -> list[bytes]:
    """The bytes of the first ``limit`` JPEG members (sorted by name) of a zip archive or folder."""
    return [payload for _, payload in image_payloads(path, split, limit, suffixes=(".jpg", ".jpeg"))]


def default_sources(cifar: Path, limit: int) -> list[Source]:
    """The given CIFAR-10 JPEGs, the shared CIFAR-10 set and the ImageNet sample where present."""
    # Epochs of at least ~0.3 s at the DCT rates, so that the DataLoader rows are not dominated by
    # worker wake-ups and the last batch of an epoch (2,000 CIFAR files take ~50 ms at 40k images/s).
    sources = [Source(f"CIFAR-10 ({cifar.name})", load_payloads(cifar, limit, "train"), False, 10_000)]
    shared_cifar = SHARED / "cifar10-jpeg" / "train.zip"
    if shared_cifar.exists() and shared_cifar.resolve() != Path(cifar).resolve():
        sources.append(Source("CIFAR-10 (shared train.zip)", load_payloads(shared_cifar, limit), False, 10_000))
    imagenet = SHARED / "imagenet-sample" / "images.zip"
    if imagenet.exists():
        sources.append(Source("ImageNet sample (500 files)", load_payloads(imagenet, limit), True, 1_000))
    return sources


class DCTPipeline:
    """JPEG bytes -> coefficients (per sample) -> stacked, normalised DCT batch."""

    name = "DCT"

    def __init__(
        self,
        imagenet: bool,
        calibration: list[bytes],
        crop: bool = False,
        layout: str = "stacked",
        in_collate: bool = False,
        threads: int = 1,
    ) -> None:
        grid = (28, 28) if imagenet else None  # CIFAR files all have the same 4x4 grid
        self.crop = grid if crop else None
        x, _ = DCTCollate(layout="stacked", grid=grid)([(self._read(p), 0) for p in calibration])
        mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-3)  # per-channel statistics
        self.layout, self.in_collate = layout, in_collate
        self.collate = DCTCollate(layout=layout, grid=grid, normalize=(mean, std))
        self.threads = threads
        if in_collate:  # the dataset yields bytes; files are read straight into the batch (crop = grid)
            self.collate = DCTReadCollate(self.collate, threads=threads)

    def _read(self, payload: bytes, crop: tuple[int, int] | None = None):
        # zigzag: the collate's channel order, so it copies channel runs instead of gathering
        return read_dct(payload, crop=crop, chroma="420", order="zigzag")

    def sample(self, payload: bytes):
        return payload if self.in_collate else self._read(payload, self.crop)


class PillowPipeline:
    """JPEG bytes -> RGB image (Pillow) -> normalised tensor -> stacked batch."""

    name = "Pillow"

    def __init__(self, imagenet: bool) -> None:
        steps = [transforms.CenterCrop(224)] if imagenet else []
        self.transform = transforms.Compose(
            [*steps, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )

    def sample(self, payload: bytes) -> torch.Tensor:
        with Image.open(io.BytesIO(payload)) as image:
            return self.transform(image.convert("RGB"))

    @staticmethod
    def collate(samples):
        # torch's own collate: in DataLoader workers it stacks straight into shared memory
        return default_collate(samples)


class BytesDataset(torch.utils.data.Dataset):
    """In-memory payloads -> ``(fn(payload), 0)``."""

    def __init__(self, payloads: list[bytes], fn: Callable) -> None:
        self.payloads, self.fn = payloads, fn

    def __len__(self) -> int:
        return len(self.payloads)

    def __getitem__(self, index: int):
        return self.fn(self.payloads[index]), 0


def per_image_rate(pipeline, payloads: list[bytes], repeats: int = 2) -> float:
    """Images per second, bytes -> a model-ready batch of one, best of ``repeats`` passes."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for payload in payloads:
            pipeline.collate([(pipeline.sample(payload), 0)])
        best = min(best, time.perf_counter() - start)
    return len(payloads) / best


def loader_rate(pipeline, payloads: list[bytes], workers: int, batch_size: int, epoch: int = 0) -> tuple[float, object]:
    """Images per second through a DataLoader (second epoch), and its first (full) batch.

    ``epoch``: samples per epoch, the files repeated in order (0: each file once)."""
    if epoch > len(payloads):
        payloads = (payloads * -(-epoch // len(payloads)))[:epoch]
    loader = torch.utils.data.DataLoader(
        BytesDataset(payloads, pipeline.sample), batch_size=batch_size, num_workers=workers,
        collate_fn=pipeline.collate, persistent_workers=workers > 0,
    )  # fmt: skip
    first, elapsed = None, 0.0
    for _ in range(2):
        start = time.perf_counter()
        for batch in loader:
            first = batch if first is None else first
        elapsed = time.perf_counter() - start
    return len(payloads) / elapsed, first


def train_step_seconds(x: torch.Tensor, imagenet: bool, repeats: int = 2) -> tuple[float, int]:
    """Seconds of one SGD step (forward, cross-entropy backward, update) of a DCT-input ResNet-18 on ``x``.

    Timed at torch's thread count and at one thread (on a busy shared machine more threads can be
    slower); returns the faster and its thread count.
    """
    import timm

    import freqnets.models  # noqa: F401  (registers the models)

    name = "dct_resnet18" if imagenet else "dct_resnet18_cifar"
    model = timm.create_model(name, num_classes=1000 if imagenet else 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    labels = torch.zeros(x.shape[0], dtype=torch.long)
    threads = torch.get_num_threads()
    best, best_threads = float("inf"), threads
    for count in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(count)
        for _ in range(repeats + 1):
            start = time.perf_counter()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), labels).backward()
            optimizer.step()
            elapsed = time.perf_counter() - start
            if elapsed < best:
                best, best_threads = elapsed, count
    torch.set_num_threads(threads)
    return best, best_threads


_DEFAULT_SHARING = torch.multiprocessing.get_sharing_strategy()


def _sharing_strategies() -> list[str]:
    """torch's default way of sending worker batches, then the others this platform has.

    Linux's default, ``file_descriptor``, passes every tensor's shared-memory descriptor through a
    socket; ``file_system`` sends its name instead: for small, fast batches that per-tensor cost decides
    the worker rows (measured side by side, for both pipelines)."""
    others = sorted(torch.multiprocessing.get_all_sharing_strategies() - {_DEFAULT_SHARING})
    return [_DEFAULT_SHARING, *others]


def _sharing_label(sharing: str | None) -> str:
    return "" if sharing in (None, _DEFAULT_SHARING) else f" ({sharing} sharing)"


@contextmanager
def _sharing_strategy(sharing: str | None):
    """Use torch's ``sharing`` strategy for DataLoader workers started inside (``None``: leave it)."""
    if sharing is None:
        yield
        return
    before = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy(sharing)
    try:
        yield
    finally:
        torch.multiprocessing.set_sharing_strategy(before)


@dataclass
class Row:
    source: str
    mode: str
    dct: float
    pillow: float


def run(sources: list[Source], workers: list[int], batch_size: int, step: bool = True) -> tuple[list[Row], list[str]]:
    """Measure every source; returns rows of images/s and the training-step lines."""
    rows, notes = [], []
    threads = torch.get_num_threads()
    for source in sources:
        torch.set_num_threads(1)  # as in DataLoader workers; tiny multi-threaded ops only contend on a busy machine
        payloads = source.payloads
        bs = min(batch_size, 32) if source.imagenet else batch_size
        pil = PillowPipeline(source.imagenet)
        variants = [("", DCTPipeline(source.imagenet, payloads[:256]))]
        cores = os.cpu_count() or 1
        if not source.imagenet:
            variants.append((", DCTReadCollate", DCTPipeline(False, payloads[:256], in_collate=True)))
            if cores > 1:  # the batch's files decoded on every core inside the C extension
                threaded = DCTPipeline(False, payloads[:256], in_collate=True, threads=cores)
                variants.append((f", DCTReadCollate, {cores} threads", threaded))
        if source.imagenet:
            variants.append((", read_dct crop", DCTPipeline(source.imagenet, payloads[:256], crop=True)))
            # the late-fusion / multigrid models' input: luma and 4:2:0 chroma planes, chroma not repeated
            planes = DCTPipeline(source.imagenet, payloads[:256], crop=True, layout="planes")
            variants.append((", read_dct crop, planes layout", planes))
            reader = DCTPipeline(source.imagenet, payloads[:256], crop=True, in_collate=True)
            variants.append((", DCTReadCollate (crop)", reader))
            if cores > 1:
                threaded = DCTPipeline(source.imagenet, payloads[:256], crop=True, in_collate=True, threads=cores)
                variants.append((f", DCTReadCollate (crop), {cores} threads", threaded))
        pil_rate = per_image_rate(pil, payloads)
        for suffix, dct in variants:
            if dct.threads == 1:  # threads share out a batch's files: nothing to share in a batch of one
                rows.append(Row(source.name, f"per image{suffix}", per_image_rate(dct, payloads), pil_rate))
        last = None
        for w, sharing in [(n, s) for n in workers for s in (_sharing_strategies() if n else [None])]:
            with _sharing_strategy(sharing):
                label = f"DataLoader, {w} workers{_sharing_label(sharing)}, batch {bs}"
                pil_rate, _ = loader_rate(pil, payloads, w, bs, source.epoch)
                for suffix, dct in variants:
                    if w > 0 and dct.threads > 1:  # each worker has a core: threads would only contend
                        continue
                    dct_rate, last_batch = loader_rate(dct, payloads, w, bs, source.epoch)
                    rows.append(Row(source.name, f"{label}{suffix}", dct_rate, pil_rate))
                    if dct.layout == "stacked" and sharing in (None, _DEFAULT_SHARING):  # the step's model input
                        last = (last_batch, dct_rate, w)
        torch.set_num_threads(threads)
        if step and last is not None:
            (x, _), rate, w = last
            step_s, step_threads = train_step_seconds(x, source.imagenet)
            load_s = x.shape[0] / rate
            model = "dct_resnet18" if source.imagenet else "dct_resnet18_cifar"
            verdict = "not the bottleneck" if load_s < step_s else "THE BOTTLENECK"
            notes.append(
                f"{source.name}: DCT loader {load_s * 1e3:.1f} ms per batch of {x.shape[0]} ({w} workers) vs "
                f"{step_s * 1e3:.0f} ms per training step of {model} ({step_threads} thread(s)) "
                f"on {tuple(x.shape)}: the loader is {verdict} ({step_s / load_s:.1f}x)"
            )
    return rows, notes


def report(rows: list[Row], notes: list[str]) -> str:
    """A markdown table of images/s and the DCT / Pillow ratios, then the training-step lines."""
    lines = [
        f"{pil_name()}, torch {torch.__version__}, loaders at 1 torch thread; read_dct backend: "
        f"{_backend_name()}",
        "",
        "| files | pipeline | DCT images/s | Pillow images/s | DCT / Pillow |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.source} | {r.mode} | {r.dct:,.0f} | {r.pillow:,.0f} | {r.dct / r.pillow:.2f}x |")
    return "\n".join([*lines, "", *notes])


def pil_name() -> str:
    """Which PIL decodes the Pillow rows: Pillow-SIMD (a ``.postN`` version, the fair anchor: run with its
    folder first on ``PYTHONPATH``, e.g. after ``pip install --target /work/simd pillow-simd``) or Pillow."""
    import PIL

    kind = "Pillow-SIMD" if ".post" in PIL_VERSION else "Pillow"
    return f"{kind} {PIL_VERSION} ({PIL.__file__.rsplit('/', 2)[0]})"


def _backend_name() -> str:
    from ..jpeg import available_backends

    return available_backends()[0] if available_backends() else "?"
