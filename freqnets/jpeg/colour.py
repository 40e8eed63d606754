"""4-component (CMYK, YCCK) coefficients to three YCbCr planes, in the DCT domain.

:func:`~freqnets.jpeg.read_dct` returns the four planes of a CMYK or YCCK file as the file stores them
(``colour_model`` and ``adobe_inverted`` say how to read them). Networks and
:class:`~freqnets.jpeg.DCTCollate` take YCbCr; :func:`cmyk_to_ycbcr` converts, with the colour rule of
Pillow's ``Image.convert("RGB")`` on the decoded CMYK image: with ink amounts ``c, m, y, k`` in 0..255
(``adobe_inverted`` files store ``255 - ink``), ``R = (255 - c) (255 - k) / 255`` (``G``, ``B`` alike),
then JFIF's RGB -> YCbCr. Every plane holds the orthonormal DCT of ``sample - 128`` (JPEG's level shift).

What is exact in the DCT domain and what is not:

* **Without black** (``black="ignore"``): the image of the C, M, Y inks alone. Each step is affine per
  pixel, so it maps DCT coefficients exactly (to float rounding): inverting ``255 - x`` negates every
  coefficient and takes 8 from the DC (the DC is 8 x the block mean); JFIF's RGB -> YCbCr weights mix
  planes block by block. For CMYK the C, M, Y planes must share one block grid (same sampling factors,
  as every CMYK encoder writes them), else :class:`~freqnets.jpeg.JpegUnsupportedError`. YCCK's Y, Cb,
  Cr planes *are* the YCbCr of the inks (``255 - visible``), so they are only inverted and keep
  their own sampling (4:2:0 YCCK stays 4:2:0). Not exact where the decoder clamps: libjpeg clamps
  YCCK's YCbCr -> CMY to 0..255 in pixels, which the linear map cannot do.
* **With black** (``black="block"``, the default): black multiplies the colour, ``(255 - k) / 255``
  per pixel; a product of two images is not a linear map of their coefficients. It is applied per
  block with the block's mean ``k`` (the K plane's DC, averaged over the K blocks a block covers):
  exact where ``k`` is constant over each 8x8 block of the plane it scales (flat black, no black),
  an approximation at black edges inside a block, where the texture of the K plane is dropped.

The result has ``colour_model="ycbcr"``, no ``k`` plane, and the file's first three quantisation tables
(the converted coefficients are no longer on their lattice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .chroma import subsampling_name
from .coefficients import JpegCoefficients, JpegUnsupportedError

__all__ = ["BLACK_MODES", "cmyk_to_ycbcr"]

BLACK_MODES = ("block", "ignore")
# JFIF (ITU-T T.871) RGB -> YCbCr weights on level-shifted samples: rows Y, Cb, Cr; columns R, G, B.
_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.299 / 1.772, -0.587 / 1.772, 0.5),
    (0.5, -0.587 / 1.402, -0.114 / 1.402),
)


def _inverted(plane: torch.Tensor) -> torch.Tensor:
    """The coefficients of ``255 - x`` from those of ``x`` (natural order): ``255 - x - 128 = -(x - 128) - 1``."""
    out = -plane
    out[0] -= 8.0  # a constant -1 over the 8x8 block
    return out


def _block_factor(k: torch.Tensor, k_factors: tuple[int, int], factors: tuple[int, int], grid: tuple[int, int],
                  inverted: bool) -> torch.Tensor:  # fmt: skip
    """Per block of a plane with sampling ``factors`` and block ``grid``: ``(255 - k_ink) / 255`` for the mean
    black ink over the block, from the K plane's DC (natural order, sampling ``k_factors``)."""
    stored = k[0] / 8.0 + 128.0  # block means of the stored K samples
    factor = (stored if inverted else 255.0 - stored) / 255.0
    (kh, kv), (h, v) = k_factors, factors
    # K blocks per plane block on each axis: average when K is finer, repeat when it is coarser
    for axis, (fine, coarse) in ((0, (kv, v)), (1, (kh, h))):
        if fine > coarse:
            if fine % coarse:
                raise JpegUnsupportedError(f"K sampling {k_factors} is not a multiple of the plane's {factors}")
            step = fine // coarse
            pad = -factor.shape[axis] % step
            padded = F.pad(factor[None, None], (0, pad, 0, 0) if axis else (0, 0, 0, pad), mode="replicate")[0, 0]
            kernel = (step, 1) if axis == 0 else (1, step)
            factor = F.avg_pool2d(padded[None, None], kernel)[0, 0]
        elif coarse > fine:
            if coarse % fine:
                raise JpegUnsupportedError(f"K sampling {k_factors} is not a divisor of the plane's {factors}")
            factor = factor.repeat_interleave(coarse // fine, dim=axis)
    rows, cols = grid
    if factor.shape[0] < rows or factor.shape[1] < cols:  # edge blocks the K grid does not reach
        factor = F.pad(factor[None, None], (0, max(0, cols - factor.shape[1]), 0, max(0, rows - factor.shape[0])),
                       mode="replicate")[0, 0]  # fmt: skip
    return factor[:rows, :cols]


def cmyk_to_ycbcr(coeffs: JpegCoefficients, black: str = "block") -> JpegCoefficients:
    """Three YCbCr planes ``(64, by, bx)`` from the coefficients of a CMYK or YCCK file (see the module docstring).

    Args:
        coeffs: :func:`~freqnets.jpeg.read_dct`'s result for a 4-component file (either channel order; the
            result keeps it). Greyscale and YCbCr coefficients are returned unchanged.
        black: ``"block"``: scale each block by its mean black (exact where black is flat over the block);
            ``"ignore"``: drop the K plane (exact: the image of the C, M, Y inks alone).

    Returns:
        :class:`JpegCoefficients` with ``colour_model="ycbcr"``: ``y``, ``cb``, ``cr`` at the sampling of the
        file's first three components (all equal for CMYK), ``k=None``.

    Raises:
        ValueError: ``black`` not in :data:`BLACK_MODES`.
        JpegUnsupportedError: CMYK whose C, M, Y planes have different sampling factors, or a K plane whose
            sampling factors are not a multiple or a divisor of the others'.
    """
    if black not in BLACK_MODES:
        raise ValueError(f"black must be one of {BLACK_MODES}, got {black!r}")
    if coeffs.colour_model not in ("cmyk", "ycck"):
        return coeffs
    natural = coeffs.to_order("natural")
    planes = [p.to(torch.float32) for p in natural.planes()]
    factors = natural.sampling_factors
    if natural.colour_model == "ycck":
        # the Y, Cb, Cr of the inks (libjpeg: C = 255 - R(YCC), stored inverted): visible = 255 - them
        y = _inverted(planes[0])
        ycbcr = [y, -planes[1], -planes[2]]  # (255 - Cb) - 128 = -(Cb - 128): no DC term for chroma
    else:
        if not factors[0] == factors[1] == factors[2]:
            raise JpegUnsupportedError(f"CMYK with C, M, Y sampled differently {factors[:3]} cannot be mixed per block")
        # visible R, G, B (without black) = 255 - ink; inverted files store 255 - ink already
        rgb = planes[:3] if natural.adobe_inverted else [_inverted(p) for p in planes[:3]]
        ycbcr = [sum(w * p for w, p in zip(row, rgb, strict=True)) for row in _RGB_TO_YCBCR]
    if black == "block":
        scaled = []
        for index, plane in enumerate(ycbcr):
            f = _block_factor(planes[3], factors[3], factors[index], tuple(plane.shape[-2:]), natural.adobe_inverted)
            out = plane * f
            if index == 0:  # Y - 128 = f (Y0 - 128) + 128 (f - 1): the DC takes 8 x 128 (f - 1)
                out[0] += 1024.0 * (f - 1.0)
            scaled.append(out)
        ycbcr = scaled
    sampling = tuple(factors[:3])
    result = JpegCoefficients(
        y=ycbcr[0],
        cb=ycbcr[1],
        cr=ycbcr[2],
        quant_tables=natural.quant_tables[:3],
        size=natural.size,
        subsampling=subsampling_name(sampling),
        sampling_factors=sampling,
        order="natural",
        block_size=natural.block_size,
        backend=natural.backend,
        warnings=natural.warnings,
        stored_subsampling=natural.stored_subsampling,
    )
    return result.to_order(coeffs.order)
