"""SVD layer factorisation of ResNet-18's 3x3 filter banks (64..512 channels, rate 0.5): the full
``torch.linalg.svd`` (before) against ``_top_singular_triplets`` (the Gram eigendecomposition), alternating in one
process; seconds per bank and total.

    taskset -c 1 env PYTHONPATH=. python benchmarks/bench_svd_factorise.py [threads]
"""

import sys
import time

import torch

from freqnets.layers import svd_conv

torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
banks = [torch.randn(c, c, 3, 3) for c in (64, 128, 256, 512)]


def old(w, rank):
    m = svd_conv._filter_matrices(w.double(), 1)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return u[..., :rank], s[:, :rank], vh[:, :rank]


def new(w, rank):
    return svd_conv._top_singular_triplets(svd_conv._filter_matrices(w.double(), 1), rank)


for rnd in range(3):
    for name, fn in (("svd", old), ("eigh", new)):
        row = []
        for w in banks:
            rank = round(3 * w.shape[0] * 0.5)
            t = time.perf_counter()
            fn(w, rank)
            row.append(time.perf_counter() - t)
        print(rnd, name, " ".join(f"{x:.3f}" for x in row), f"total {sum(row):.2f}s", flush=True)
