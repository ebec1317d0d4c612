"""Shared fixtures: small MovieLens folders in each published layout, written by the tests."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tfrs_pipeline  # noqa: E402,F401  (selects Keras 2 before any test imports TensorFlow)

SHARED_SMALL = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "ml-latest-small"

GENRES_1M = ["Action", "Comedy", "Drama", "Romance", "Sci-Fi", "Thriller"]


def _ratings(seed: int, users: int, movies: int, per_user: int, half_stars: bool):
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, users + 1):
        for movie in rng.choice(np.arange(1, movies + 1), per_user, replace=False):
            rating = rng.integers(1, 11) / 2 if half_stars else rng.integers(1, 6)
            rows.append((user, int(movie), rating, 874_965_758 + int(rng.integers(0, 10_000_000))))
    return rows


def write_layout(folder: Path, layout: str, users: int = 12, movies: int = 20, per_user: int = 6) -> Path:
    """Writes a tiny MovieLens folder in the named published layout; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    ratings = _ratings(1, users, movies, per_user, half_stars=layout in ("10m", "latest"))
    if layout == "100k":
        (folder / "u.data").write_text("".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in ratings))
        lines = []
        for m in range(1, movies + 1):
            flags = ["0"] * 19
            flags[1 + m % 18] = "1"
            lines.append(f"{m}|Movie é {m} ({1980 + m})|01-Jan-{1980 + m}||http://x/{m}|" + "|".join(flags))
        (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
        (folder / "u.user").write_text("".join(f"{u}|{20 + u}|{'MF'[u % 2]}|student|{10000 + u}\n" for u in range(1, users + 1)))
    elif layout in ("1m", "10m"):
        (folder / "ratings.dat").write_text("".join(f"{u}::{m}::{r:g}::{t}\n" for u, m, r, t in ratings))
        (folder / "movies.dat").write_text("".join(
            f"{m}::Movie: Part {m} ({1980 + m})::{GENRES_1M[m % 6]}|{GENRES_1M[(m + 1) % 6]}\n" for m in range(1, movies + 1)
        ), encoding="latin-1")
        if layout == "1m":
            (folder / "users.dat").write_text("".join(f"{u}::{'MF'[u % 2]}::25::{u % 21}::{10000 + u}\n" for u in range(1, users + 1)))
        else:
            (folder / "tags.dat").write_text("1::1::funny::874965758\n")
    elif layout == "latest":
        (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
            f"{u},{m},{r:g},{t}\n" for u, m, r, t in ratings))
        (folder / "movies.csv").write_text("movieId,title,genres\n" + "".join(
            f'{m},"Movie, The {m} ({1980 + m})",{GENRES_1M[m % 6]}|{GENRES_1M[(m + 2) % 6]}\n' for m in range(1, movies + 1)
        ))
        (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,funny,874965758\n")
    else:
        raise ValueError(layout)
    return folder


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zips ``folder`` with the top-level directory, as GroupLens publishes it."""
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*")):
            out.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return archive


@pytest.fixture
def movielens_folder(tmp_path):
    def make(layout: str, **sizes) -> Path:
        return write_layout(tmp_path / f"ml-{layout}", layout, **sizes)

    return make


@pytest.fixture
def real_small() -> Path:
    if not (SHARED_SMALL / "ratings.csv").is_file():
        pytest.skip(f"real data absent: {SHARED_SMALL} (only in the project's development checkout)")
    return SHARED_SMALL


TINY = {
    "data.source": "synthetic:300x200x8000",
    "retrieval.epochs": 2, "retrieval.batch_size": 512,
    "rating.epochs": 2, "rating.batch_size": 512, "ranker.epochs": 3,
    "runtime.verbose": 0,
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One tiny two-stage model trained and exported through ``run_training`` (shared by tests)."""
    from tfrs_pipeline.config import PipelineConfig, apply_overrides
    from tfrs_pipeline.pipeline import run_training

    config = apply_overrides(PipelineConfig(), TINY)
    return run_training(config, tmp_path_factory.mktemp("models") / "tiny", log=lambda *_: None)


def run_tensorflow_only(code: str, timeout: int = 300) -> str:
    """Runs ``code`` in a fresh Python that imports TensorFlow and nothing of ours; returns stdout.

    The script fails if tfrs_pipeline or tensorflow_recommenders got imported.
    """
    import subprocess
    import sys

    guard = ("\nimport sys\nassert 'tfrs_pipeline' not in sys.modules, 'imported our code'\n"
             "assert 'tensorflow_recommenders' not in sys.modules, 'imported TFRS'\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run([sys.executable, "-c", "import tensorflow as tf\n" + code + guard], capture_output=True,
                            text=True, timeout=timeout, env=env, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
