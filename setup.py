"""Build the native engine.

Build toggles come from the environment (a changed toggle forces re-cythonization):

* ``KBOOK_DEBUG=1``    -- bounds and wraparound checks on, ``-O0 -g``
* ``KBOOK_ANNOTATE=1`` -- write Cython's HTML annotation next to the sources
* ``KBOOK_TRACE=1``    -- line tracing for coverage and profilers
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("KBOOK_DEBUG") == "1"
ANNOTATE = os.environ.get("KBOOK_ANNOTATE") == "1"
TRACE = os.environ.get("KBOOK_TRACE") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "cdivision": True,
    "embedsignature": True,
    "initializedcheck": DEBUG,
    "linetrace": TRACE,
}
macros = [("CYTHON_TRACE_NOGIL", "1")] if TRACE else []
cflags = ["-O0", "-g"] if DEBUG else ["-O3"]

extensions = [
    Extension(
        "kbook._core",
        ["kbook/_core.pyx"],
        define_macros=macros,
        extra_compile_args=cflags,
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        force=DEBUG or ANNOTATE or TRACE,
    ),
)
