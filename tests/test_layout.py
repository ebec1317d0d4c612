"""The package reads as the pipeline: every import points down it, and each job has one home."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tfrs_pipeline"

#: Layers from the bottom up; a module may import its own layer and the ones below. Generic
#: machinery (ids, metrics, data, training, features) sits below the stages that use it.
LAYERS = [
    {"errors", "ids", "signatures", "arguments"},
    {"config", "metrics"},
    {"data"},
    {"training", "model_dir", "features"},
    {"retrieval"},
    {"ranking"},
    {"baselines", "export", "recommender"},
    {"evaluation"},
    {"pipeline", "server"},
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


def _module_name(path: Path) -> str:
    parts = ("tfrs_pipeline", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path) for path in PACKAGE.rglob("*.py")}


def _imported_modules(path: Path) -> set[str]:
    """Package modules imported anywhere in the file (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {name for name in names if name in MODULES and name != "tfrs_pipeline"}
    return found


def _imports(path: Path) -> set[str]:
    """First-level package parts (``retrieval``, ``ids``) imported anywhere in the file."""
    return {name.split(".")[1] for name in _imported_modules(path)}


def test_every_module_has_a_layer():
    assert {top for top, _ in _modules()} <= set(LAYER_OF), "a new module needs a place in LAYERS"


@pytest.mark.parametrize("top,path", list(_modules()), ids=lambda value: str(value))
def test_imports_point_down_the_pipeline(top, path):
    upward = {name for name in _imports(path) if LAYER_OF[name] > LAYER_OF[top]}
    assert not upward, f"{path.relative_to(PACKAGE)} imports {sorted(upward)}, which sit above it"


def test_no_module_imports_itself_through_others():
    graph = {_module_name(path): _imported_modules(path) - {_module_name(path)} for path in PACKAGE.rglob("*.py")}
    # A package's __init__ importing its own modules is how packages work, not a cycle.
    graph = {module: {m for m in imported if not module.startswith(m + ".")} for module, imported in graph.items()}
    visiting, done = [], set()

    def visit(module: str) -> None:
        if module in visiting:
            raise AssertionError("import cycle: " + " -> ".join(visiting[visiting.index(module):] + [module]))
        if module in done:
            return
        visiting.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def _stem(name: str) -> str:
    for ending in ("ing", "ers", "er", "es", "s", "e"):
        if name.endswith(ending) and len(name) - len(ending) >= 4:
            return name[: -len(ending)]
    return name


@pytest.mark.parametrize("folder", [PACKAGE, *sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists())],
                         ids=lambda p: p.name)
def test_no_two_sibling_names_are_forms_of_one_word(folder):
    names = sorted(p.stem for p in folder.iterdir() if not p.name.startswith("_") and (p.suffix == ".py" or p.is_dir())
                   and p.name != "__pycache__")
    stems = {}
    for name in names:
        stems.setdefault(_stem(name), []).append(name)
    assert not [group for group in stems.values() if len(group) > 1]


def _calls(path: Path, dotted: str) -> bool:
    return any(isinstance(node, ast.Attribute) and ast.unparse(node) == dotted
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))


def test_only_export_writes_saved_models():
    writers = {str(path.relative_to(PACKAGE)) for _, path in _modules() if _calls(path, "tf.saved_model.save")}
    assert writers == {"export/writer.py"}


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
    assert imported <= {"__future__", "collections", "numpy", "pandas", "tfrs_pipeline"}
    assert {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module.startswith("tfrs_pipeline")} <= {"tfrs_pipeline.ids"}


def test_the_package_root_exports_the_public_api():
    import tfrs_pipeline

    for name in ("Recommender", "ModelDir", "PipelineConfig", "run_training", "load_data", "evaluate_export"):
        assert name in tfrs_pipeline.__all__ and getattr(tfrs_pipeline, name) is not None
    with pytest.raises(AttributeError):
        tfrs_pipeline.no_such_name  # noqa: B018


TESTS = Path(__file__).resolve().parent
#: What trains a model: a test that calls one of these itself, or through a fixture of its module, is
#: ``slow`` (docs/development.md); the session's shared model (``trained`` in conftest.py) is not its own.
TRAINERS = {"run_training", "train_retrieval", "refit_retrieval", "train_rating_model", "train_list_ranker",
            "train_short_history_head", "fit_ranker_stage", "cross_fit_lists", "train", "train_in_a_process"}


def _called_names(node: ast.AST) -> set[str]:
    names = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        target = call.func
        names.add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return names


#: Tests that call a trainer only to see it refuse before training starts.
REFUSED_BEFORE_TRAINING = {"test_no_cross_fitting_above_the_user_limit",
                           "test_python_messages_name_python_keywords_and_numeric_dataframe_ids_warn"}


def _marked_slow(decorators: list[ast.expr]) -> bool:
    return any(ast.unparse(decorator) == "pytest.mark.slow" for decorator in decorators)


def _training_tests_not_marked_slow(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if any(isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
           and "slow" in ast.unparse(node.value) for node in tree.body):
        return []  # the whole module is slow
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    training_fixtures = {f.name for f in functions if any("fixture" in ast.unparse(d) for d in f.decorator_list)
                         and _called_names(f) & TRAINERS}
    unmarked = []
    for function in functions:
        if (not function.name.startswith("test_") or _marked_slow(function.decorator_list)
                or function.name in REFUSED_BEFORE_TRAINING):
            continue
        arguments = {argument.arg for argument in function.args.args}
        if _called_names(function) & TRAINERS or arguments & training_fixtures:
            unmarked.append(function.name)
    return unmarked


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_a_test_that_trains_a_model_of_its_own_is_marked_slow(path):
    assert not _training_tests_not_marked_slow(path)


#: What learns from data: a constructor that calls one of these trains (scikit-learn's and Keras-RS's
#: constructors store what they are given; ``fit`` learns).
LEARNERS = {"fit", "build_item_table", "fit_ease", "adapt", "train_retrieval", "train_rating_model", "train_list_ranker",
            "refit_item_item", "refit_retrieval", "refit_matrix_factorization", "stack_matrix_factorization"}


def _learning_constructors(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            for method in node.body:
                if isinstance(method, ast.FunctionDef) and method.name == "__init__":
                    learned = _called_names(method) & LEARNERS
                    learned |= {"ItemNeighbours.build"} if "ItemNeighbours.build" in ast.unparse(method) else set()
                    found += [f"{node.name}.__init__ calls {name}" for name in sorted(learned)]
    return found


@pytest.mark.parametrize("top,path", list(_modules()), ids=lambda value: str(value))
def test_no_constructor_trains(top, path):
    assert not _learning_constructors(path)


#: Longer than this, a module says why at its top (in its docstring: "Longer than 500 lines: ...").
MOST_LINES = 500


@pytest.mark.parametrize("top,path", list(_modules()), ids=lambda value: str(value))
def test_a_long_module_says_why_at_its_top(top, path):
    text = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(text)) or ""
    assert text.count("\n") <= MOST_LINES or "Longer than 500 lines:" in docstring, \
        f"{path.relative_to(PACKAGE)} has {text.count(chr(10))} lines and no reason at its top"
