"""Build the optional compiled JPEG coefficient reader (metadata lives in pyproject.toml).

``freqnets.jpeg._jpegc`` links libjpeg(-turbo) (IJG/BSD licences); it is optional: where the
libjpeg headers are missing the build skips it and ``freqnets.jpeg.read_dct`` uses its pure
Python decoder instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "freqnets.jpeg._jpegc",
            sources=["freqnets/jpeg/_jpegc.c"],
            libraries=["jpeg"],
            # -O3: 5-15 % less time per read than -O2 (docs/benchmarks.md, "-O3 for the C reader")
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
