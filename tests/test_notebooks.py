"""The evaluation notebook runs top to bottom against a freshly trained model; notebooks ship without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _with_parameters(notebook, **values):
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for name, value in values.items():
        lines = [f"{name} = {value!r}" if line.startswith(f"{name} =") else line for line in lines]
    cell.source = "\n".join(lines)
    return notebook


@pytest.mark.slow
def test_evaluate_top_k_notebook_runs_against_a_trained_model(trained, tmp_path):
    notebook = _with_parameters(nbformat.read(NOTEBOOKS / "evaluate_top_k.ipynb", as_version=4),
                                MODEL_PATH=str(trained.path.parent), K=5)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # accuracy against K, and the training curves
    text = json.dumps([o.get("data", {}).get("text/plain", "") for o in outputs])
    assert "top_100" in text and "most popular" in text and "recommended" in text


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name
        assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells), path.name
