"""What one run measures besides accuracy: parameters, multiply-adds, saved-for-backward bytes,
peak memory, and the compression each layer actually applies."""

from __future__ import annotations

import copy
import resource
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ...layers.spectral_plan import is_cached_constant

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def count_parameters(model: nn.Module) -> int:
    """Trainable and frozen parameters (buffers such as batch-norm statistics not included)."""
    return sum(p.numel() for p in model.parameters())


def _is_convolution(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("in_channels", "out_channels", "kernel_size", "groups"))


@torch.no_grad()
def dense_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of one forward pass on ``example`` as if every convolution were dense.

    Counted by forward hooks: each convolution-like module (anything with
    ``in_channels``, ``out_channels``, ``kernel_size`` and ``groups``, so the transform-domain
    layers too) costs ``output elements x in_channels / groups x prod(kernel_size)``, each
    ``nn.Linear`` ``output elements x in_features``. The architecture's nominal cost: equal
    for every domain and rate.
    """
    total = 0

    def hook(module: nn.Module, _args, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        else:
            kernel = 1
            for k in module.kernel_size:
                kernel *= k
            total += output.numel() * (module.in_channels // module.groups) * kernel

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear) or _is_convolution(m)]
    was_training = model.training
    try:
        model.eval()
        model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total


@torch.no_grad()
def executed_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of the matrix products and convolutions one forward pass on ``example`` executes.

    ``torch.utils.flop_counter.FlopCounterMode`` counts ``aten`` matmuls and convolutions
    (2 FLOPs per multiply-add); FFTs and element-wise products are not counted, so this is a
    lower bound for the FFT domain and exact for dense, SVD-separable and DCT-masked
    convolutions. One uncounted forward pass runs first: what a layer computes once on first use (the SVD
    layer's factorisation, the band-limited layers' cached transform matrices) is not a pass's cost.
    """
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
        with FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def saved_for_backward_bytes(step_forward) -> int:
    """Bytes of the distinct storages autograd keeps for backward during ``step_forward()``.

    ``step_forward`` runs one training forward pass and returns the loss; every tensor
    saved for backward passes through ``torch.autograd.graph.saved_tensors_hooks`` and is
    counted once per storage (views of one storage count once). The band-limited layers' cached plans
    and DFT matrices are not counted: every call shares them and they stay allocated between steps
    (:func:`freqnets.layers.spectral_plan.is_cached_constant`).
    """
    storages: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if is_cached_constant(t):
            return t
        storage = t.untyped_storage()
        storages[(t.device.type, storage.data_ptr())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step_forward()
    del loss
    return sum(storages.values())


def measure_saved_bytes(model: nn.Module, loss_fn, images: torch.Tensor, labels: torch.Tensor, autocast) -> int:
    """:func:`saved_for_backward_bytes` of one training forward on a copy of ``model`` (its statistics untouched)."""
    model = copy.deepcopy(model).train()

    def forward() -> torch.Tensor:
        with autocast():
            return loss_fn(model(images), labels)

    return saved_for_backward_bytes(forward)


def _status_bytes(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in {_STATUS}")


class PeakMemory:
    """The peak resident memory of this process between :meth:`start` and :meth:`peak_bytes`.

    On Linux the kernel's high-water mark (``VmHWM``) is reset at :meth:`start` by writing
    ``5`` to ``/proc/self/clear_refs``, so the peak is this run's own (``method ==
    "vmhwm-reset"``). Elsewhere ``getrusage(RUSAGE_SELF).ru_maxrss`` is used: the
    process-lifetime maximum, which only grows (``method == "ru_maxrss-lifetime"``); run one
    configuration per process for comparable numbers there. On CUDA the allocator's peak
    (``torch.cuda.max_memory_allocated``) is also recorded.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = "ru_maxrss-lifetime"
        self.start_bytes = 0

    def start(self) -> PeakMemory:
        try:
            _CLEAR_REFS.write_text("5")
            self.method = "vmhwm-reset"
            self.start_bytes = _status_bytes("VmRSS:")
        except OSError:
            self.method = "ru_maxrss-lifetime"
            self.start_bytes = self.peak_bytes()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def peak_bytes(self) -> int:
        if self.method == "vmhwm-reset":
            return _status_bytes("VmHWM:")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss if sys.platform == "darwin" else rss * 1024

    def growth_bytes(self) -> int:
        """Peak minus the resident memory at :meth:`start`: what the run added. A lower bound when earlier
        work in this process left freed memory with the allocator (reused without growing the process)."""
        return max(self.peak_bytes() - self.start_bytes, 0)

    def gpu_peak_bytes(self) -> int | None:
        if self.device.type != "cuda":
            return None
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device)


def applied_compression(model: nn.Module) -> list[dict]:
    """Per convolution of a converted model: its name, layer type, and the ``compress_rate`` it applies now.

    Rows come from ``model.freqnets_conversion`` (the :class:`~freqnets.layers.ConversionSummary`
    of :func:`freqnets.convert_model`), with the live rate of each converted layer: the rank
    rounding of SVD, the frozen or re-calibrated FFT rates. Unconverted layers have rate 0 and
    say why in ``note``.
    """
    summary = getattr(model, "freqnets_conversion", None)
    if summary is None:
        return []
    rows = []
    for row in summary.rows:
        layer = model.get_submodule(row.name) if row.name else model
        rate = float(getattr(layer, "compress_rate", 0.0)) if row.converted else 0.0
        rows.append(
            {
                "name": row.name,
                "layer": type(layer).__name__,
                "kernel_size": list(row.kernel_size),
                "converted": row.converted,
                "compress_rate": rate,
                "note": row.note,
            }
        )
    return rows


def mean_rate(rows: list[dict]) -> float:
    """The mean applied rate over converted layers (0 when none is converted)."""
    rates = [r["compress_rate"] for r in rows if r["converted"]]
    return sum(rates) / len(rates) if rates else 0.0
