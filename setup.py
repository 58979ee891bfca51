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
* ``KBOOK_NO_PGO=1``   -- a plain ``-O3`` build of the engine, without the profile-guided pass

Profile-guided build: with GCC 10 or later, ``kbook._core`` is first built instrumented
(``-fprofile-generate``), ``pgo_train.py`` feeds that build generated Kraken book traffic, and the
engine is compiled again with the recorded profile (``-fprofile-use``), which lays out and inlines
the decoder and the books for the paths that traffic takes; code the training never ran is compiled
as without a profile (``-fprofile-partial-training``). It costs about 35 s of build time and makes
the engine about 5-15 % faster than the plain build (benchmarks/README.md). Debug, trace and
sanitizer builds, other compilers, and a training run that fails all give the plain build, the last
with a warning.

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
    "KBOOK_NO_PGO": "a plain -O3 engine, without the profile-guided pass",
}
ON = {name: os.environ.get(name) == "1" for name in TOGGLES}
DEBUG, ANNOTATE, TRACE = ON["KBOOK_DEBUG"], ON["KBOOK_ANNOTATE"], ON["KBOOK_TRACE"]
SANITIZE = ON["KBOOK_SANITIZE"]
PGO = not (ON["KBOOK_NO_PGO"] or DEBUG or TRACE or SANITIZE)
HERE = os.path.dirname(os.path.abspath(__file__))

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

# GCC's -fprofile-generate/-fprofile-use (clang's profiles need another tool chain)
GCC_PROBE = r"""
#if !defined(__GNUC__) || defined(__clang__)
#error "not gcc"
#endif
int main(void) { return 0; }
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
        try:
            self._probe(PROBE)
        except Exception as exc:
            sys.exit(
                "kbook: this C compiler cannot build the native engine: it needs "
                "unsigned __int128 (gcc or clang on a 64-bit target), a little-endian "
                f"target and clock_gettime(CLOCK_MONOTONIC) ({exc})"
            )
        if PGO and self._is_gcc():
            with tempfile.TemporaryDirectory(prefix="kbook-pgo-") as profiles:
                self._build_core_with_profile(profiles)
                super().build_extensions()  # the engine again, with the profile (if any)
        else:
            super().build_extensions()

    def _probe(self, source: str, flags: list[str] | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "kbook_probe.c")
            with open(src, "w") as f:
                f.write(source)
            self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)

    def _is_gcc(self) -> bool:
        """GCC 10 or later: the first with -fprofile-partial-training (see below)."""
        try:
            self._probe(GCC_PROBE, ["-Werror", "-fprofile-partial-training"])
        except Exception:
            return False
        return True

    def _build_core_with_profile(self, profiles: str) -> None:
        """Build ``kbook._core`` instrumented, train it, and leave its flags set for the final
        build: ``-fprofile-use`` when the training run succeeded, unchanged otherwise."""
        import subprocess

        core = next(ext for ext in self.extensions if ext.name == "kbook._core")
        compile_args, link_args = list(core.extra_compile_args), list(core.extra_link_args)
        self.force = True  # the objects of both passes share a path: always recompile
        core.extra_compile_args = [
            *compile_args,
            f"-fprofile-generate={profiles}",
            "-fprofile-update=single",
        ]
        core.extra_link_args = [*link_args, f"-fprofile-generate={profiles}"]
        trained = False
        try:
            self.build_extension(core)
            script = os.path.join(HERE, "pgo_train.py")
            run = subprocess.run(
                [sys.executable, script, self.get_ext_fullpath(core.name)],
                cwd=HERE,
                # pip's isolated build environment is on PYTHONPATH too: keep it
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(
                        [HERE, *filter(None, [os.environ.get("PYTHONPATH")])]
                    ),
                },
                capture_output=True,
                text=True,
                timeout=600,
            )
            trained = run.returncode == 0 and any(
                name.endswith(".gcda") for name in os.listdir(profiles)
            )
            if trained:
                print(run.stdout.strip())
            else:
                print(
                    "kbook: warning: the profile-guided training run failed; building the "
                    f"engine without it\n{run.stdout}{run.stderr}",
                    file=sys.stderr,
                )
        except Exception as exc:  # a failed training never fails the install
            print(f"kbook: warning: no profile-guided build ({exc})", file=sys.stderr)
        # the final build recompiles the engine either way (force stays on): the instrumented
        # library must not survive as the installed one
        core.extra_link_args = link_args
        core.extra_compile_args = compile_args
        if trained:
            # partial training: code the run never reached (the checked apply() entry points,
            # diagnostics, error paths) is compiled as without a profile, not shrunk for size
            core.extra_compile_args = [
                *compile_args,
                f"-fprofile-use={profiles}",
                "-fprofile-partial-training",
                "-fprofile-correction",
                "-Wno-missing-profile",
            ]
            core.define_macros = [*core.define_macros, ("KBOOK_PROFILE_GUIDED", "1")]


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
