"""The ``dct`` input representation: JPEG DCT coefficients fed to a DCT-input model."""

from __future__ import annotations


def make_dct_input(config, env):
    """The DCT-input pipeline (JPEG coefficients read by ``freqnets.jpeg``)."""
    raise ValueError("input='dct' is not available yet: freqnets.jpeg's reader and datasets have not landed")
