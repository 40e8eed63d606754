"""The three band-limited products: the kernel's index arithmetic (NumPy emulation) and the torch path
against an independent complex einsum, over tile edges, groups, conjugations and the grid-stride loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from freqnets.kernels import sources
from freqnets.kernels.operands import kernel_arguments, product_operands
from freqnets.layers.spectral_product import reference_product
from tests.conftest import assert_close_relative
from tests.kernels.emulate import emulate_product


def _complex(planar: torch.Tensor) -> np.ndarray:
    p = planar.double().numpy()
    return p[0] + 1j * p[1]


def numpy_product(product: str, first: torch.Tensor, second: torch.Tensor, batch: int, groups: int) -> torch.Tensor:
    """The definition with complex einsum and explicit channel indices, in the flat planar layouts."""
    a, b = _complex(first), _complex(second)
    k = a.shape[0]
    if product == "forward":  # y[f, b, o] = sum_c x[f, b, c] conj(w[f, o, c]) within o's group
        x = a.reshape(k, batch, groups, -1)
        cg = x.shape[-1]
        w = b.reshape(k, groups, -1, cg)
        out = np.einsum("fbgc,fgoc->fbgo", x, w.conj()).reshape(k, -1)
    elif product == "grad_input":  # gx[f, b, c] = sum_o gy[f, b, o] w[f, o, c]
        gy = a.reshape(k, batch, groups, -1)
        w = b.reshape(k, groups, gy.shape[-1], -1)
        out = np.einsum("fbgo,fgoc->fbgc", gy, w).reshape(k, -1)
    else:  # gw[f, o, c] = sum_b conj(gy[f, b, o]) x[f, b, c]
        gy = a.reshape(k, batch, groups, -1)
        x = b.reshape(k, batch, groups, -1)
        out = np.einsum("fbgo,fbgc->fgoc", gy.conj(), x).reshape(k, -1)
    return torch.from_numpy(np.stack([out.real, out.imag]))


# (batch, in_channels, out_channels, groups, kept frequencies): edges of the 32 x 32 x 16 tiles
SHAPES = [
    (3, 6, 4, 2, 5),
    (1, 1, 1, 1, 3),
    (33, 17, 35, 1, 2),  # two row and column tiles, two reduction steps
    (2, 8, 8, 8, 4),  # depthwise
    (5, 12, 6, 3, 3),
]
PRODUCTS = ["forward", "grad_input", "grad_weight"]


def _operands(product, batch, c, o, groups, k, dtype=torch.float64):
    x = torch.randn(2, k, batch * c, dtype=dtype)
    w = torch.randn(2, k, o * (c // groups), dtype=dtype)
    gy = torch.randn(2, k, batch * o, dtype=dtype)
    return {"forward": (x, w), "grad_input": (gy, w), "grad_weight": (gy, x)}[product]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("product", PRODUCTS)
def test_torch_path_products_match_the_definition(product, shape):
    batch, groups = shape[0], shape[3]
    first, second = _operands(product, *shape)
    expected = numpy_product(product, first, second, batch, groups)
    assert_close_relative(reference_product(product, first, second, batch, groups), expected, 1e-12)


@pytest.mark.parametrize("gauss", [False, True], ids=["4mult", "gauss"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("product", PRODUCTS)
def test_emulated_kernel_matches_the_definition(product, shape, gauss):
    batch, groups = shape[0], shape[3]
    first, second = _operands(product, *shape)
    ops = product_operands(product, first, second, batch, groups)
    out = emulate_product(ops, gauss)
    assert not out.isnan().any()  # every output element written exactly by some thread
    assert_close_relative(out, numpy_product(product, first, second, batch, groups), 1e-12)


@pytest.mark.parametrize("max_grid", [1, 7])
def test_grid_stride_loop_covers_every_tile(max_grid):
    first, second = _operands("forward", 40, 20, 36, 2, 3)
    ops = product_operands("forward", first, second, 40, 2)
    args = kernel_arguments(ops, False, max_grid)
    assert args.grid == max_grid and args.num_freqs * args.groups * 2 * 1 > max_grid
    out = emulate_product(ops, False, max_grid=max_grid)
    assert_close_relative(out, numpy_product("forward", first, second, 40, 2), 1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_kernel_arguments_per_dtype_and_views_in_place(dtype):
    first, second = _operands("grad_weight", 3, 6, 4, 2, 5, dtype)
    ops = product_operands("grad_weight", first, second, 3, 2)
    args = kernel_arguments(ops, True)
    assert args.name == f"planar_cgemm_{str(dtype)[6:]}_gauss" and args.name in sources.kernel_names()
    # the operands are views of the spectra: same storage, nothing copied
    assert ops.a.data_ptr() == first.data_ptr() and ops.b.data_ptr() == second.data_ptr()
    assert args.a_strides == (5 * 12, 12, 2, 1, 4) and args.conj_a == 1 and args.conj_b == 0
    # the kernel reads half types exactly: the emulation of rounded inputs matches float64 on them
    out = emulate_product(ops, False)
    expected = numpy_product("grad_weight", first.double(), second.double(), 3, 2)
    assert_close_relative(out, expected, 1e-12)


def test_64bit_offsets_for_sizes_past_2_31():
    # The arguments are computed in Python ints and passed as int64 (meta tensors: no memory).
    k, batch, c = 3, 2**20, 2**10
    big = torch.empty(2, k, batch * c, device="meta")
    small = torch.empty(2, k, 4 * c, device="meta")
    ops = product_operands("forward", big, small, batch, 1)
    args = kernel_arguments(ops, False)
    assert args.a_strides[0] == k * batch * c > 2**31 and args.m == batch
    assert all(isinstance(v, int) for v in args.scalars())


def test_bad_operands():
    x, w = torch.randn(2, 4, 12), torch.randn(2, 4, 6)
    with pytest.raises(ValueError, match="product must be one of"):
        product_operands("backward", x, w, 2, 1)
    with pytest.raises(ValueError, match="batch must be a positive int"):
        product_operands("forward", x, w, 0, 1)
    with pytest.raises(ValueError, match="not a multiple of batch = 5"):
        product_operands("forward", x, w, 5, 1)
    with pytest.raises(ValueError, match="planar spectrum"):
        product_operands("forward", x[0], w, 2, 1)
    with pytest.raises(ValueError, match="different frequency counts"):
        product_operands("forward", x, w[:, :3], 2, 1)
    with pytest.raises(ValueError, match="differ in dtype"):
        product_operands("forward", x, w.double(), 2, 1)
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        product_operands("forward", x.numpy(), w, 2, 1)


def _c_parameters() -> list[tuple[str, str]]:
    """(C type, name) of the kernel entry points' parameters, read from the CUDA source."""
    import re

    source = sources.read_source()
    start = source.index("#define FREQNETS_PLANAR_CGEMM_PARAMS(T)") + len("#define FREQNETS_PLANAR_CGEMM_PARAMS(T)")
    params = source[start : source.index("#define FREQNETS_PLANAR_CGEMM_ARGS")]
    params = re.sub(r"\\\s*\n", " ", params)
    out = []
    for param in params.split(","):
        *type_words, name = param.replace("__restrict__", "").split()
        out.append((" ".join(type_words), name))
    return out


def test_packed_arguments_match_the_kernel_signature():
    from freqnets.kernels.cupy_backend import pack_arguments

    first, second = _operands("grad_weight", 5, 12, 6, 3, 3, torch.float32)
    ops = product_operands("grad_weight", first, second, 5, 3)
    args = kernel_arguments(ops, False)
    packed = pack_arguments(ops, args)
    c_params = _c_parameters()
    assert len(packed) == len(c_params) == 25
    size_of = {"const T*": 8, "T*": 8, "index_t": 8, "int": 4}
    for value, (c_type, name) in zip(packed, c_params, strict=True):
        assert value.nbytes == size_of[c_type], (name, c_type, value.dtype)
        assert (value.dtype.kind == "u") == c_type.endswith("*"), name
    named = {name: int(value) for value, (_, name) in zip(packed, c_params, strict=True)}
    assert named["a"] == ops.a.data_ptr() == first.data_ptr() and named["b"] == second.data_ptr()
    assert named["c"] == ops.out.data_ptr()
    assert (named["a_plane"], named["a_sm"], named["a_sk"]) == ops.a.stride()[0:1] + ops.a.stride()[3:]
    assert (named["m"], named["n"], named["r"], named["groups"]) == (6 // 3, 12 // 3, 5, 3)
    assert (named["conj_a"], named["conj_b"]) == (1, 0)


def test_the_one_group_product_checks_its_operands_as_product_operands():
    # reference_product takes a shortcut without product_operands' views for one group: the same typed errors.
    from freqnets.layers.spectral_product import reference_product

    x, w = torch.randn(2, 4, 12), torch.randn(2, 4, 6)
    cases = [
        (("backward", x, w, 2, 1), ValueError, "product must be one of"),
        (("forward", x, w, 0, 1), ValueError, "batch must be a positive int"),
        (("forward", x, w, 2, True), ValueError, "groups must be a positive int"),
        (("forward", x, w, 5, 1), ValueError, "not a multiple of batch = 5"),
        (("forward", x[0], w, 2, 1), ValueError, "planar spectrum"),
        (("forward", x, w[:, :3], 2, 1), ValueError, "different frequency counts"),
        (("forward", x, w.double(), 2, 1), ValueError, "differ in dtype"),
        (("grad_input", x, w[:, :, :5], 2, 1), ValueError, "not a multiple of out_channels"),
    ]
    for args, error, message in cases:
        for function in (product_operands, reference_product):
            with pytest.raises(error, match=message):
                function(*args)
