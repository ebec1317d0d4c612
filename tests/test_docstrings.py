"""Every docstring example of the package runs, against the session's small trained model where it needs one.

Examples that name ``model_path`` get the shared tiny model's folder (``saved_models/NAME``
in the docs), ``model`` that model loaded (``Recommender.load(model_path)``, as the class
docstring shows), and ``tmp_folder`` an empty temporary folder. An example marked
``# doctest: +SKIP`` needs what a test cannot have (a GPU, a cluster, a server left running).
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tfrs_pipeline"


#: Modules whose examples train a model of their own.
TRAINS = {"tfrs_pipeline.pipeline"}


def _module_names() -> list:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("tfrs_pipeline", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names.append(pytest.param(name, marks=pytest.mark.slow) if name in TRAINS else name)
    return names


@pytest.fixture(scope="module")
def recommender(trained):
    from tfrs_pipeline.recommender import Recommender

    return Recommender.load(trained.path.parent)


def _examples(module_name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(module_name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, module_name)
    return [test for test in tests if any(not example.options.get(doctest.SKIP) for example in test.examples)]


@pytest.mark.parametrize("module_name", _module_names())
def test_docstring_examples_run(module_name, trained, recommender, tmp_path):
    tests = _examples(module_name)
    if not tests:
        pytest.skip(f"{module_name} has no runnable example")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in tests:
        test.globs.update(model_path=trained.path.parent, model=recommender, tmp_folder=tmp_path)
        report = []
        result = runner.run(test, out=report.append)
        if result.failed:
            failures.append("".join(report))
    assert not failures, "\n".join(failures)
