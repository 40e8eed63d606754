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

import torch

from . import _backends
from ._markers import MAX_SCANS, JpegHeader
from .budget import DEFAULT_MAX_BYTES, WORK_ALLOWANCE, WORK_PER_BYTE, read_bytes_needed, scan_data_short
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

    MAX_HEADERS = 64  # distinct file headers remembered (most data sets have a few)

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
        # headers seen (their bytes, for the C reader to find each file's), and plans per (header, batch shape)
        self._known: list[JpegHeader] = []
        self._prefixes: list[bytes] = []
        self._plans: dict[tuple[int, BatchShape], tuple | None] = {}

    def __repr__(self) -> str:
        threads = f", threads={self.threads}" if self.threads != 1 else ""
        exif = ", exif_orientation=True" if self.options.exif_orientation else ""
        return f"DCTReadCollate({self.collate!r}, strict={self.strict}, max_pixels={self.max_pixels}{threads}{exif})"

    def _plan(self, header: JpegHeader, prefix: bytes, shape: BatchShape) -> tuple | None:
        """The C reader's plan for files with ``header`` in a batch of ``shape`` (see ``_jpegc.read_planned``):
        where the file's planes (zigzag, chroma in the target layout, the collate's ``grid`` window) go in one
        sample of the flat batch buffers ``y (B*Ky*Hy*Wy)``, ``cbcr (B*2Kc*Hc*Wc)`` (where :class:`DCTCollate`
        places them) and the budget figures of :func:`~.budget.check_read`; ``None`` when read_dct must read
        such files (4-component or arithmetic-coded files, files an EXIF tag turns under ``exif_orientation``,
        layouts that need upsampling, over ``max_bytes``, a window larger than the batch). ``prefix``: the
        header's bytes (the EXIF segment lies in them, so files with one header have one orientation); the C
        extension's parse of them for its direct path ends the plan."""
        frame = header.frame
        if len(frame.components) not in (1, 3) or frame.arithmetic:  # CMYK/YCCK: the collate converts or refuses
            return None
        if self.options.exif_orientation and exif_orientation(prefix, header.tables.exif)[0] != 1:
            return None  # read_dct turns it (the compiled batch reader does not)
        if header.subsampling == "gray":
            down = (1, 1)
        else:
            down = downsample_factors(header.sampling_factors, self.collate.factors)
            if down is None:
                return None
        grid = self.collate.grid
        windows = None if grid is None else crop_windows(header.frame, grid)[0]
        grids = [(c.height_in_blocks, c.width_in_blocks) for c in frame.components] if windows is None else [
            w[2:] for w in windows
        ]  # fmt: skip
        rows, cols = grids[0]
        ky, kc, hy, wy, hc, wc = shape
        if rows > hy or cols > wy:
            return None
        max_bytes = self.options.max_bytes
        if max_bytes is not None and read_bytes_needed(header, "libjpeg", windows) > max_bytes:
            return None
        fh, fv = self.collate.factors
        _, dy, _ = centre_offsets(rows, hy, fv)  # where DCTCollate places a smaller window
        _, dx, _ = centre_offsets(cols, wy, fh)
        outs = [(0, dy * wy + dx, ky, hy * wy, wy, rows, cols)]
        if len(grids) == 3:
            chroma = (dy // fv) * wc + dx // fh
            c_rows, c_cols = -(-grids[1][0] // down[1]), -(-grids[1][1] // down[0])
            cr = chroma + kc * hc * wc  # Cr's channels follow Cb's in the chroma batch
            outs += [(1, chroma, kc, hc * wc, wc, c_rows, c_cols), (1, cr, kc, hc * wc, wc, c_rows, c_cols)]
        short = scan_data_short(b"", header)  # (bits needed, 0) when the first scan has a lower bound
        return (
            _backends.libjpeg_memory(header.coefficients),
            windows,
            *down,
            outs,
            header.first_scan.data_start,
            0 if short is None else short[0],
            header.coefficients // 64,
            _backends.direct_header(prefix, header),  # None: libjpeg reads these files
        )

    def _headers(self, payloads: list[bytes]) -> list[int]:
        """The index in ``self._known`` of each file's header, parsing (and adding) the ones not seen before."""
        if len(self._known) >= self.MAX_HEADERS:  # forgotten between batches (a batch's indices stay valid)
            self._known, self._prefixes, self._plans = [], [], {}
        indices = _backends._jpegc.match_headers(payloads, self._prefixes)
        for i, k in enumerate(indices):
            if k >= 0:
                continue
            try:
                header = HEADER_CACHE.parse(payloads[i], self.max_pixels)
            except JpegError as error:
                raise type(error)(f"sample {i} of the batch: {error}") from error
            self._known.append(header)
            self._prefixes.append(payloads[i][: header.first_scan.data_start])
            indices[i] = len(self._known) - 1
            # later files of the batch with the same header bytes
            rest = _backends._jpegc.match_headers(payloads[i + 1 :], self._prefixes[-1:])
            for j, found in enumerate(rest, start=i + 1):
                if found == 0 and indices[j] < 0:
                    indices[j] = indices[i]
        return indices

    def _read_fast(self, payloads: list[bytes], indices: list[int], shape: BatchShape, y, cbcr, finish) -> list[int]:
        """Read every file it can straight into the batch (on ``threads`` threads), laid out as ``finish`` says
        (``_jpegc.read_planned``); the indices of the others."""
        plans, positions = [], {}
        for k in set(indices):
            key = (k, shape)
            if key not in self._plans:
                self._plans[key] = self._plan(self._known[k], self._prefixes[k], shape)
            if self._plans[key] is not None:
                positions[k] = len(plans)
                # (the direct path switched off: libjpeg reads every file, see _backends.DIRECT)
                plans.append(self._plans[key] if _backends.DIRECT else (*self._plans[key][:-1], None))
        ky, kc, hy, wy, hc, wc = shape
        status = _backends._jpegc.read_planned(
            payloads, [positions.get(k, -1) for k in indices], plans, y, cbcr, ky * hy * wy, 2 * kc * hc * wc,
            self.threads, MAX_SCANS, True, _backends._kernel_bytes(), WORK_ALLOWANCE["libjpeg"],
            WORK_PER_BYTE["libjpeg"], finish,
        )  # fmt: skip
        # anything unusual (an error, a corrupt-data warning, a limit, an unexpected grid) goes to read_dct,
        # which reports it
        return [i for i, s in enumerate(status) if s]

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
        indices = self._headers(payloads)
        if grid is None:
            frames = [self._known[k].frame for k in set(indices)]
            grids = {(-(-f.height // 8), -(-f.width // 8)) for f in frames}
            if len(grids) != 1:
                raise ValueError(f"files have different block grids {sorted(grids)}: pass grid=(Hy, Wy) to crop/pad")
            hy, wy = grids.pop()
        else:
            hy, wy = grid
        shape = self.collate.batch_shape(hy, wy)
        ky, kc, hy, wy, hc, wc = shape
        stats = self.collate.selected_stats(64)
        stacked = self.collate.layout != "planes"
        # the C reader lays out each sample as finish() does, with float32 arithmetic: float32 statistics only
        in_c = stats is None or all(t.dtype == torch.float32 for t in stats)
        # the planes layout returns these (in shared memory inside a DataLoader worker); the stacked
        # layout copies them into its output, so they stay in ordinary memory. The C reader zeroes each slot.
        new = torch.empty if stacked else new_output
        y, cbcr = new(len(samples), ky, hy, wy), new(len(samples), 2 * kc, hc, wc)
        x = new_output(len(samples), ky + 2 * kc, hy, wy) if stacked and in_c else None
        finish = None
        if in_c:
            mean, std = (None, None) if stats is None else (t.contiguous().numpy() for t in stats)
            fh, fv = self.collate.factors
            finish = (None if x is None else x.numpy().reshape(-1), ky, kc, hy, wy, hc, wc, fv, fh, mean, std)
        rest = self._read_fast(payloads, indices, shape, y.numpy().reshape(-1), cbcr.numpy().reshape(-1), finish)
        if rest:
            coeffs = []
            for i in rest:
                try:
                    coeffs.append((read_bytes(payloads[i], self.options), 0))
                except JpegError as error:  # the collate does not know file names: say which sample
                    raise type(error)(f"sample {i} of the batch: {error}") from error
            # the same planes from read_dct's results (not normalised: finish() does that)
            fallback = DCTCollate("planes", ky, kc, self.chroma, grid=(hy, wy), cmyk=self.collate.cmyk)
            rest_y, rest_c, _ = fallback(coeffs)
            index = torch.tensor(rest)
            if in_c:  # these samples laid out as the C reader laid out the others
                part = self.collate.finish(rest_y, rest_c, labels[index], stats)
                if stacked:
                    x.index_copy_(0, index, part[0])
                else:  # normalised in place
                    rest_y, rest_c = part.y, part.cbcr
            if not stacked or not in_c:
                y.index_copy_(0, index, rest_y)
                cbcr.index_copy_(0, index, rest_c)
        if not in_c:
            return self.collate.finish(y, cbcr, labels, stats)
        return (x, labels) if stacked else DCTBatch(y, cbcr, labels)
