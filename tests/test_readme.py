"""The README and the docs say what the code does: the signature table, the module list and every command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tfrs_pipeline.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = {path.relative_to(ROOT): path.read_text(encoding="utf-8")
         for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]}
TEXT = "\n".join(PAGES.values())


def test_the_signature_table_lists_every_pipeline_signature(trained):
    import tensorflow as tf

    table = set(re.findall(r"^\| `(\w+)` \| ", TEXT, flags=re.MULTILINE))
    exported = set(tf.saved_model.load(str(trained.path)).signatures)
    assert exported <= table, f"signatures missing from the docs' table: {exported - table}"
    for stage in ("index", "ranking"):
        for name in tf.saved_model.load(str(trained.model_dir.stage(stage))).signatures:
            assert f"`{name}" in TEXT, f"the {stage} stage's {name} signature is not in the docs"


def test_the_development_page_names_every_module():
    block = (ROOT / "docs" / "development.md").read_text(encoding="utf-8").split("## The layout", 1)[1]
    package = ROOT / "tfrs_pipeline"
    for path in sorted(package.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        relative = path.relative_to(package)
        name = f"{relative.parts[0]}/" if len(relative.parts) > 1 else path.name
        assert name in block, f"{name} is missing from the layout in docs/development.md"
        assert path.stem in block, f"{relative} is missing from the layout in docs/development.md"


def _commands():
    for page, text in PAGES.items():
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("#", 1)[0].strip()
                if line.startswith("tfrs-pipeline "):
                    # "[--k 10]" marks an optional part: check it too, without the brackets.
                    yield pytest.param(line, id=f"{page}: {line[:60]}")


@pytest.mark.parametrize("line", list(_commands()))
def test_every_command_line_in_the_readme_and_docs_parses(line):
    argv = shlex.split(line.replace("[", "").replace("]", ""))[1:]
    argv = [part for part in argv if part != "..."]
    build_parser().parse_args(argv)  # an unknown option or a bad value exits with code 2


def test_every_data_path_in_the_readme_and_docs_works_on_a_fresh_clone():
    """No page points at data a fresh clone lacks: MovieLens by the name `data download` fetches it
    under, never this project's own ../shared copy or a folder the reader was never told to make."""
    from tfrs_pipeline.data.download import ARCHIVES

    for page, text in PAGES.items():
        assert "../shared" not in text or page.name == "development.md", f"{page} points into ../shared"
        for name in re.findall(r"movielens:([\w./-]+)", text):
            if name.startswith("ml-"):
                assert name in ARCHIVES, f"{page}: movielens:{name} is not an archive `data download` fetches"
                assert f"data download {name}" in TEXT, f"no page shows `tfrs-pipeline data download {name}`"
        assert not re.search(r"read_csv\(\"ml-latest", text), f"{page} reads a folder a fresh clone lacks"
