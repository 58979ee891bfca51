"""Build the native engine.

Build toggles come from the environment (a changed toggle forces re-cythonization):

* ``KBOOK_DEBUG=1``    -- bounds and wraparound checks on, ``-O0 -g``
* ``KBOOK_ANNOTATE=1`` -- write Cython's HTML annotation next to the sources
* ``KBOOK_TRACE=1``    -- line tracing for coverage and profilers
* ``KBOOK_SANITIZE=1`` -- AddressSanitizer + UndefinedBehaviorSanitizer, ``-O1 -g`` (run with the
  runtimes preloaded: see CONTRIBUTING.md)
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("KBOOK_DEBUG") == "1"
ANNOTATE = os.environ.get("KBOOK_ANNOTATE") == "1"
TRACE = os.environ.get("KBOOK_TRACE") == "1"
SANITIZE = os.environ.get("KBOOK_SANITIZE") == "1"

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

if SANITIZE:
    # -fno-wrapv undoes the interpreter's -fwrapv, under which signed overflow is defined and so
    # never reported; recovery off makes every UBSan report abort, as ASan's do.
    sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                "-fno-sanitize-recover=undefined", "-fno-wrapv"]
    for ext in extensions:
        ext.extra_compile_args += ["-O1", "-g", *sanitize]
        ext.extra_link_args += sanitize

# Flags alone do not make setuptools recompile, nor directives Cython regenerate: the toggles of
# the last build are stamped, and any change forces both (the regenerated C is newer than the .so).
toggles = f"debug={DEBUG} annotate={ANNOTATE} trace={TRACE} sanitize={SANITIZE}\n"
stamp = Path(__file__).resolve().parent / "build" / "kbook-toggles"
changed = not stamp.is_file() or stamp.read_text() != toggles

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        emit_linenums=SANITIZE,  # reports name the .pyx/.pxi line, not the generated C's
        force=changed,
    ),
)
stamp.parent.mkdir(exist_ok=True)
stamp.write_text(toggles)
