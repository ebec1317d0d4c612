"""The README says what the code does: its signature table, module list and command lines."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tfrs_pipeline.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_signature_table_lists_every_pipeline_signature(trained):
    import tensorflow as tf

    table = set(re.findall(r"^\| `(\w+)` \| ", README, flags=re.MULTILINE))
    exported = set(tf.saved_model.load(str(trained.path)).signatures)
    assert exported <= table, f"signatures missing from the README's table: {exported - table}"
    for stage in ("index", "ranking"):
        for name in tf.saved_model.load(str(trained.path / "stages" / stage)).signatures:
            assert f"`{name}" in README, f"the {stage} stage's {name} signature is not in the README"


def test_the_module_list_names_every_module():
    block = README.split("## Development", 1)[1]
    for path in sorted((ROOT / "tfrs_pipeline").glob("*.py")):
        if path.name != "__init__.py":
            assert path.stem in block, f"{path.name} is missing from the README's module list"
    for package in ("data/", "serving/", "serve/", "benchmarks/"):
        assert package in block


def _readme_commands():
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("tfrs-pipeline "):
                # "[--k 10]" marks an optional part: check it too, without the brackets.
                yield line


@pytest.mark.parametrize("line", list(_readme_commands()))
def test_every_readme_command_line_parses(line):
    argv = shlex.split(line.replace("[", "").replace("]", ""))[1:]
    argv = [part for part in argv if part != "..."]
    build_parser().parse_args(argv)  # an unknown option or a bad value exits with code 2
