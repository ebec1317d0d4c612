"""The documentation builds without a broken link or reference, and every Python example in it runs.

Examples run in a folder whose ``saved_models/demo`` is the session's small trained model, so
they must use ids that model has (users "1" to "300", movies "1" to "200"). An example that
trains a model of its own runs in the slow tier; one that downloads ml-latest-small finds it in
its cache already: the first 40 users of the real data set (and the movies they rated), in the
published layout.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfrs_pipeline.errors import CappedWarning, NumericIdsWarning, UnknownMoviesWarning

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _python_examples():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"```python\n(.*?)```", text, flags=re.DOTALL):
            line = text[: match.start()].count("\n") + 1
            marks = [pytest.mark.slow] if re.search(r"\b(run_training|train)\(", match.group(1)) else []
            yield pytest.param(match.group(1), id=f"{page.relative_to(ROOT)}:{line}", marks=marks)


@pytest.fixture(scope="module")
def demo_folder(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reader")
    shutil.copytree(trained.path, folder / "saved_models" / "demo" / "1")
    return folder


def _sample_of_real_data(folder: Path) -> None:
    """``folder/ml-latest-small``: the real data set's first 40 users and their movies, same layout."""
    if (folder / "ml-latest-small" / "ratings.csv").is_file():
        return
    import pandas as pd
    from conftest import SHARED_SMALL

    if not (SHARED_SMALL / "ratings.csv").is_file():
        pytest.skip(f"the example reads MovieLens and the real data is absent: {SHARED_SMALL}")
    ratings = pd.read_csv(SHARED_SMALL / "ratings.csv")
    ratings = ratings[ratings["userId"] <= 40]
    movies = pd.read_csv(SHARED_SMALL / "movies.csv")
    (folder / "ml-latest-small").mkdir(exist_ok=True)
    ratings.to_csv(folder / "ml-latest-small" / "ratings.csv", index=False)
    movies[movies["movieId"].isin(ratings["movieId"])].to_csv(folder / "ml-latest-small" / "movies.csv", index=False)


def _run_as_a_notebook(code: str) -> list[tuple[int, object]]:
    """Runs ``code`` a statement at a time and returns the value of each line that is an expression, as a
    notebook cell shows it (with its line in the example)."""
    scope, shown = {"__name__": "__example__"}, []
    for statement in ast.parse(code).body:
        is_print = isinstance(statement, ast.Expr) and ast.unparse(statement.value).startswith("print(")
        if isinstance(statement, ast.Expr) and not is_print:
            value = eval(compile(ast.Expression(statement.value), "<example>", "eval"), scope)
            shown.append((statement.lineno, value))
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), "<example>", "exec"), scope)
    return shown


def _empty(value) -> bool:
    if isinstance(value, (pd.DataFrame, pd.Series, np.ndarray, list, dict, str)):
        return len(value) == 0
    if isinstance(value, tuple):
        return any(_empty(item) for item in value)
    return False


@pytest.mark.parametrize("code", list(_python_examples()))
def test_every_python_example_runs_and_shows_what_it_says(code, demo_folder, monkeypatch, capsys):
    monkeypatch.chdir(demo_folder)
    if "ml-latest-small" in code:
        _sample_of_real_data(demo_folder)  # what `tfrs-pipeline data download ml-latest-small` leaves in the cache
        monkeypatch.setenv("TFRS_PIPELINE_CACHE", str(demo_folder))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shown = _run_as_a_notebook(code)
    # A reader copying the example sees no warning of ours, and every line that shows something shows something.
    ours = [w for w in caught if issubclass(w.category, (CappedWarning, NumericIdsWarning, UnknownMoviesWarning, FutureWarning))]
    assert not ours, f"the example warns: {ours[0].message}"
    assert not [line for line, value in shown if value is None or _empty(value)], "a line of the example shows nothing"
    printed = capsys.readouterr().out
    assert printed.count("\n") >= sum(line.strip().startswith("print(") for line in code.splitlines())


@pytest.mark.slow
def test_the_documentation_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip('mkdocs is not installed: pip install -e ".[docs]"')
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
