"""Network families, one per file, registered with timm when this package is imported.

No family is registered yet; each file added here must be imported below so
that ``import freqnets`` registers its models.
"""

__all__: list[str] = []
