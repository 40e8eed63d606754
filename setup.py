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
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
