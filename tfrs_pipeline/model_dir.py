"""The model folder: ``saved_models/NAME/VERSION/``, TensorFlow Serving's layout, and what lies beside it.

This module is the only place that spells a file name of a model folder::

    saved_models/NAME/
      .3.partial/          a version being written (never loaded, never served)
      2/                   the newest published version: what `resolve` returns and a server loads
        saved_model.pb, variables/   the two-stage pipeline SavedModel
        config.toml        the configuration the model was trained with
        split.json         the recorded train/test split (rebuilt exactly by evaluation)
        vocabularies/      one text file per vocabulary (user_ids.txt, movie_ids.txt, ...)
        history.json       per-epoch training logs and two-stage choices
        metrics.json       test metrics measured on the exported model
        README.md          the model card
        MANIFEST.sha256    SHA-256 of every other file (``sha256sum -c MANIFEST.sha256`` checks it),
                           verified before a version is loaded
      stages/query_tower/2/, stages/candidate_tower/2/, stages/index/2/, stages/ranking/2/
                           each stage of version 2 as a SavedModel of its own: each stage folder is a
                           model base in TensorFlow Serving's layout, servable alone; they repeat the
                           pipeline's tables, so they lie beside the folder a server of the pipeline loads
      logs/2/              TensorBoard logs of each stage of version 2: a training by-product, beside the
                           version rather than in the folder a server loads

(Versions exported before the stages moved beside them hold them in ``VERSION/stages/``;
:meth:`ModelDir.stage` finds them there.)

A version is claimed by creating its staging folder with ``os.mkdir`` (atomic: two
concurrent runs never share a version) and published by renaming that folder, so the
newest integer version is always complete. Each version carries a checksum manifest;
a damaged file (a truncated copy, a disk error) is found before TensorFlow reads it, and
:meth:`ModelDir.candidates` hands callers the versions to try, newest first. It needs
neither TensorFlow nor TFRS.

Examples:
    >>> staging = ModelDir.create(tmp_folder / "demo")
    >>> staging.path.name
    '.1.partial'
    >>> staging.write_config(PipelineConfig())
    >>> staging.publish().path.name
    '1'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfrs_pipeline.config import PipelineConfig, load_toml, to_toml
from tfrs_pipeline.data.schema import RatingsData
from tfrs_pipeline.data.split import Split, SplitRecord
from tfrs_pipeline.errors import DataError, ModelError

SAVED_MODEL = "saved_model.pb"
CONFIG = "config.toml"
SPLIT = "split.json"
VOCABULARIES = "vocabularies"
HISTORY = "history.json"
METRICS = "metrics.json"
CARD = "README.md"
MANIFEST = "MANIFEST.sha256"
#: In a staging folder only: which process (pid, host) is writing it; removed when it is published.
CLAIM = "claim.json"
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

    Examples:
        >>> model_dir = ModelDir.resolve(model_path)  # saved_models/NAME: its newest version
        >>> model_dir.version, model_dir.read_config().serving.k
        (1, 10)
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
        """``saved_models/NAME/VERSION``: where this folder is (or will be, once published)."""
        return self.base / str(self.version)

    # -- finding and claiming versions ------------------------------------------------------------

    @classmethod
    def resolve(cls, path: str | Path) -> ModelDir:
        """``saved_models/NAME`` -> its newest published version; ``saved_models/NAME/VERSION`` as given.

        Args:
            path: a model base or one of its version folders.

        Returns:
            The version folder.

        Raises:
            ModelError: no exported model there, or a version still being written.
        """
        return cls.candidates(path)[0]

    @classmethod
    def candidates(cls, path: str | Path) -> list[ModelDir]:
        """The versions to try loading, newest first: every published version of a base, or the one given.

        Args:
            path: a model base or one of its version folders.

        Returns:
            The version folders, newest first.

        Raises:
            ModelError: no exported model there, or a staging folder (never loaded).
        """
        path = Path(path)
        if _PARTIAL.match(path.name):
            raise ModelError(f"{path} is a version still being written (or left by a run that was stopped); "
                             f"it is never loaded: use {path.parent} for its newest published version")
        if (path / SAVED_MODEL).is_file():
            return [cls(path)]
        versions = published_versions(path)
        if versions:
            return [cls(path / str(version)) for version in versions]
        if path.is_dir() and any(_PARTIAL.match(p.name) for p in path.iterdir()):
            raise ModelError(f"{path}: no published version yet, only versions being written (or left by stopped "
                             "runs); wait for `tfrs-pipeline train` to finish")
        raise ModelError(f"{path}: no exported model (expected saved_models/NAME or saved_models/NAME/VERSION "
                         f"holding {SAVED_MODEL}; train one with `tfrs-pipeline train`)")

    @classmethod
    def create(cls, base: str | Path, log: Callable[[str], None] | None = None) -> ModelDir:
        """Claims the next version under ``base`` and returns its (empty) staging folder.

        The claim is ``os.mkdir`` of ``.VERSION.partial``, which fails if another run made
        it first; then the next number is tried. Versions being written count as taken. The
        claim records the process and host (``claim.json``); a staging folder whose process
        on this host is gone (a crashed or killed run) is removed first, so that versions
        stay dense.

        Args:
            base: ``saved_models/NAME`` (made if missing).
            log: where a line about a removed staging folder goes (default: nowhere).

        Returns:
            The staging folder, which :meth:`publish` renames to its version.

        Raises:
            ModelError: ``base`` is a file, under a file, or cannot be created or written.
        """
        base = Path(base)
        try:
            base.mkdir(parents=True, exist_ok=True)
            for stale in _abandoned_claims(base):
                shutil.rmtree(stale, ignore_errors=True)
                for stage in STAGE_NAMES:
                    shutil.rmtree(base / STAGES / stage / stale.name, ignore_errors=True)
                if log is not None:
                    log(f"removed {stale}: the staging folder of a run that is no longer alive")
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
                # A removed version's logs and stages, never this one's.
                shutil.rmtree(base / LOGS / str(version), ignore_errors=True)
                for stage in STAGE_NAMES:
                    shutil.rmtree(base / STAGES / stage / str(version), ignore_errors=True)
                _write_json(staging / CLAIM, {"pid": os.getpid(), "host": socket.gethostname(),
                                              "started": time.time()})
                return cls(staging, version)
        except FileExistsError:
            raise ModelError(f"{base}: a file, not a folder; the model folder is a folder such as "
                             "saved_models/NAME") from None
        except NotADirectoryError:
            raise ModelError(f"{base}: a part of the path is a file, not a folder") from None
        except OSError as error:
            raise ModelError(f"{base}: the model folder cannot be written ({error.strerror})") from None

    def publish(self) -> ModelDir:
        """Renames the staging folder to its integer version.

        Returns:
            The published folder.
        """
        final = self.published_path
        if self.path != final:
            (self.path / CLAIM).unlink(missing_ok=True)
            self.path.rename(final)
            for stage in STAGE_NAMES:  # after the version: a stage is never published without its pipeline
                staged = self.base / STAGES / stage / self.path.name
                if staged.is_dir():
                    staged.rename(staged.parent / str(self.version))
        return ModelDir(final)

    def discard(self) -> None:
        """Removes an unpublished staging folder and its logs (a failed run leaves nothing behind)."""
        if self.path != self.published_path:
            shutil.rmtree(self.path, ignore_errors=True)
            shutil.rmtree(self.logs_path, ignore_errors=True)
            for stage in STAGE_NAMES:
                shutil.rmtree(self.base / STAGES / stage / self.path.name, ignore_errors=True)
            # The logs and stage folders themselves, where no other version has any.
            for folder in [self.logs_path.parent] + [self.base / STAGES / stage for stage in STAGE_NAMES] + [
                    self.base / STAGES]:
                with contextlib.suppress(OSError):
                    folder.rmdir()

    # -- paths ------------------------------------------------------------------------------------

    def stage(self, name: str) -> Path:
        """The SavedModel folder of one stage (``query_tower``, ``candidate_tower``, ``index``, ``ranking``)
        of this version: ``saved_models/NAME/stages/STAGE/VERSION`` (inside the version for versions
        exported before the stages moved beside it)."""
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(STAGE_NAMES)}")
        inside = self.path / STAGES / name
        return inside if inside.is_dir() else self.base / STAGES / name / self.path.name

    def size_bytes(self) -> int:
        """Bytes of every file in the version folder (what a server of the pipeline loads)."""
        return _folder_bytes(self.path)

    def stages_bytes(self) -> int:
        """Bytes of every file of this version's stage SavedModels."""
        return sum(_folder_bytes(self.stage(name)) for name in STAGE_NAMES)

    @property
    def logs_path(self) -> Path:
        """The version's TensorBoard logs: ``saved_models/NAME/logs/VERSION``, beside the version."""
        return self.path.parent / LOGS / str(self.version)

    def logs(self, stage: str) -> Path:
        """TensorBoard log folder of a training stage (under :attr:`logs_path`)."""
        return self.logs_path / stage

    @property
    def history_path(self) -> Path:
        """The training history file (``history.json``)."""
        return self.path / HISTORY

    # -- records ----------------------------------------------------------------------------------

    def write_config(self, config: PipelineConfig) -> None:
        """Saves the configuration the model is trained with (``config.toml``)."""
        (self.path / CONFIG).write_text(to_toml(config), encoding="utf-8")

    def read_config(self) -> PipelineConfig:
        """The configuration the model was trained with."""
        return load_toml(self.path / CONFIG)

    def write_split(self, record: SplitRecord) -> None:
        """Saves the record that rebuilds the model's train/test split (``split.json``)."""
        record.save(self.path / SPLIT)

    def read_split(self) -> SplitRecord:
        """The recorded split; a missing or damaged record raises a ModelError naming the file."""
        path = self.path / SPLIT
        if not path.is_file():
            raise ModelError(f"{path} is missing: the model's split cannot be rebuilt")
        try:
            return SplitRecord.load(path)
        except (ValueError, TypeError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
            raise ModelError(f"{path} is damaged ({type(error).__name__}: {str(error).splitlines()[0][:120]}); "
                             "evaluate a version whose split.json is intact") from None

    def recorded_split(self, data_source: str | None = None) -> tuple[RatingsData, Split]:
        """The data and exact split this model was trained on: ``(data, split)``.

        Args:
            data_source: read the data from here instead of the recorded source (it must be
                the same data: the fingerprints are checked).

        Returns:
            ``(data, split)``: the ratings, and their training and test sides as at training.

        Raises:
            DataError: the data or the rebuilt test set differ from those recorded.
        """
        from tfrs_pipeline.config import apply_overrides
        from tfrs_pipeline.data import load_data
        from tfrs_pipeline.data.split import reproduce_split

        config = self.read_config()
        if data_source:
            config = apply_overrides(config, {"data.source": data_source})
        try:
            data = load_data(config.data.source, config.data)
        except DataError as error:
            if data_source or config.data.source == "dataframe":  # the message says what to give already
                raise
            raise DataError(f"{error}; the model was trained from {config.data.source} (recorded in "
                            f"{self.path / CONFIG}): where that data is now elsewhere, give it again with --data "
                            "SOURCE (Python: data_source=)") from None
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
        """Saves the per-epoch training logs and the two-stage choices (``history.json``)."""
        _write_json(self.path / HISTORY, history)

    def read_history(self) -> dict[str, Any]:
        """The per-epoch training logs and the two-stage choices."""
        return _read_json(self.path / HISTORY)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Saves the test figures (``metrics.json``)."""
        _write_json(self.path / METRICS, metrics)

    def read_metrics(self) -> dict[str, Any]:
        """The test figures measured when the model was trained."""
        return _read_json(self.path / METRICS)

    def write_card(self, text: str) -> None:
        """Writes the model card (``README.md``)."""
        (self.path / CARD).write_text(text, encoding="utf-8")

    # -- integrity ---------------------------------------------------------------------------------

    def write_manifest(self) -> None:
        """Records the SHA-256 of every file of the version, and of each stage in the stage's own folder
        (``sha256sum`` format); the last write before publishing."""
        for folder in [self.path] + [self.stage(name) for name in STAGE_NAMES if self.stage(name).is_dir()]:
            files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                           if p.is_file() and p.name != MANIFEST and p.relative_to(folder).as_posix() != CLAIM)
            lines = [f"{_sha256(folder / name)}  {name}\n" for name in files]
            (folder / MANIFEST).write_text("".join(lines), encoding="utf-8")

    @property
    def has_manifest(self) -> bool:
        """Whether the version carries a checksum manifest."""
        return (self.path / MANIFEST).is_file()

    def verify(self, stage: str | None = None) -> None:
        """Checks every file of the version (or of one of its ``stage`` SavedModels) against its manifest
        (versions exported before manifests are not checked).

        Raises:
            ModelError: a file is missing, changed or damaged, or the manifest itself is unreadable.
        """
        _verify(self.path if stage is None else self.stage(stage))


def _verify(folder: Path) -> None:
    if not (folder / MANIFEST).is_file():
        return
    try:
        entries = [line.split("  ", 1) for line in (folder / MANIFEST).read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        raise ModelError(f"{folder}: {MANIFEST} is damaged (not text)") from None
    for entry in entries:
        if len(entry) != 2 or not re.fullmatch(r"[0-9a-f]{64}", entry[0]):
            raise ModelError(f"{folder}: {MANIFEST} is damaged (line {entry!r})")
        digest, name = entry
        file = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not file.resolve().is_relative_to(folder.resolve()):
            raise ModelError(f"{folder}: {MANIFEST} lists {name!r}, outside the version folder; the manifest "
                             "is damaged or was tampered with")
        if not file.is_file():
            raise ModelError(f"{folder}: {name} is missing (listed in {MANIFEST})")
        if _sha256(file) != digest:
            raise ModelError(f"{folder}: {name} is damaged (its SHA-256 differs from {MANIFEST})")


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _abandoned_claims(base: Path) -> list[Path]:
    """Staging folders under ``base`` claimed by a process of this host that is no longer running."""
    host, found = socket.gethostname(), []
    for path in base.iterdir():
        if not _PARTIAL.match(path.name) or not (path / CLAIM).is_file():
            continue
        try:
            claim = json.loads((path / CLAIM).read_text(encoding="utf-8"))
            pid, claimed_on = int(claim["pid"]), str(claim["host"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours to judge
        if claimed_on == host and pid != os.getpid() and not _alive(pid):
            found.append(path)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, values: dict[str, Any]) -> None:
    path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"{path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: not valid JSON ({error})") from None
