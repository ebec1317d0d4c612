"""The package reads as the pipeline: every import points down it, and each job has one home."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tfrs_pipeline"

#: Layers from the bottom up; a module may import its own layer and the ones below.
LAYERS = [
    {"errors", "config", "data", "metrics"},
    {"split"},
    {"model_dir", "features", "neighbours"},
    {"layers", "index", "training_loop", "client"},
    {"towers", "ranking", "retrieval", "baselines", "list_ranking"},
    {"serving"},
    {"export", "evaluation"},
    {"train", "report", "serve"},
    {"demo", "benchmarks"},
    {"cli"},
]
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        if relative.parts == ("__init__",):
            continue
        yield relative.parts[0], path


def _imports(path: Path) -> set[str]:
    """First-level package modules imported anywhere in the file (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "tfrs_pipeline" and len(parts) > 1 and parts[1] in LAYER_OF:
                found.add(parts[1])
    return found


def test_every_module_has_a_layer():
    assert {top for top, _ in _modules()} <= set(LAYER_OF), "a new module needs a place in LAYERS"


@pytest.mark.parametrize("top,path", list(_modules()), ids=lambda value: str(value))
def test_imports_point_down_the_pipeline(top, path):
    upward = {name for name in _imports(path) if LAYER_OF[name] > LAYER_OF[top]}
    assert not upward, f"{path.relative_to(PACKAGE)} imports {sorted(upward)}, which sit above it"


def _calls(path: Path, dotted: str) -> bool:
    return any(isinstance(node, ast.Attribute) and ast.unparse(node) == dotted
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))


def test_only_export_writes_saved_models():
    writers = {str(path.relative_to(PACKAGE)) for _, path in _modules() if _calls(path, "tf.saved_model.save")}
    assert writers == {"export.py"}


def test_only_model_dir_spells_the_model_folder_file_names():
    names = {"config.toml", "split.json", "metrics.json", "history.json", "vocabularies", "saved_model.pb", "stages"}
    spelled = {}
    for _, path in _modules():
        if path.name == "model_dir.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                spelled.setdefault(str(path.relative_to(PACKAGE)), set()).add(node.value)
    assert not spelled


def test_metrics_import_no_model_code_and_no_tensorflow():
    tree = ast.parse((PACKAGE / "metrics.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "collections", "numpy", "pandas"}


def test_the_package_root_exports_the_public_api():
    import tfrs_pipeline

    for name in ("Recommender", "ModelDir", "PipelineConfig", "run_training", "load_data", "evaluate_export"):
        assert name in tfrs_pipeline.__all__ and getattr(tfrs_pipeline, name) is not None
    with pytest.raises(AttributeError):
        tfrs_pipeline.no_such_name  # noqa: B018
