"""The robustness study: perturbation channels as defenses, adaptive attacks, band-limited models.

* :mod:`.attacks`: foolbox 3 PGD, C&W and black-box attacks; adaptive PGD with BPDA and EOT.
* :mod:`.instability`: the input-gradient norm ``M1`` and top input-Hessian eigenvalue ``M2``.
* :mod:`.study`: the stages of ``freqnets robustness``, with checkpoint and resume.
* :mod:`.report`: results.json, CSV, markdown and plots.
"""

from .study import Study, StudyConfig

__all__ = ["Study", "StudyConfig"]
