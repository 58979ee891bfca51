"""Build the native engine (``kbook._core``) and the picows listener (``kbook._listener``).

Build toggles come from the environment; the table below lists them. The toggles a build used
are recorded in ``build/kbook-toggles.json``, and a build whose toggles differ from the last
one re-cythonizes everything (Cython alone would keep C files generated with other
directives, e.g. a debug build's bounds checks after ``KBOOK_DEBUG`` is switched off).

* ``KBOOK_DEBUG=1``    -- bounds and wraparound checks on, ``-O0 -g``
* ``KBOOK_ANNOTATE=1`` -- write Cython's HTML annotation next to the sources
* ``KBOOK_TRACE=1``    -- line tracing for coverage and profilers
* ``KBOOK_SANITIZE=1`` -- AddressSanitizer + UndefinedBehaviorSanitizer, ``-O1 -g`` (run with the
  runtimes preloaded: see CONTRIBUTING.md)

The engine needs a C compiler with 128-bit integers (gcc or clang on a 64-bit target), a
little-endian target and the POSIX monotonic clock; a platform without them is refused before
compiling, with the reason.
"""

import json
import os
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# name -> what it does; a new toggle is one line here plus its effect below
TOGGLES = {
    "KBOOK_DEBUG": "bounds and wraparound checks, -O0 -g",
    "KBOOK_ANNOTATE": "Cython's HTML annotation next to the sources",
    "KBOOK_TRACE": "line tracing for coverage and profilers",
    "KBOOK_SANITIZE": "AddressSanitizer + UndefinedBehaviorSanitizer, -O1 -g",
}
ON = {name: os.environ.get(name) == "1" for name in TOGGLES}
DEBUG, ANNOTATE, TRACE = ON["KBOOK_DEBUG"], ON["KBOOK_ANNOTATE"], ON["KBOOK_TRACE"]
SANITIZE = ON["KBOOK_SANITIZE"]

STAMP = os.path.join("build", "kbook-toggles.json")


def toggles_changed() -> bool:
    """Whether the toggles differ from the last build's (recorded for the next one)."""
    try:
        with open(STAMP) as f:
            last = json.load(f)
    except (OSError, ValueError):
        last = None
    os.makedirs(os.path.dirname(STAMP), exist_ok=True)
    with open(STAMP, "w") as f:
        json.dump(ON, f, sort_keys=True)
    return last != ON


PROBE = r"""
#include <stdint.h>
#include <time.h>
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the scanner reads 8 bytes at a time as a little-endian word"
#endif
int main(void) {
    unsigned __int128 v = (unsigned __int128)UINT64_MAX * UINT64_MAX;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int)(v >> 127) + (int)(ts.tv_nsec < 0);
}
"""


class checked_build_ext(build_ext):
    """build_ext that first checks the compiler can build the engine at all."""

    def run(self) -> None:
        if sys.platform == "win32":
            sys.exit(
                "kbook: the native engine needs a POSIX platform (clock_gettime) and a "
                "compiler with unsigned __int128; Windows/MSVC is not supported"
            )
        super().run()

    def build_extensions(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "kbook_probe.c")
            with open(src, "w") as f:
                f.write(PROBE)
            try:
                self.compiler.compile([src], output_dir=tmp)
            except Exception as exc:
                sys.exit(
                    "kbook: this C compiler cannot build the native engine: it needs "
                    "unsigned __int128 (gcc or clang on a 64-bit target), a little-endian "
                    f"target and clock_gettime(CLOCK_MONOTONIC) ({exc})"
                )
        super().build_extensions()


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
    Extension(
        "kbook._listener",
        ["kbook/_listener.pyx"],
        define_macros=macros,
        extra_compile_args=cflags,
    ),
]

if SANITIZE:
    # -fno-wrapv undoes the interpreter's -fwrapv, under which signed overflow is defined and so
    # never reported; recovery off makes every UBSan report abort, as ASan's do.
    sanitize = [
        "-fsanitize=address,undefined",
        "-fno-omit-frame-pointer",
        "-fno-sanitize-recover=undefined",
        "-fno-wrapv",
    ]
    for ext in extensions:
        ext.extra_compile_args += ["-O1", "-g", *sanitize]
        ext.extra_link_args += sanitize

setup(
    cmdclass={"build_ext": checked_build_ext},
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        annotate=ANNOTATE,
        emit_linenums=SANITIZE,  # reports name the .pyx/.pxi line, not the generated C's
        force=toggles_changed() or ANNOTATE,
    ),
)
