"""Builds the one C extension, decnet.bus._fastmatch, from Cython.

A build that cannot compile fails with a message naming the opt-out: a user must
never get the slow path without knowing (aiohttp and msgpack learned this).
``DECNET_BUS_NO_EXTENSIONS=1`` installs the pure-Python twin on purpose.
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = os.environ.get("DECNET_BUS_NO_EXTENSIONS", "").strip().lower() not in ("", "0", "false", "no", "off")

FAILED = """
********************************************************************************
decnet-bus: could not build the compiled hot path decnet.bus._fastmatch:
    {error}
It needs Cython >= 3, a C compiler and the Python headers
(Debian/Ubuntu: apt-get install gcc python3-dev).
To install the slower pure-Python implementation on purpose, set
DECNET_BUS_NO_EXTENSIONS=1 and install again.
********************************************************************************
"""


def fail(error):
    raise SystemExit(FAILED.format(error=error))


class BuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as error:  # no compiler, no headers: setuptools raises a zoo of types
            fail(error)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as error:
            fail(error)


def extensions():
    if NO_EXTENSIONS:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as error:
        fail(error)
    try:
        # cythonize follows the .pyx's include lines: a changed .pxi rebuilds it.
        return cythonize(
            [Extension("decnet.bus._fastmatch", ["decnet/bus/_fastmatch.pyx"])],
            compiler_directives={"language_level": 3},
        )
    except Exception as error:
        fail(error)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
