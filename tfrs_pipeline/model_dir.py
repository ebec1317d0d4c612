"""The model folder: ``saved_models/NAME/VERSION/``, TensorFlow Serving's layout, and what lies beside it.

This module is the only place that spells a file name of a model folder::

    saved_models/NAME/
      .3.partial/          a version being written (never loaded, never served)
      2/                   the newest published version: what `resolve` returns
        saved_model.pb, variables/   the two-stage pipeline SavedModel
        stages/query_tower/, stages/candidate_tower/, stages/index/, stages/ranking/
        config.toml        the configuration the model was trained with
        split.json         the recorded train/test split (rebuilt exactly by evaluation)
        vocabularies/      one text file per vocabulary (user_ids.txt, movie_ids.txt, ...)
        history.json       per-epoch training logs and two-stage choices
        metrics.json       test metrics measured on the exported model
        README.md          the model card
        logs/              TensorBoard logs of each stage

A version is claimed by creating its staging folder with ``os.mkdir`` (atomic: two
concurrent runs never share a version) and published by renaming that folder, so the
newest integer version is always complete. It needs neither TensorFlow nor TFRS.

Example:
    >>> staging = ModelDir.create("saved_models/demo")  # doctest: +SKIP
    >>> staging.write_config(config)  # doctest: +SKIP
    >>> published = staging.publish()  # saved_models/demo/1  # doctest: +SKIP
    >>> ModelDir.resolve("saved_models/demo").version  # doctest: +SKIP
    1
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from tfrs_pipeline.config import PipelineConfig, load_toml, to_toml
from tfrs_pipeline.errors import ModelError
from tfrs_pipeline.split import SplitRecord

SAVED_MODEL = "saved_model.pb"
CONFIG = "config.toml"
SPLIT = "split.json"
VOCABULARIES = "vocabularies"
HISTORY = "history.json"
METRICS = "metrics.json"
CARD = "README.md"
STAGES = "stages"
LOGS = "logs"

#: Every stage exported on its own under ``stages/``.
STAGE_NAMES = ("query_tower", "candidate_tower", "index", "ranking")

_PARTIAL = re.compile(r"^\.(\d+)\.partial$")


def published_versions(base: str | Path) -> list[int]:
    """Integer versions under ``base`` that hold a SavedModel, newest first."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted((int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / SAVED_MODEL).is_file()),
                  reverse=True)


class ModelDir:
    """One version folder of a model (published, or being written under a staging name).

    Args:
        path: the folder (``saved_models/NAME/VERSION``, or a staging folder made by :meth:`create`).
        version: the version it is (or will be published as); read from the folder name by default.
    """

    def __init__(self, path: str | Path, version: int | None = None) -> None:
        self.path = Path(path)
        self.version = version if version is not None else int(self.path.name) if self.path.name.isdigit() else None

    def __repr__(self) -> str:
        return f"ModelDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def base(self) -> Path:
        """``saved_models/NAME``: the folder of all versions."""
        return self.path.parent

    @property
    def name(self) -> str:
        """The model's name (TensorFlow Serving's ``NAME``)."""
        return self.base.name

    @property
    def published_path(self) -> Path:
        return self.base / str(self.version)

    # -- finding and claiming versions ------------------------------------------------------------

    @classmethod
    def resolve(cls, path: str | Path) -> ModelDir:
        """``saved_models/NAME`` -> its newest published version; ``saved_models/NAME/VERSION`` as given.

        Raises:
            ModelError: no exported model there.
        """
        path = Path(path)
        if (path / SAVED_MODEL).is_file():
            return cls(path)
        versions = published_versions(path)
        if versions:
            return cls(path / str(versions[0]))
        raise ModelError(f"{path}: no exported model (expected saved_models/NAME or saved_models/NAME/VERSION "
                         f"holding {SAVED_MODEL}; train one with `tfrs-pipeline train`)")

    @classmethod
    def create(cls, base: str | Path) -> ModelDir:
        """Claims the next version under ``base`` and returns its (empty) staging folder.

        The claim is ``os.mkdir`` of ``.VERSION.partial``, which fails if another run made
        it first; then the next number is tried. Versions being written count as taken.
        """
        base = Path(base)
        base.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
        taken += [int(m.group(1)) for p in base.iterdir() if (m := _PARTIAL.match(p.name))]
        version = max(taken, default=0) + 1
        while True:
            staging = base / f".{version}.partial"
            try:
                os.mkdir(staging)
            except FileExistsError:
                version += 1
                continue
            if (base / str(version)).exists():  # published between our listing and our claim
                os.rmdir(staging)
                version += 1
                continue
            return cls(staging, version)

    def publish(self) -> ModelDir:
        """Renames the staging folder to its integer version; returns the published folder."""
        final = self.published_path
        if self.path != final:
            self.path.rename(final)
        return ModelDir(final)

    def discard(self) -> None:
        """Removes an unpublished staging folder (a failed run leaves nothing behind)."""
        if self.path != self.published_path:
            shutil.rmtree(self.path, ignore_errors=True)

    # -- paths ------------------------------------------------------------------------------------

    def stage(self, name: str) -> Path:
        """The SavedModel folder of one stage (``query_tower``, ``candidate_tower``, ``index``, ``ranking``)."""
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(STAGE_NAMES)}")
        return self.path / STAGES / name

    def logs(self, stage: str) -> Path:
        """TensorBoard log folder of a training stage."""
        return self.path / LOGS / stage

    @property
    def history_path(self) -> Path:
        return self.path / HISTORY

    # -- records ----------------------------------------------------------------------------------

    def write_config(self, config: PipelineConfig) -> None:
        (self.path / CONFIG).write_text(to_toml(config), encoding="utf-8")

    def read_config(self) -> PipelineConfig:
        return load_toml(self.path / CONFIG)

    def write_split(self, record: SplitRecord) -> None:
        record.save(self.path / SPLIT)

    def read_split(self) -> SplitRecord:
        return SplitRecord.load(self.path / SPLIT)

    def recorded_split(self, data_source: str | None = None):
        """The data and exact split this model was trained on: ``(data, split)``.

        Args:
            data_source: read the data from here instead of the recorded source (it must be
                the same data: the fingerprints are checked).

        Raises:
            DataError: the data or the rebuilt test set differ from those recorded.
        """
        from tfrs_pipeline.config import apply_overrides
        from tfrs_pipeline.data import load_data
        from tfrs_pipeline.split import reproduce_split

        config = self.read_config()
        if data_source:
            config = apply_overrides(config, {"data.source": data_source})
        data = load_data(config.data.source, config.data)
        return data, reproduce_split(data, self.read_split())

    def write_vocabularies(self, vocabularies: dict[str, list[str]]) -> None:
        """One text file per vocabulary, one entry a line."""
        folder = self.path / VOCABULARIES
        folder.mkdir(parents=True, exist_ok=True)
        for name, values in vocabularies.items():
            (folder / f"{name}.txt").write_text("".join(f"{v}\n" for v in values), encoding="utf-8")

    def read_vocabulary(self, name: str) -> list[str]:
        """One vocabulary (``user_ids``, ``movie_ids``, ...) as written at training."""
        path = self.path / VOCABULARIES / f"{name}.txt"
        if not path.is_file():
            raise ModelError(f"{self.path}: no vocabulary {name!r} ({path} is missing)")
        return path.read_text(encoding="utf-8").splitlines()

    def write_history(self, history: dict[str, Any]) -> None:
        _write_json(self.path / HISTORY, history)

    def read_history(self) -> dict[str, Any]:
        return _read_json(self.path / HISTORY)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        _write_json(self.path / METRICS, metrics)

    def read_metrics(self) -> dict[str, Any]:
        return _read_json(self.path / METRICS)

    def write_card(self, text: str) -> None:
        (self.path / CARD).write_text(text, encoding="utf-8")


def _write_json(path: Path, values: dict[str, Any]) -> None:
    path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"{path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: not valid JSON ({error})") from None
