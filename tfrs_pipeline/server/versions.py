"""The versions a server holds, kept the way TensorFlow Serving keeps them.

:class:`ModelVersions` watches a model base (``saved_models/NAME``), loads each new integer
version in a background thread, answers a warm-up request with it, and only then makes it
``AVAILABLE``; a version that fails to load or warm up is ``END`` with its error, and the
versions already serving keep serving. Staging folders (``.N.partial``) are never looked at.

Version policy, as TensorFlow Serving's ``model_version_policy``:

* ``latest`` (default): serve the newest version that loaded; older ones are unloaded once
  a newer one is ``AVAILABLE``. When the serving version's folder is removed, the newest older
  version that loads serves again (the removed one keeps answering until it does), and the
  removed version's status says so.
* ``all``: serve every published version.
* specific versions (``[1, 3]``): serve those.

Labels (``stable``, ``canary``) map to versions through a small TOML file, re-read on every
poll::

    [labels]
    stable = 2
    canary = 3
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfrs_pipeline.config import read_toml_file
from tfrs_pipeline.errors import ConfigError, ModelError
from tfrs_pipeline.model_dir import ModelDir, published_versions
from tfrs_pipeline.recommender import Recommender
from tfrs_pipeline.server.rest import NotFound

log = logging.getLogger("tfrs_pipeline.server")

#: The status of a version whose folder left the disk while it served.
_REMOVED = "its folder was removed from disk"

#: TensorFlow Serving's version states.
LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass
class VersionState:
    """One version's state and, when ``AVAILABLE``, the loaded model."""

    version: int
    state: str = LOADING
    error: str = ""
    model: Recommender | None = None
    #: The version folder's files and newest modification time when it was last tried (changed: tried again).
    stamp: tuple[int, float] = (0, 0.0)
    loaded_seconds: float = 0.0
    warmup_ms: float = 0.0

    def status(self) -> dict:
        """TensorFlow Serving's ``ModelVersionStatus`` as JSON."""
        code = "UNKNOWN" if self.error else "OK"
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": code, "error_message": self.error}}


def parse_version_policy(text: str) -> str | list[int]:
    """``latest``, ``all`` or a comma-separated list of versions (``1,3``).

    Raises:
        ConfigError: anything else.
    """
    text = str(text).strip().lower()
    if text in ("latest", "all"):
        return text
    try:
        versions = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        versions = []
    if not versions or min(versions) < 1:
        raise ConfigError(f"--version-policy must be latest, all or versions such as 1,3; got {text!r}")
    return versions


def read_labels(path: str | Path | None) -> dict[str, int]:
    """``{label: version}`` from a TOML file's ``[labels]`` table (empty without a file).

    Raises:
        ConfigError: the file is unreadable, or a label's version is not a positive integer.
    """
    if path is None:
        return {}
    table = read_toml_file(path, "labels file").get("labels", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [labels] must be a table of label = version")
    labels = {}
    for label, version in table.items():
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(f"{path}: label {label!r} must name a version (a positive integer), got {version!r}")
        labels[str(label)] = version
    return labels


def warm_up(model: Recommender) -> float:
    """Answers one ``serving_default`` request with a known user; returns its milliseconds.

    Raises:
        ModelError: the model did not answer, or answered with no movies.
    """
    users = model.known_users()
    start = time.perf_counter()
    try:
        out = model.recommend(users[:1] or ["warm-up"], k=10, allow_unknown=True, arrays=True)
    except Exception as error:  # any failure in the graph means this version must not serve
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"warm-up request failed ({type(error).__name__}: {first})") from None
    if out["movie_ids"].shape[0] != 1 or not np.all(out["movie_ids"][0] != ""):
        raise ModelError("warm-up request returned no movies")
    return (time.perf_counter() - start) * 1000.0


class ModelVersions:
    """The versions of one model base, loaded in the background and served by version or label.

    Args:
        base: ``saved_models/NAME``.
        policy: ``latest``, ``all`` or a list of versions.
        labels_path: TOML file with a ``[labels]`` table (optional).
        poll_seconds: how often the base is scanned for new versions.
    """

    def __init__(self, base: str | Path, policy: str | list[int] = "latest", labels_path: str | Path | None = None,
                 poll_seconds: float = 2.0) -> None:
        self.base = Path(base)
        self.name = self.base.name
        self.policy = policy
        self.labels_path = labels_path
        self.poll_seconds = poll_seconds
        self.labels = read_labels(labels_path)
        self._states: dict[int, VersionState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what is served ---------------------------------------------------------------------------

    def states(self) -> list[VersionState]:
        with self._lock:
            return sorted(self._states.values(), key=lambda s: -s.version)

    def available(self) -> list[VersionState]:
        return [s for s in self.states() if s.state == AVAILABLE]

    def get(self, version: int | None = None, label: str | None = None) -> VersionState:
        """The version a request names (by number or label), or the newest available one.

        Raises:
            NotFound: no such version, label, or no version available yet.
        """
        version = self._version_of(version, label)
        with self._lock:
            if version is None:
                ready = [s for s in self._states.values() if s.state == AVAILABLE]
                if not ready:
                    raise NotFound(f"model {self.name!r} has no version available yet "
                                   f"({self._summary_locked() or 'none found'})")
                return max(ready, key=lambda s: s.version)
            state = self._states.get(version)
            if state is None or state.state != AVAILABLE:
                why = f" (state {state.state}{': ' + state.error if state.error else ''})" if state else ""
                raise NotFound(f"model {self.name!r} version {version} is not available{why}")
            return state

    def status(self, version: int | None = None, label: str | None = None) -> dict:
        """TensorFlow Serving's ``GetModelStatusResponse``: every version, or the one asked for."""
        version = self._version_of(version, label)
        states = self.states()
        if version is not None:
            states = [s for s in states if s.version == version]
            if not states:
                raise NotFound(f"model {self.name!r} has no version {version}")
        return {"model_version_status": [s.status() for s in states]}

    def _version_of(self, version: int | None, label: str | None) -> int | None:
        """The version a label names (the version itself without a label)."""
        if label is None:
            return version
        if label not in self.labels:
            raise NotFound(f"model {self.name!r} has no label {label!r}"
                           + (f"; labels: {', '.join(sorted(self.labels))}" if self.labels else ""))
        return self.labels[label]

    def _summary(self) -> str:
        with self._lock:
            return self._summary_locked()

    def _summary_locked(self) -> str:
        return "; ".join(f"version {s.version}: {s.state}{' ' + s.error if s.error else ''}"
                         for s in sorted(self._states.values(), key=lambda s: -s.version))

    # -- loading ----------------------------------------------------------------------------------

    def wanted(self, versions: list[int]) -> list[int]:
        """The published versions the policy may serve, newest first (``latest``: tried in this order
        until one loads, so a damaged newest version leaves the one before it serving)."""
        if self.policy in ("all", "latest"):
            return versions
        return [v for v in versions if v in self.policy]

    def refresh(self) -> None:
        """One scan of the base: loads wanted versions not yet tried, unloads ones no longer served."""
        if self.labels_path is not None:
            try:
                self.labels = read_labels(self.labels_path)
            except ConfigError as error:
                log.warning("labels not re-read, keeping %s: %s", self.labels, error)
        published = published_versions(self.base)
        before = self._summary()
        for version in self.wanted(published):
            if self._try(version) == AVAILABLE and self.policy == "latest":
                break  # the newest version that loads; older ones are not needed
        self._unload(published)
        if self._summary() != before:
            log.info("garbage collected after the change of versions in %.0f ms", _settle_garbage())

    def _try(self, version: int) -> str:
        """Loads a version unless it is loaded, loading, or failed with its files unchanged since; its state."""
        folder = self.base / str(version)
        stamp = _stamp(folder)
        with self._lock:
            known = self._states.get(version)
        failed = known is not None and known.state == END and known.error and not known.error.startswith(_REMOVED)
        if known is not None and (known.state in (AVAILABLE, LOADING) or (failed and known.stamp == stamp)):
            return known.state  # a version unloaded because a newer one served is loaded again when needed
        return self._load(version, folder, stamp)

    def _load(self, version: int, folder: Path, stamp: tuple[int, float]) -> str:
        state = VersionState(version, LOADING, stamp=stamp)
        with self._lock:
            self._states[version] = state
        start = time.perf_counter()
        try:
            model = Recommender.load(ModelDir(folder))
            state.warmup_ms = warm_up(model)
        except ModelError as error:
            state.state, state.error = END, str(error)
            log.warning("version %d of %s failed to load; it is not served: %s", version, self.name, error)
        else:
            state.model, state.state = model, AVAILABLE
            state.loaded_seconds = time.perf_counter() - start
            log.info("version %d of %s is available (loaded in %.1f s, warm-up %.1f ms)", version, self.name,
                     state.loaded_seconds, state.warmup_ms)
        return state.state

    def _unload(self, published: list[int]) -> None:
        available = [s.version for s in self.available() if s.version in published]
        keep = set(available[:1]) if self.policy == "latest" else set(self.wanted(published))
        for state in self.states():
            if state.state == AVAILABLE and state.version not in keep:
                state.state = UNLOADING
                state.model, state.state = None, END  # in-flight requests keep their own reference
                if state.version not in published:
                    serving = f"version {available[0]} serves instead" if available else "no version serves"
                    state.error = f"{_REMOVED}: {serving}"
                    log.warning("version %d of %s was removed from disk; %s", state.version, self.name, serving)
                else:
                    log.info("version %d of %s unloaded", state.version, self.name)

    # -- the watcher thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Loads what is there now (so a started server can answer), then watches in the background.

        Raises:
            ModelError: no version the policy asks for could be loaded.
        """
        self.refresh()
        if not self.available():
            with self._lock:
                why = self._summary_locked() or f"no published version matches version policy {self.policy}"
            raise ModelError(f"{self.base}: no version to serve ({why})")
        self._thread = threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any one bad scan
                log.exception("scanning %s failed; will try again", self.base)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        gc.unfreeze()  # what the served versions held is the collector's again


def _settle_garbage() -> float:
    """A full garbage collection, then every object left is frozen out of later ones; its milliseconds.

    Each full collection walks every object Python tracks, and a loaded SavedModel with
    TensorFlow holds so many that one took 210 to 250 ms on the demo model, a pause for every
    request in flight. Loading a version made the collector run one 1 to 4 s into serving, and
    the requests' own objects ran more of them every few seconds under load (at 32 clients).
    Frozen (``gc.freeze``), those objects are left out: the full collections under the same
    load took 0.5 to 1.3 ms. Unfrozen first, so that a version unloaded since is collected.
    """
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return (time.perf_counter() - start) * 1000.0


def _stamp(folder: Path) -> tuple[int, float]:
    """(files, newest modification time) under a version folder: a folder copied in by hand while
    the server scanned it changes its stamp when the copy finishes, and is tried again."""
    count, newest = 0, 0.0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:
                continue
            count += 1
    return count, newest
