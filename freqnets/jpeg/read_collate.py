"""Read and batch in one step: a ``collate_fn`` over JPEG bytes that writes each file into the batch.

:class:`DCTCollate` batches :class:`JpegCoefficients`; for small images (CIFAR-10's 32x32) building
one result object with its tensors per file costs more than decoding it. :class:`DCTReadCollate`
takes ``(JPEG bytes, label)`` samples instead (e.g. ``JpegFolderDataset(root, raw=True)``), reads
every file with the compiled libjpeg backend (chroma converted while reading, channels in zigzag
order, only the ``grid`` window) and copies its planes straight into the batch, then normalises and
lays out the batch as the wrapped :class:`DCTCollate` does. The batches are identical to
``collate([(read_dct(data, crop=grid, chroma=chroma, order="zigzag"), label), ...])`` (tested).

Files the fast path does not take (the libjpeg backend not built, chroma layouts that need
upsampling, damaged files, ...) are read by :func:`~freqnets.jpeg.read_dct` with the same options,
which raises its typed errors (``strict``) or recovers what it can.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import _backends
from .budget import DEFAULT_MAX_BYTES, check_read
from .chroma import centre_offsets, crop_windows, downsample_factors
from .coefficients import JpegError
from .collate import BatchShape, DCTBatch, DCTCollate, new_output
from .exif import exif_orientation
from .reader import DEFAULT_MAX_PIXELS, HEADER_CACHE, ReadOptions, buffer_bytes, read_bytes

__all__ = ["DCTReadCollate"]


class DCTReadCollate:
    """``collate_fn`` for ``(JPEG bytes, label)`` samples: read straight into the batch of ``collate``.

    The bytes may also be 1-D ``uint8`` NumPy arrays or torch tensors (``torchvision.io.read_file``).

    Args:
        collate: the :class:`DCTCollate` whose batches to produce (layout, channels, chroma layout,
            normalisation, ``grid``; with ``grid=None`` all files must have one luma block grid).
        strict, max_pixels, max_bytes, exif_orientation: as for :func:`~freqnets.jpeg.read_dct` (per file;
            files whose EXIF tag turns them are read by ``read_dct``, the others straight into the batch).
        threads: the files of a batch are decoded on this many threads inside the C extension (GIL
            released, each written straight into its slot of the batch), so one process can use every
            core without DataLoader workers; keep 1 inside workers (one core each). Results do not depend
            on it.

    Example:
        >>> loader = DataLoader(JpegFolderDataset(root, raw=True), batch_size=128,
        ...                     collate_fn=DCTReadCollate(DCTCollate(layout="stacked")))  # doctest: +SKIP
    """

    def __init__(
        self,
        collate: DCTCollate,
        *,
        strict: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        threads: int = 1,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        exif_orientation: bool = False,
    ) -> None:
        if not isinstance(collate, DCTCollate):
            raise TypeError(f"collate must be a DCTCollate, got {type(collate).__name__}")
        if collate.y_channels > 64 or collate.c_channels > 64:
            raise ValueError("JPEG files have 64 channels per plane: y_channels and c_channels must be <= 64")
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
            raise ValueError(f"threads must be an int in 1..256, got {threads!r}")
        self.collate, self.strict, self.max_pixels, self.threads = collate, strict, max_pixels, threads
        self.chroma = collate.chroma  # read_dct takes the same spellings
        # what read_dct does with the files the fast path leaves (checked here, before any batch)
        self.options = ReadOptions(
            strict, max_pixels, "auto", "zigzag", collate.grid, collate.chroma, max_bytes, exif_orientation
        )

    def __repr__(self) -> str:
        threads = f", threads={self.threads}" if self.threads != 1 else ""
        exif = ", exif_orientation=True" if self.options.exif_orientation else ""
        return f"DCTReadCollate({self.collate!r}, strict={self.strict}, max_pixels={self.max_pixels}{threads}{exif})"

    def _job(self, data: bytes, header, index: int, shape: BatchShape, y: np.ndarray, cbcr: np.ndarray):
        """Where the file's planes (zigzag, chroma in the target layout, the collate's ``grid`` window) go in
        sample ``index`` of the flat batch buffers ``y (B*Ky*Hy*Wy)``, ``cbcr (B*2Kc*Hc*Wc)`` (where
        :class:`DCTCollate` places them): ``(downsample, (data, header, windows, outs), (rows, cols))`` for
        :func:`~._backends.read_batch_libjpeg`, or ``None`` when read_dct must handle the file."""
        if len(header.frame.components) == 4:  # CMYK/YCCK: read_dct, then the collate converts or refuses
            return None
        if self.options.exif_orientation and exif_orientation(data, header.tables.exif)[0] != 1:
            return None  # read_dct turns it (the compiled batch reader does not)
        if header.subsampling == "gray":
            down = None
        else:
            down = downsample_factors(header.sampling_factors, self.collate.factors)
            if down is None:
                return None
        grid = self.collate.grid
        windows = None if grid is None else crop_windows(header, grid)[0]
        luma = header.frame.components[0]
        rows, cols = (luma.height_in_blocks, luma.width_in_blocks) if windows is None else windows[0][2:]
        ky, kc, hy, wy, hc, wc = shape
        if rows > hy or cols > wy:
            return None
        try:  # over its memory or work budget, or too short: read_bytes raises the typed error
            check_read(data, header, "libjpeg", self.strict, self.options.max_bytes, windows)
        except JpegError:
            return None
        fh, fv = self.collate.factors
        _, dy, _ = centre_offsets(rows, hy, fv)  # where DCTCollate places a smaller window
        _, dx, _ = centre_offsets(cols, wy, fh)
        outs = [(y, index * ky * hy * wy + dy * wy + dx, ky, hy * wy, wy)]
        if header.subsampling != "gray":
            chroma = index * 2 * kc * hc * wc + (dy // fv) * wc + dx // fh
            outs += [(cbcr, chroma, kc, hc * wc, wc), (cbcr, chroma + kc * hc * wc, kc, hc * wc, wc)]
        return down, (data, header, windows, outs), (rows, cols)

    def _read_fast(self, payloads, headers, shape: BatchShape, y: np.ndarray, cbcr: np.ndarray) -> list[int]:
        """Read every file it can straight into the batch (on ``threads`` threads); the indices of the others."""
        rest, groups = [], {}
        for i, (data, header) in enumerate(zip(payloads, headers, strict=True)):
            job = self._job(data, header, i, shape, y, cbcr)
            if job is None:
                rest.append(i)
            else:
                groups.setdefault(job[0], []).append((i, job[1], job[2]))
        for down, group in groups.items():
            # strict: a file too short for its frame is refused before allocating (read_dct reports it)
            results = _backends.read_batch_libjpeg([job for _, job, _ in group], self.threads, True, down, strict=True)
            # anything unusual (an error, a corrupt-data warning, an unexpected grid) goes to read_dct,
            # which reports it
            for (i, _, want), (error, dims, warnings) in zip(group, results, strict=True):
                if error is not None or warnings or tuple(dims[0]) != want:
                    rest.append(i)
        return sorted(rest)

    def __call__(self, samples: Sequence[tuple[bytes, int]]) -> DCTBatch | tuple[torch.Tensor, torch.Tensor]:
        if len(samples) == 0:
            raise ValueError("cannot collate an empty batch")
        try:
            payloads = [sample[0] for sample in samples]
            labels = torch.tensor([int(sample[1]) for sample in samples], dtype=torch.int64)
        except (TypeError, IndexError) as error:
            raise TypeError(f"samples must be (JPEG bytes, int label) pairs: {error}") from error
        try:
            payloads = [buffer_bytes(p) for p in payloads]
        except (TypeError, ValueError) as error:
            raise type(error)(f"samples must hold the JPEG files' bytes: {error}") from error
        grid = self.collate.grid
        if not _backends.has_libjpeg():
            coeffs = [read_bytes(p, self.options) for p in payloads]
            return self.collate(list(zip(coeffs, labels.tolist(), strict=True)))
        headers = []
        for i, data in enumerate(payloads):
            try:
                headers.append(HEADER_CACHE.parse(data, self.max_pixels))
            except JpegError as error:
                raise type(error)(f"sample {i} of the batch: {error}") from error
        if grid is None:
            grids = {(-(-h.frame.height // 8), -(-h.frame.width // 8)) for h in headers}
            if len(grids) != 1:
                raise ValueError(f"files have different block grids {sorted(grids)}: pass grid=(Hy, Wy) to crop/pad")
            hy, wy = grids.pop()
        else:
            hy, wy = grid
        shape = self.collate.batch_shape(hy, wy)
        ky, kc, hy, wy, hc, wc = shape
        # the planes layout returns these (in shared memory inside a DataLoader worker); the stacked
        # layout copies them into its output, so they stay in ordinary memory
        new = new_output if self.collate.layout == "planes" else torch.empty
        y = new(len(samples), ky, hy, wy).zero_()
        cbcr = new(len(samples), 2 * kc, hc, wc).zero_()
        y_flat, c_flat = y.numpy().reshape(-1), cbcr.numpy().reshape(-1)
        rest = self._read_fast(payloads, headers, shape, y_flat, c_flat)
        if rest:
            coeffs = []
            for i in rest:
                try:
                    coeffs.append((read_bytes(payloads[i], self.options), 0))
                except JpegError as error:  # the collate does not know file names: say which sample
                    raise type(error)(f"sample {i} of the batch: {error}") from error
            # the same planes from read_dct's results (not normalised: finish() does that for all)
            fallback = DCTCollate("planes", ky, kc, self.chroma, grid=(hy, wy), cmyk=self.collate.cmyk)
            rest_y, rest_c, _ = fallback(coeffs)
            index = torch.tensor(rest)
            y.index_copy_(0, index, rest_y)
            cbcr.index_copy_(0, index, rest_c)
        return self.collate.finish(y, cbcr, labels, self.collate.selected_stats(64))
