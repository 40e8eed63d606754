"""A float64 NumPy emulation of ``planar_cgemm_*`` (spectral_product.cu) that follows its index arithmetic.

Without a GPU the CUDA code cannot run, but its indexing can be checked: this
module walks the same grid-stride loop over blocks, decomposes each block index
into ``(f, g, tile_m, tile_n)``, loads the shared tiles slot by slot with the same
``(tid, e) -> (kk, mm)`` mapping and bounds checks, conjugates on load, runs the
same per-thread micro-tile (rows ``ty + i * THREADS_M``, columns
``tx + j * THREADS_N``) with the 4-multiplication or Gauss products, and stores
through the same 64-bit offsets into flat storage. The threads of a block are
vectorised with NumPy; everything else is a plain loop, so keep sizes small.
"""

from __future__ import annotations

import numpy as np
import torch

from freqnets.kernels import sources
from freqnets.kernels.operands import KernelArguments, ProductOperands, kernel_arguments

THREADS_M = sources.TILE_M // sources.MICRO_M
THREADS_N = sources.TILE_N // sources.MICRO_N


def _flat_storage(t: torch.Tensor) -> np.ndarray:
    """The whole storage under ``t`` as a flat float64 array (element units)."""
    size = t.untyped_storage().nbytes() // t.element_size()
    return torch.as_strided(t, (size,), (1,), 0).detach().cpu().double().numpy().copy()


def emulate_kernel(args: KernelArguments, a_mem: np.ndarray, b_mem: np.ndarray, c_mem: np.ndarray) -> None:
    """Run the kernel's arithmetic with ``args`` on flat float64 memories; writes ``c_mem`` in place."""
    tm, tn, tk = sources.TILE_M, sources.TILE_N, sources.TILE_K
    threads = args.block
    gauss = args.name.endswith("_gauss")
    a_plane, a_sf, a_sg, a_sm, a_sk = args.a_strides
    b_plane, b_sf, b_sg, b_sk, b_sn = args.b_strides
    c_plane, c_sf, c_sg, c_sm, c_sn = args.c_strides
    m, n, r = args.m, args.n, args.r
    sign_a = -1.0 if args.conj_a else 1.0
    sign_b = -1.0 if args.conj_b else 1.0
    tiles_m, tiles_n = (m + tm - 1) // tm, (n + tn - 1) // tn
    total_blocks = args.num_freqs * args.groups * tiles_m * tiles_n
    tid = np.arange(threads, dtype=np.int64)
    tx, ty = tid % THREADS_N, tid // THREADS_N

    for block in range(0, total_blocks) if args.grid >= total_blocks else _grid_stride(args.grid, total_blocks):
        tile_n = block % tiles_n
        rest = block // tiles_n
        tile_m = rest % tiles_m
        rest //= tiles_m
        g = rest % args.groups
        f = rest // args.groups
        row0, col0 = tile_m * tm, tile_n * tn
        a_fg = args.a_offset + f * a_sf + g * a_sg
        b_fg = args.b_offset + f * b_sf + g * b_sg
        acc = np.zeros((3, sources.MICRO_M, sources.MICRO_N, threads))
        for k0 in range(0, r, tk):
            a_re, a_im = _load_tile(
                a_mem, a_fg, a_plane, sign_a, a_sk, a_sm, k0, r, row0, m, tm, a_sk == 1, tid, threads
            )
            b_re, b_im = _load_tile(
                b_mem, b_fg, b_plane, sign_b, b_sk, b_sn, k0, r, col0, n, tn, b_sn != 1, tid, threads
            )
            for kk in range(tk):
                for i in range(sources.MICRO_M):
                    ar, ai = a_re[kk, ty + i * THREADS_M], a_im[kk, ty + i * THREADS_M]
                    for j in range(sources.MICRO_N):
                        br, bi = b_re[kk, tx + j * THREADS_N], b_im[kk, tx + j * THREADS_N]
                        if gauss:
                            acc[0, i, j] += (ar + ai) * br
                            acc[1, i, j] += ar * (bi - br)
                            acc[2, i, j] += ai * (br + bi)
                        else:
                            acc[0, i, j] += ar * br - ai * bi
                            acc[1, i, j] += ar * bi + ai * br
        c_fg = args.c_offset + f * c_sf + g * c_sg
        for i in range(sources.MICRO_M):
            for j in range(sources.MICRO_N):
                row, col = row0 + ty + i * THREADS_M, col0 + tx + j * THREADS_N
                inside = (row < m) & (col < n)
                offset = (c_fg + row * c_sm + col * c_sn)[inside]
                re = acc[0, i, j] - acc[2, i, j] if gauss else acc[0, i, j]
                im = acc[0, i, j] + acc[1, i, j] if gauss else acc[1, i, j]
                c_mem[offset] = re[inside]
                c_mem[offset + c_plane] = im[inside]


def _load_tile(
    mem: np.ndarray,
    base: int,
    plane: int,
    sign: float,
    k_stride: int,
    x_stride: int,
    k0: int,
    r: int,
    x0: int,
    limit: int,
    size: int,
    k_fastest: bool,
    tid: np.ndarray,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One shared tile ``(TILE_K, size + SMEM_PAD)`` (real, imaginary) as the kernel loads it, slot by slot.

    Element ``e = tid + slot * threads`` goes to ``(kk, x) = (e % TILE_K, e // TILE_K)`` when the reduction
    index is the contiguous one (``k_fastest``), else ``(e // size, e % size)``; it reads
    ``mem[base + (x0 + x) * x_stride + (k0 + kk) * k_stride]`` (imaginary part ``plane`` further, times
    ``sign``), zero outside ``x0 + x < limit`` and ``k0 + kk < r``. The A operand is ``x = row``
    (``size = TILE_M``), B is ``x = column`` (``size = TILE_N``).
    """
    tk = sources.TILE_K
    re, im = np.zeros((tk, size + sources.SMEM_PAD)), np.zeros((tk, size + sources.SMEM_PAD))
    for slot in range(-(-size * tk // threads)):
        e = tid + slot * threads
        e = e[e < size * tk]
        kk, x = (e % tk, e // tk) if k_fastest else (e // size, e % size)
        inside = (x0 + x < limit) & (k0 + kk < r)
        offset = base + (x0 + x) * x_stride + (k0 + kk) * k_stride
        re[kk, x] = np.where(inside, mem[np.where(inside, offset, 0)], 0.0)
        im[kk, x] = np.where(inside, sign * mem[np.where(inside, offset + plane, 0)], 0.0)
    return re, im


def _grid_stride(grid: int, total_blocks: int):
    """Block indices in the order the kernel's grid-stride loop visits them (block by block)."""
    for start in range(grid):
        yield from range(start, total_blocks, grid)


def emulate_product(ops: ProductOperands, gauss: bool = False, max_grid: int | None = None) -> torch.Tensor:
    """``ops.out`` computed by the emulated kernel in float64 (returned as a new float64 tensor).

    Args:
        max_grid: cap on the launched blocks, to exercise the kernel's grid-stride loop.
    """
    args = kernel_arguments(ops, gauss) if max_grid is None else kernel_arguments(ops, gauss, max_grid)
    c_mem = np.full(ops.out.numel(), np.nan)
    emulate_kernel(args, _flat_storage(ops.a), _flat_storage(ops.b), c_mem)
    return torch.from_numpy(c_mem).view(ops.out.shape)
