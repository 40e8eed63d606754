"""The result type of JPEG DCT reading, shared by the readers, the encoder, augmentations and collate.

Coefficient layout (one contract for every backend):

* ``y``: ``(64, by, bx)`` float32, the **dequantised** DCT coefficients
  (quantised value x quantisation step) of the luma plane, ``by x bx`` blocks of
  8x8 pixels. Channel ``k`` is frequency ``(v, u) = divmod(k, 8)`` in **natural
  row-major order** (``v`` vertical, ``u`` horizontal) unless ``order ==
  "zigzag"``, where channel ``k`` is the ``k``-th coefficient of JPEG's zigzag
  scan (:func:`freqnets.transforms.zigzag_indices`). JPEG's forward DCT of an
  8x8 block is exactly the orthonormal 2D DCT-II of the level-shifted samples
  ``x - 128`` (``freqnets.transforms.block_dct2(x - 128)``), so the DC
  coefficient is 8 x the block's mean shifted level.
* ``cb``, ``cr``: the same at the chroma planes' own resolution (``None`` for
  greyscale). Nothing is upsampled or re-encoded.
* ``k``: the fourth plane of a 4-component file, else ``None``; given exactly when ``four_colour`` is
  (the constructor raises ``ValueError`` otherwise).
* ``colour_model``: ``"grayscale"``, ``"ycbcr"``, ``"cmyk"`` or ``"ycck"`` (the file's colour model, as
  libjpeg decides it from the Adobe APP14 marker; a property: the field ``four_colour`` holds it for
  4-component files). For ``"cmyk"``, ``y``, ``cb``, ``cr``, ``k`` hold the file's C, M, Y, K components
  in that order; for ``"ycck"``, Y, Cb, Cr and K. ``adobe_inverted``: the file has an Adobe marker, so
  its C, M, Y, K samples are stored inverted (255 = no ink), as Photoshop writes them and Pillow reads
  them (``"CMYK;I"``). :func:`freqnets.jpeg.cmyk_to_ycbcr` converts 4-component coefficients to three
  YCbCr planes; the collate refuses them otherwise.
* ``quant_tables``: ``(n_components, 64)`` int32 in natural order, the table
  of each component (``y``, then ``cb``, ``cr``, ``k``).
* ``size``: ``(height, width)`` in pixels; ``subsampling``: ``"4:4:4"``,
  ``"4:2:2"``, ``"4:2:0"``, ``"4:4:0"``, ``"4:1:1"``, ``"gray"`` or
  ``"other"``; ``sampling_factors``: ``((h, v), ...)`` per component.
* ``stored_subsampling``: ``None`` when the planes are as the file stores them; the file's
  subsampling when ``read_dct(..., chroma=...)`` converted the chroma planes to another layout
  in the DCT domain (then ``subsampling`` and ``sampling_factors`` describe the returned planes,
  while ``quant_tables`` stay the file's).
* The block grid of a plane covers its component's pixel area,
  ``ceil(ceil(W * h_i / h_max) / 8)`` blocks across (and the same down): the
  MCU padding blocks past it are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch


class JpegError(ValueError):
    """A JPEG file that cannot be read; the message names the reason (typed, a ``ValueError``)."""


class JpegTooLargeError(JpegError):
    """The header claims more pixels than ``max_pixels`` allows; raised before any decoding."""


class JpegUnsupportedError(JpegError):
    """A valid JPEG that freqnets does not read: 12-bit precision, lossless or hierarchical coding, RGB colour, ..."""


class JpegTruncatedError(JpegError):
    """The entropy-coded data ends early or is corrupt (raised under ``strict=True``)."""


# the colour models of 4-component files (libjpeg's JCS_CMYK and JCS_YCCK), the values of ``four_colour``
FOUR_COLOUR_MODELS = ("cmyk", "ycck")


@dataclass(frozen=True)
class JpegCoefficients:
    """DCT coefficients of one image, per plane at its own resolution (see the module docstring)."""

    y: torch.Tensor
    cb: torch.Tensor | None
    cr: torch.Tensor | None
    quant_tables: torch.Tensor
    size: tuple[int, int]
    subsampling: str
    sampling_factors: tuple[tuple[int, int], ...]
    order: str = "natural"
    block_size: int = 8
    backend: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)
    stored_subsampling: str | None = None
    k: torch.Tensor | None = None
    four_colour: str | None = None  # "cmyk" or "ycck" for 4-component files (see colour_model)
    adobe_inverted: bool = False

    def __post_init__(self) -> None:
        # A K plane and its colour model come together, else cmyk_to_ycbcr would index a missing plane or
        # drop K silently. One identity test on the common (three-plane) path: constructors are per read.
        if self.k is None and self.four_colour is None:
            return
        if self.four_colour not in FOUR_COLOUR_MODELS:
            raise ValueError(f"four_colour must be one of {FOUR_COLOUR_MODELS} or None, got {self.four_colour!r}")
        if self.k is None:
            raise ValueError(f"four_colour={self.four_colour!r} needs the fourth plane k, got k=None")
        if self.cb is None or self.cr is None:
            raise ValueError("a k plane needs cb and cr planes (four-component files have four planes)")

    @property
    def colour_model(self) -> str:
        """``"grayscale"``, ``"ycbcr"``, ``"cmyk"`` or ``"ycck"`` (a property: nothing to build per read)."""
        if self.four_colour is not None:
            return self.four_colour
        return "grayscale" if self.cb is None else "ycbcr"

    @property
    def is_gray(self) -> bool:
        return self.cb is None

    def planes(self) -> tuple[torch.Tensor, ...]:
        """``(y,)`` for greyscale, ``(y, cb, cr)`` for YCbCr, ``(y, cb, cr, k)`` for 4-component files."""
        if self.cb is None:
            return (self.y,)
        return (self.y, self.cb, self.cr) if self.k is None else (self.y, self.cb, self.cr, self.k)

    def with_planes(self, planes: Sequence[torch.Tensor], **changes) -> JpegCoefficients:
        """A copy with the planes replaced (as many as :meth:`planes` returns) and ``changes`` applied."""
        if len(planes) != len(self.planes()):
            raise ValueError(f"expected {len(self.planes())} planes, got {len(planes)}")
        names = ("y", "cb", "cr", "k")[: len(planes)]
        return replace(self, **dict(zip(names, planes, strict=True)), **changes)

    def to_order(self, order: str) -> JpegCoefficients:
        """The same coefficients with channels in ``"natural"`` or ``"zigzag"`` order."""
        from ..transforms import zigzag_indices

        if order not in ("natural", "zigzag"):
            raise ValueError(f"order must be 'natural' or 'zigzag', got {order!r}")
        if order == self.order:
            return self
        zigzag = zigzag_indices(self.block_size)  # natural index of the k-th zigzag coefficient
        index = zigzag if order == "zigzag" else torch.argsort(zigzag)

        def reorder(plane: torch.Tensor | None) -> torch.Tensor | None:
            return None if plane is None else plane.index_select(0, index.to(plane.device))

        return replace(
            self, y=reorder(self.y), cb=reorder(self.cb), cr=reorder(self.cr), k=reorder(self.k), order=order
        )
