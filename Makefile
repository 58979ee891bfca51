# Everyday targets. Run `make dev` once; every other target uses the virtual environment it makes.
# What it is not: CI. `.ci/run` is the CI script (fresh clone, README commands, wheel and sdist).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The sanitizer runtimes are found with gcc's -print-file-name.
SAN_CC ?= gcc
export HYPOTHESIS_PROFILE ?= ci

# AddressSanitizer + UndefinedBehaviorSanitizer for the extension only (KBOOK_SANITIZE=1 in
# setup.py). CPython itself is not instrumented, so the runtimes are preloaded; PYTHONMALLOC=malloc
# puts the engine's PyMem blocks under ASan's malloc rather than pymalloc's arenas; leak detection
# is off (the interpreter keeps its allocations at exit by design). .ci/sanitize does the same.
SAN_ENV := PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1 \
	LD_PRELOAD="$$($(SAN_CC) -print-file-name=libasan.so) $$($(SAN_CC) -print-file-name=libubsan.so)"

.PHONY: help dev build test test-all lint format debug sanitize bench bench-smoke wheel-test clean

help:
	@echo "make dev          virtual environment in $(VENV), kbook installed editable with [dev]"
	@echo "make build        rebuild the extension in place (optimised)"
	@echo "make test         unit and property tests (HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE))"
	@echo "make test-all     the whole suite, integration tests included"
	@echo "make lint         ruff, mypy (package and stubs), cython-lint, codespell"
	@echo "make format       ruff format (not applied to the tree yet: see CONTRIBUTING.md)"
	@echo "make debug        KBOOK_DEBUG=1 build (bounds checks, -O0 -g), unit tests, then rebuild"
	@echo "make sanitize     ASan+UBSan build of the extension, unit and property tests, then rebuild"
	@echo "make bench        the benchmark suite with timings"
	@echo "make bench-smoke  the benchmarks' correctness assertions only, no timing"
	@echo "make wheel-test   wheel and sdist into fresh environments, unit tests outside the tree"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

dev: $(PY)
	$(PY) -m pip install -e '.[dev]'

# setup.py re-cythonizes whenever the build toggles differ from the last build's; removing the
# generated C as well makes a plain rebuild start from the sources whatever happened before.
build:
	rm -f kbook/_core.c kbook/_listener.c
	$(PY) setup.py -q build_ext --inplace --force

test:
	$(PY) -m pytest tests/unit tests/property -q

test-all:
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict tests/typing
	$(VENV)/bin/cython-lint kbook/_core.pyx kbook/_core.pxd kbook/_listener.pyx kbook/_engine/*.pxi
	$(VENV)/bin/codespell

format:
	$(VENV)/bin/ruff format .

# The debug and sanitize builds replace the in-place extension while their tests run and put the
# optimised one back afterwards, whether the tests passed or not (the exit status is kept).
# Note: `make -n` runs these recipes anyway (they call $(MAKE)); read them instead.
debug:
	KBOOK_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force
	status=0; $(PY) -m pytest tests/unit -q -x || status=$$?; \
	$(MAKE) --no-print-directory build; exit $$status

# --capture=sys: a sanitizer report is written to descriptor 2 just before the abort, and pytest's
# descriptor-level capture would lose it with the process.
sanitize:
	KBOOK_SANITIZE=1 CC=$(SAN_CC) $(PY) setup.py -q build_ext --inplace
	status=0; $(SAN_ENV) $(PY) -m pytest tests/unit tests/property -q -x -p no:cacheprovider \
		--capture=sys || status=$$?; \
	$(MAKE) --no-print-directory build; exit $$status

bench:
	$(PY) -m pytest benchmarks

bench-smoke:
	$(PY) -m pytest benchmarks --benchmark-disable -q

wheel-test:
	KBOOK_WHEEL_TEST_PYTHON=$(PY) bash .ci/wheel-test

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	rm -f kbook/*.so kbook/*.c kbook/*.html
