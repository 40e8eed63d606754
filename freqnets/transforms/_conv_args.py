"""``F.conv2d``'s ``padding`` argument as explicit amounts, for the convolutions computed outside ``F.conv2d``."""

from __future__ import annotations


def int_pair(value, name: str, minimum: int = 0) -> tuple[int, int]:
    """An int or a pair of ints ``>= minimum`` (as ``F.conv2d`` takes ``stride``, ``padding``, ``dilation``).

    Raises:
        ValueError: naming ``name`` and what it got.
    """
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair)
    ):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv2d_padding(
    padding: int | tuple[int, int] | str,
    kernel_size: tuple[int, int],
    dilation: int | tuple[int, int] = 1,
    stride: int | tuple[int, int] = 1,
) -> tuple[int, int, int, int]:
    """Zero padding ``(left, right, top, bottom)`` (``F.pad``'s order) meant by ``F.conv2d``'s ``padding``.

    Args:
        padding: an int, a pair ``(rows, cols)`` (padded on both sides), ``"valid"`` (none) or
            ``"same"`` (output as large as the input; stride 1 only). As in ``F.conv2d``, ``"same"``
            with an even dilated span pads one more sample after than before.
        kernel_size, dilation, stride: of the convolution, pairs ``(rows, cols)`` or ints.

    Raises:
        ValueError: an unknown string, a negative or non-int amount, or ``"same"`` with a stride.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if int_pair(stride, "stride", 1) != (1, 1):
            raise ValueError(f"padding='same' needs stride 1 (as F.conv2d), got stride={stride!r}")
        amounts = []
        spans = zip(int_pair(tuple(kernel_size), "kernel_size", 1), int_pair(dilation, "dilation", 1), strict=True)
        for k, d in spans:
            total = d * (k - 1)
            amounts += [total // 2, total - total // 2]
        (top, bottom, left, right) = amounts
        return left, right, top, bottom
    rows, cols = int_pair(padding, "padding")
    return cols, cols, rows, rows
