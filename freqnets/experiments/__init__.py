"""Experiments behind the command line: the transform demonstration, later the ablation and studies.

This is the only part of the package that may import tqdm, matplotlib or foolbox,
and it is not imported by ``import freqnets``.
"""
