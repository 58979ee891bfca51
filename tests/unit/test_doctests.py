"""Every docstring example of the public modules runs, so a doc that stops being true fails."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kbook._core", "kbook.client", "kbook.messages", "kbook.auth", "kbook.trading",
           "kbook.private", "kbook.reference", "kbook.cli", "kbook.sim.faults",
           "kbook.testing.books", "kbook.testing.capture", "kbook.testing.corrupt",
           "kbook.testing.faults", "kbook.testing.level3", "kbook.testing.messages",
           "kbook.testing.simthread", "kbook.testing.strategies", "kbook.testing.wire"]


@pytest.mark.parametrize("name", MODULES)
def test_module_docstring_examples_pass(name: str) -> None:
    module = importlib.import_module(name)
    # Cython keeps docstrings but not line numbers: collect them from every public object
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = finder.find(module, name)
    for obj_name in dir(module):
        obj = getattr(module, obj_name)
        if name == "kbook._core" and isinstance(obj, type) and obj.__module__ == name:
            tests.extend(finder.find(obj, f"{name}.{obj_name}", module=module))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    seen = set()
    for test in tests:
        if test.name in seen or not test.examples:
            continue
        seen.add(test.name)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
