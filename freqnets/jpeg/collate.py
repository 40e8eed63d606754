"""Batch :class:`~freqnets.jpeg.JpegCoefficients` into the tensors DCT-input networks take.

:class:`DCTCollate` is a ``collate_fn`` for :class:`torch.utils.data.DataLoader` over samples
``(JpegCoefficients, label)``:

* ``layout="planes"`` -> :class:`DCTBatch` ``(y, cbcr, labels)``: luma ``(B, Ky, Hy, Wy)`` and
  chroma ``(B, 2*Kc, Hc, Wc)`` (Cb channels, then Cr) at the target chroma layout
  (``"420"``: ``Hc = ceil(Hy / 2)``, ``Wc = ceil(Wy / 2)``; ``"422"``: ``Hc = Hy``, ``Wc = ceil(Wy/2)``;
  ``"444"``: ``Hc = Hy``, ``Wc = Wy``).
* ``layout="stacked"`` -> ``(x, labels)`` with ``x (B, Ky + 2*Kc, Hy, Wy)``: the chroma channels
  upsampled to the luma block grid by nearest neighbour (each chroma block repeated), "early fusion".

Channels: the lowest ``Ky`` (``Kc``) frequencies in JPEG zigzag order, in zigzag order.

Mixed batches. Files with any chroma subsampling are converted to the target layout **in the DCT
domain**, with exact linear maps (:mod:`.chroma`, :mod:`.resample`): downsampling averages 2x2 (2x1, ...) pixels
(e.g. 4:4:4 -> 4:2:0: each 2x2 group of chroma blocks -> one block), upsampling replicates pixels
(4:1:1 -> 4:2:0 horizontally); the converted chroma grid is then cut or zero-padded at the
bottom/right to the target grid. Greyscale images get zero chroma coefficients, i.e. neutral
chroma (Cb = Cr = 128): the same as a colour image with no colour.

Sizes. With ``grid=None`` every sample must have the same luma block grid (a ``ValueError`` says
which differ). With ``grid=(Hy, Wy)`` (luma blocks) each sample is centre-cropped or zero-padded
on the block grid to that size; offsets are rounded down to whole chroma groups of both the
file's and the target layout, so luma and chroma stay aligned (16-pixel steps for 4:2:0), and
only the kept window's chroma is converted. Zero coefficients are mid-grey pixels.

``normalize=(mean, std)``: per-channel statistics, applied to the whole batch after padding
(padding and greyscale chroma are normalised like any grey pixels). Each has ``Ky + 2*Kc`` entries
(y, cb, cr channels as output) or ``3 * b*b`` entries (all channels of y, cb, cr in zigzag order,
e.g. measured on the training set in ``order="zigzag"``), from which the selected ones are taken.

Inside a :class:`~torch.utils.data.DataLoader` worker the output tensors are allocated in shared memory
(as ``default_collate`` does), so sending a batch to the main process does not copy it again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import torch

from ..transforms import zigzag_indices
from .chroma import centre_offsets, chroma_factors, chroma_grid, fit_grid, layout_factors, resample_chroma
from .coefficients import JpegCoefficients, JpegUnsupportedError
from .colour import cmyk_to_ycbcr

LAYOUTS = ("planes", "stacked")
CMYK_MODES = ("error", "ycbcr")
# luma grids of at least this many blocks are written sample by sample (smaller ones: batched ops)
_PER_SAMPLE_BLOCKS = 64


class DCTBatch(NamedTuple):
    """A batch for DCT-input models (see the module docstring)."""

    y: torch.Tensor  # (B, Ky, Hy, Wy) float32
    cbcr: torch.Tensor  # (B, 2*Kc, Hc, Wc) float32: Cb channels then Cr channels
    labels: torch.Tensor  # (B,) int64


class BatchShape(NamedTuple):
    """Channels and block grids of a batch: luma ``(B, ky, hy, wy)``, chroma ``(B, 2*kc, hc, wc)``."""

    ky: int
    kc: int
    hy: int
    wy: int
    hc: int
    wc: int


class DCTCollate:
    """``collate_fn`` for ``(JpegCoefficients, label)`` samples (see the module docstring).

    Args:
        layout: ``"planes"`` (returns :class:`DCTBatch`) or ``"stacked"`` (returns ``(x, labels)``).
        y_channels: ``Ky``, the lowest luma frequencies kept in zigzag order (1..b*b).
        c_channels: ``Kc`` per chroma plane (0..b*b).
        chroma: target chroma layout ``"420"``, ``"422"`` or ``"444"``.
        normalize: ``None`` or ``(mean, std)`` (sequences or 1D tensors, see the module docstring).
        grid: ``None`` (all samples share a block grid) or ``(Hy, Wy)`` luma blocks to crop/pad to.
        cmyk: what to do with CMYK/YCCK samples (``colour_model`` ``"cmyk"``/``"ycck"``, four planes):
            ``"error"`` (:class:`~freqnets.jpeg.JpegUnsupportedError` naming the sample) or ``"ycbcr"``:
            convert them with :func:`~freqnets.jpeg.cmyk_to_ycbcr` (black applied per block, documented there).

    Example:
        >>> from freqnets.jpeg import encode_dct
        >>> samples = [(encode_dct(torch.rand(3, 32, 32)), 3), (encode_dct(torch.rand(3, 32, 32)), 5)]
        >>> batch = DCTCollate()(samples)
        >>> batch.y.shape, batch.cbcr.shape, batch.labels.tolist()
        (torch.Size([2, 64, 4, 4]), torch.Size([2, 128, 2, 2]), [3, 5])
    """

    def __init__(
        self,
        layout: str = "planes",
        y_channels: int = 64,
        c_channels: int = 64,
        chroma: str = "420",
        normalize: tuple[Sequence[float] | torch.Tensor, Sequence[float] | torch.Tensor] | None = None,
        grid: tuple[int, int] | None = None,
        cmyk: str = "error",
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        for name, value, low in (("y_channels", y_channels, 1), ("c_channels", c_channels, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.layout, self.y_channels, self.c_channels = layout, y_channels, c_channels
        self.chroma = chroma
        self.factors = layout_factors(chroma)
        if grid is not None:
            if len(grid) != 2 or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid):
                raise ValueError(f"grid must be None or (Hy, Wy) positive block counts, got {grid!r}")
            grid = (int(grid[0]), int(grid[1]))
        self.grid = grid
        self.normalize = None if normalize is None else self._check_normalize(normalize)
        if cmyk not in CMYK_MODES:
            raise ValueError(f"cmyk must be one of {CMYK_MODES}, got {cmyk!r}")
        self.cmyk = cmyk

    def _check_normalize(self, normalize) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            mean, std = (torch.as_tensor(v, dtype=torch.float32).flatten() for v in normalize)
        except (TypeError, ValueError) as error:
            raise ValueError(f"normalize must be None or (mean, std) sequences of numbers: {error}") from error
        if mean.shape != std.shape:
            raise ValueError(f"normalize mean and std must have the same length, got {mean.numel()}, {std.numel()}")
        if not torch.isfinite(mean).all() or not (std > 0).all():
            raise ValueError("normalize mean must be finite and std > 0")
        return mean, std

    def __repr__(self) -> str:
        return (
            f"DCTCollate(layout={self.layout!r}, y_channels={self.y_channels}, c_channels={self.c_channels}, "
            f"chroma={self.chroma!r}, normalize={'None' if self.normalize is None else '(...)'}, grid={self.grid}"
            + (f", cmyk={self.cmyk!r})" if self.cmyk != "error" else ")")
        )

    def selected_stats(self, b2: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mean, std)`` of the ``Ky + 2*Kc`` output channels (``b2 = b*b`` channels per plane), or ``None``."""
        if self.normalize is None:
            return None
        ky, kc = self.y_channels, self.c_channels
        mean, std = self.normalize
        if mean.numel() == ky + 2 * kc:
            return mean, std
        if mean.numel() == 3 * b2:
            index = torch.cat([torch.arange(ky), b2 + torch.arange(kc), 2 * b2 + torch.arange(kc)])
            return mean[index], std[index]
        raise ValueError(f"normalize needs {ky + 2 * kc} (selected) or {3 * b2} (all) entries, got {mean.numel()}")

    def batch_shape(self, hy: int, wy: int) -> BatchShape:
        """The :class:`BatchShape` of batches on a luma grid of ``hy x wy`` blocks."""
        return BatchShape(self.y_channels, self.c_channels, hy, wy, *chroma_grid(hy, wy, self.factors))

    def _three_planes(self, coeffs: list[JpegCoefficients]) -> list[JpegCoefficients]:
        """``coeffs`` with CMYK/YCCK samples converted to YCbCr (``cmyk="ycbcr"``), else the typed error."""
        for i, c in enumerate(coeffs):
            if c.colour_model in ("cmyk", "ycck"):
                if self.cmyk == "error":
                    raise JpegUnsupportedError(
                        f"sample {i} of the batch is {c.colour_model.upper()} (four planes): pass DCTCollate(cmyk="
                        "'ycbcr') or convert it with freqnets.jpeg.cmyk_to_ycbcr"
                    )
                coeffs = [*coeffs[:i], cmyk_to_ycbcr(c), *coeffs[i + 1 :]]
        return coeffs

    def _in_layout(self, coeffs: list[JpegCoefficients], shape: BatchShape) -> list[bool]:
        """Per sample: True when it already has the batch's grid, the target chroma layout and the first
        sample's order (then it is written directly; the others go through :meth:`_place`)."""
        order = coeffs[0].order
        luma, chroma = (shape.hy, shape.wy), (shape.hc, shape.wc)
        layouts: dict[tuple, bool] = {}  # sampling factors -> the target chroma layout?
        fits = []
        for c in coeffs:
            fit = c.order == order and c.cb is not None and c.y.shape[-2:] == luma and c.cb.shape[-2:] == chroma
            if fit:
                fit = layouts.get(c.sampling_factors)
                if fit is None:
                    fit = layouts[c.sampling_factors] = chroma_factors(c.sampling_factors) == self.factors
            fits.append(fit)
        return fits

    def _fast(
        self,
        coeffs: list[JpegCoefficients],
        fits: list[bool],
        shape: BatchShape,
        stats: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Fast path: samples in the batch's grid and chroma layout (``fits``) written in few passes, the
        others (if any) through :meth:`_place` and then copied in.

        Returns ``(x, y, cbcr)``: for ``layout="planes"`` ``x`` is ``None`` and ``y``, ``cbcr`` are the
        (normalised) outputs; for ``"stacked"`` ``x`` has ``y`` (normalised) already in place and ``cbcr``
        is the normalised chroma at its own grid, still to be upsampled into ``x``.
        """
        ky, kc, hy, wy, hc, wc = shape
        batch = len(coeffs)
        index = [i for i, fit in enumerate(fits) if fit]
        rest = [i for i, fit in enumerate(fits) if not fit]
        if coeffs[index[0]].order == "zigzag":  # the lowest frequencies are the first channels: slices, no gather
            y_index = c_index = None
        else:
            zigzag = zigzag_indices(coeffs[0].block_size)
            y_index, c_index = zigzag[:ky], zigzag[:kc]
        y_stats = c_stats = None
        if stats is not None:
            mean, std = stats
            y_stats = mean[:ky].view(-1, 1, 1), std[:ky].view(-1, 1, 1)
            c_stats = mean[ky:].view(-1, 1, 1), std[ky:].view(-1, 1, 1)
        if self.layout == "stacked":
            x = new_output(batch, ky + 2 * kc, hy, wy)
            y, cbcr = x[:, :ky], None
        else:
            x, y = None, new_output(batch, ky, hy, wy)
            cbcr = new_output(batch, 2 * kc, hc, wc)
        if not rest:
            _write_luma(y, coeffs, ky, y_index, y_stats)
            if kc:
                cbcr = _gather_chroma(coeffs, kc, c_index, cbcr)
        else:  # per sample (large grids only), the others from _place (natural order, channels selected)
            place_y, place_c = self._place([coeffs[i] for i in rest], shape, shared=False)
            sources = dict(zip(rest, place_y, strict=True))
            for i, dest in enumerate(y):
                if i in sources:
                    _write_luma_sample(dest, sources[i], ky, None, y_stats)
                else:
                    _write_luma_sample(dest, coeffs[i].y, ky, y_index, y_stats)
            if kc:
                cbcr = torch.empty(batch, 2 * kc, hc, wc) if cbcr is None else cbcr
                cbcr.index_copy_(0, torch.tensor(rest), place_c)
                fitting = _gather_chroma([coeffs[i] for i in index], kc, c_index, None)
                cbcr.index_copy_(0, torch.tensor(index), fitting)
        if kc:
            if c_stats is not None:
                cbcr.sub_(c_stats[0]).div_(c_stats[1])
        elif cbcr is None:
            cbcr = torch.empty(batch, 0, hc, wc)
        return x, y, cbcr

    def _place(
        self, coeffs: list[JpegCoefficients], shape: BatchShape, shared: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """General path: centre crop/pad per sample; chroma conversion batched over samples of one layout.

        ``shared``: allocate ``y`` and ``cbcr`` as outputs (see :func:`new_output`)."""
        ky, kc, hy, wy, hc, wc = shape
        fh, fv = self.factors
        zigzag = zigzag_indices(coeffs[0].block_size)
        y_index, c_index = zigzag[:ky], zigzag[:kc]
        new = new_output if shared else torch.empty
        y = new(len(coeffs), ky, hy, wy).zero_()
        cbcr = new(len(coeffs), 2 * kc, hc, wc).zero_()
        pending: dict[tuple, list] = {}  # (source factors, window shape) -> samples whose chroma to convert
        for i, c in enumerate(coeffs):
            natural = c.to_order("natural")
            sh, sv = (1, 1) if natural.cb is None else chroma_factors(natural.sampling_factors)
            # offsets in whole groups of both the source and the target chroma layout
            sy, dy, ny = centre_offsets(natural.y.shape[-2], hy, math.lcm(fv, sv))
            sx, dx, nx = centre_offsets(natural.y.shape[-1], wy, math.lcm(fh, sh))
            # slice (a view) before selecting channels, so only the window is copied
            y[i, :, dy : dy + ny, dx : dx + nx] = natural.y[:, sy : sy + ny, sx : sx + nx].index_select(0, y_index)
            if kc == 0 or natural.cb is None:
                continue
            # convert only the window that is kept: chroma rows sy / sv .. ceil((sy + ny) / sv) of the source
            rows, cols = slice(sy // sv, -(-(sy + ny) // sv)), slice(sx // sh, -(-(sx + nx) // sh))
            window = (natural.cb[:, rows, cols], natural.cr[:, rows, cols])
            pending.setdefault((sh, sv, window[0].shape), []).append((i, window, ny, nx, dy, dx))
        for (sh, sv, _), items in pending.items():
            first = items[0][1][0]
            pairs = first.new_empty(len(items), 2, *first.shape)  # (n, 2, b*b, rows, cols), one copy of each window
            for k, (_, (cb, cr), *_) in enumerate(items):
                pairs[k, 0].copy_(cb)
                pairs[k, 1].copy_(cr)
            pairs = resample_chroma(resample_chroma(pairs, sv, fv, axis=-2), sh, fh, axis=-1)
            for pair, (i, _, ny, nx, dy, dx) in zip(pairs, items, strict=True):
                ncy, ncx = chroma_grid(ny, nx, self.factors)
                pair = fit_grid(pair, ncy, ncx).index_select(1, c_index)
                dcy, dcx = dy // fv, dx // fh
                cbcr[i, :, dcy : dcy + ncy, dcx : dcx + ncx] = pair.reshape(2 * kc, ncy, ncx)
        return y, cbcr

    def __call__(self, samples: Sequence[tuple[JpegCoefficients, int]]) -> DCTBatch | tuple[torch.Tensor, torch.Tensor]:
        if len(samples) == 0:
            raise ValueError("cannot collate an empty batch")
        try:
            coeffs = [sample[0] for sample in samples]
            labels = torch.tensor([int(sample[1]) for sample in samples], dtype=torch.int64)
        except (TypeError, IndexError) as error:
            raise TypeError(f"samples must be (JpegCoefficients, int label) pairs: {error}") from error
        if not all(isinstance(c, JpegCoefficients) for c in coeffs):
            raise TypeError(f"samples must hold JpegCoefficients, got {type(coeffs[0]).__name__}")
        coeffs = self._three_planes(coeffs)
        block_sizes = {c.block_size for c in coeffs}
        if len(block_sizes) != 1:
            raise ValueError(f"all samples need the same block size, got {sorted(block_sizes)}")
        b = block_sizes.pop()
        ky, kc = self.y_channels, self.c_channels
        if ky > b * b or kc > b * b:
            raise ValueError(f"y_channels/c_channels must be <= {b * b} for block size {b}, got {ky}, {kc}")
        grids = {tuple(c.y.shape[-2:]) for c in coeffs}
        if self.grid is None and len(grids) != 1:
            raise ValueError(f"samples have different block grids {sorted(grids)}: pass grid=(Hy, Wy) to crop/pad")
        shape = self.batch_shape(*(self.grid if self.grid is not None else grids.pop()))
        stats = self.selected_stats(b * b)
        fits = self._in_layout(coeffs, shape)
        if all(fits) or (any(fits) and shape.hy * shape.wy >= _PER_SAMPLE_BLOCKS):
            x, y, cbcr = self._fast(coeffs, fits, shape, stats)
            if x is None:
                return DCTBatch(y, cbcr, labels)
        else:
            y, cbcr = self._place(coeffs, shape, shared=self.layout == "planes")
            return self.finish(y, cbcr, labels, stats)
        fh, fv = self.factors
        _upsample_into(x[:, ky:], cbcr, fv, fh)
        return x, labels

    def finish(
        self,
        y: torch.Tensor,
        cbcr: torch.Tensor,
        labels: torch.Tensor,
        stats: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> DCTBatch | tuple[torch.Tensor, torch.Tensor]:
        """The batch from its unnormalised planes: ``y (B, Ky, Hy, Wy)`` and ``cbcr (B, 2*Kc, Hc, Wc)``
        (zigzag channels, the target chroma layout), normalised in place with ``stats``
        (:meth:`selected_stats`) and laid out as configured."""
        ky = y.shape[1]
        if self.layout == "planes":
            if stats is not None:  # in place: the same values as (y - mean) / std
                mean, std = stats
                y.sub_(mean[:ky].view(-1, 1, 1)).div_(std[:ky].view(-1, 1, 1))
                cbcr.sub_(mean[ky:].view(-1, 1, 1)).div_(std[ky:].view(-1, 1, 1))
            return DCTBatch(y, cbcr, labels)
        fh, fv = self.factors
        x = new_output(y.shape[0], ky + cbcr.shape[1], *y.shape[-2:])
        if stats is not None:  # per channel, elementwise: the same values as normalising after upsampling
            mean, std = stats
            torch.sub(y, mean[:ky].view(-1, 1, 1), out=x[:, :ky]).div_(std[:ky].view(-1, 1, 1))
            cbcr.sub_(mean[ky:].view(-1, 1, 1)).div_(std[ky:].view(-1, 1, 1))
        else:
            x[:, :ky] = y
        _upsample_into(x[:, ky:], cbcr, fv, fh)
        return x, labels


def new_output(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised output tensor; inside a DataLoader worker in shared memory, as ``default_collate``
    allocates its batches, so that sending the batch to the main process does not copy it again."""
    if torch.utils.data.get_worker_info() is not None and math.prod(shape) > 0:
        try:  # private API (torch.utils.data._utils.collate.collate_tensor_fn); a normal tensor if it changes
            template = torch.empty(0, dtype=dtype)
            storage = template._typed_storage()._new_shared(math.prod(shape), device=template.device)
            return template.new(storage).view(*shape)
        except (AttributeError, RuntimeError, TypeError):
            pass
    return torch.empty(*shape, dtype=dtype)


def _float32(plane: torch.Tensor) -> torch.Tensor:
    return plane if plane.dtype == torch.float32 else plane.float()


def _first(plane: torch.Tensor, channels: int) -> torch.Tensor:
    """The first ``channels`` channels (the plane itself when all: a slice costs more than the small copies)."""
    return plane if plane.shape[0] == channels else plane[:channels]


def _write_luma_sample(
    dest: torch.Tensor,
    source: torch.Tensor,
    ky: int,
    index: torch.Tensor | None,
    stats: tuple[torch.Tensor, torch.Tensor] | None,
) -> None:
    """``dest (ky, Hy, Wy)`` <- the kept channels of ``source`` (``index``, or the first ``ky`` when ``None``),
    normalised while in cache."""
    if index is not None:
        torch.index_select(_float32(source), 0, index, out=dest)
        if stats is not None:
            dest.sub_(stats[0]).div_(stats[1])
    elif stats is not None:
        torch.sub(_first(source, ky), stats[0], out=dest).div_(stats[1])
    else:
        dest.copy_(_first(source, ky))


def _write_luma(
    out: torch.Tensor,
    coeffs: list[JpegCoefficients],
    ky: int,
    index: torch.Tensor | None,
    stats: tuple[torch.Tensor, torch.Tensor] | None,
) -> None:
    """``out (B, ky, Hy, Wy)`` (a view of the output) <- the kept luma channels, normalised.

    ``index``: channels to gather (natural order), ``None`` for the first ``ky`` (zigzag order).
    Large grids are written sample by sample (one pass, normalised while in cache); small ones (CIFAR's
    4x4) are stacked first, as per-sample calls would cost more than the copies.
    """
    hy, wy = out.shape[-2:]
    if hy * wy >= _PER_SAMPLE_BLOCKS:
        for dest, c in zip(out, coeffs, strict=True):
            _write_luma_sample(dest, c.y, ky, index, stats)
        return
    if index is None:
        direct = stats is None and out.is_contiguous()  # planes layout: stack straight into the output
        y = out if direct else torch.empty(out.shape)
        torch.stack([_first(c.y, ky) for c in coeffs], out=y)
        if direct:
            return
    else:
        y = torch.stack([c.y for c in coeffs]).float().index_select(1, index)
    if stats is not None:
        y.sub_(stats[0]).div_(stats[1])
    out.copy_(y)


def _gather_chroma(
    coeffs: list[JpegCoefficients], kc: int, index: torch.Tensor | None, out: torch.Tensor | None
) -> torch.Tensor:
    """``(B, 2*kc, Hc, Wc)``: the kept Cb then Cr channels of each sample (into ``out`` when given).

    ``index``: channels to gather (natural order), ``None`` for the first ``kc`` (zigzag order).
    """
    batch = len(coeffs)
    hc, wc = coeffs[0].cb.shape[-2:]
    if out is None:
        out = torch.empty(batch, 2 * kc, hc, wc)
    planes = out.view(2 * batch, kc, hc, wc)
    if index is None:
        torch.stack([_first(p, kc) for c in coeffs for p in (c.cb, c.cr)], out=planes)
    else:
        stacked = torch.stack([p for c in coeffs for p in (c.cb, c.cr)]).float()
        torch.index_select(stacked, 1, index, out=planes)
    return out


def _upsample_into(out: torch.Tensor, cbcr: torch.Tensor, fv: int, fh: int) -> None:
    """Nearest-neighbour upsampling: luma block ``(r, c)`` of ``out (B, C, Hy, Wy)`` (a view of the
    output) takes chroma block ``(r // fv, c // fh)`` of ``cbcr (B, C, Hc, Wc)``."""
    batch, channels, hc, wc = cbcr.shape
    hy, wy = out.shape[-2:]
    if channels == 0:
        return
    if (hy, wy) != (hc * fv, wc * fh) or fv > 2 or fh > 2:
        flat = cbcr.reshape(batch, channels, hc * wc).index_select(2, _upsample_index(hy, wy, fv, fh))
        out.copy_(flat.view(batch, channels, hy, wy))
        return
    rows = cbcr
    if fv == 2:  # each row twice: copies of whole rows
        rows = cbcr.new_empty(batch, channels, hc, 2, wc)
        rows[:, :, :, 0] = cbcr
        rows[:, :, :, 1] = cbcr
        rows = rows.view(batch, channels, hy, wc)
    if fh == 2:
        # each value twice along a row: a complex number whose real and imaginary parts are both the value
        # is the value repeated in memory, so one contiguous elementwise pass writes the output (copying
        # through a broadcast view with an inner stride-0 axis of 2 is several times slower)
        torch.complex(rows, rows, out=torch.view_as_complex(out.view(batch, channels, hy, wc, 2)))
    else:
        out.copy_(rows)


@lru_cache(maxsize=64)
def _upsample_index(hy: int, wy: int, fv: int, fh: int) -> torch.Tensor:
    """Flat chroma block index of every flat luma block position for chroma factors ``(fv, fh)``."""
    wc = -(-wy // fh)
    return (torch.arange(hy)[:, None] // fv * wc + torch.arange(wy)[None, :] // fh).flatten()
