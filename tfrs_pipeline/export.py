"""Where a SavedModel is written: each stage on its own, with named ``serving_default`` signatures.

Every signature takes and returns named tensors (``user_id``, ``k`` in; ``movie_ids``,
``scores`` out), and ``k`` is an input tensor, so a loaded model answers any ``k``
(TFRS's own index, traced with a Python ``k``, fails with "Could not find matching
concrete function" when a caller changes it). Loading needs TensorFlow alone:

    >>> import tensorflow as tf
    >>> index = tf.saved_model.load("saved_models/demo/1/stages/index")  # doctest: +SKIP
    >>> index.signatures["serving_default"](user_id=tf.constant(["42"]), k=tf.constant(5))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tfrs_pipeline.index import SeenAwareBruteForce, SeenMovies
from tfrs_pipeline.towers import CandidateTower, QueryTower

USER_IDS = tf.TensorSpec([None], tf.string, name="user_id")
MOVIE_IDS = tf.TensorSpec([None], tf.string, name="movie_id")
K = tf.TensorSpec([], tf.int32, name="k")


class QueryTowerExport(tf.Module):
    """``serving_default(user_id) -> {embeddings, known_user}``; unknown users get the fallback query."""

    def __init__(self, query_tower: QueryTower) -> None:
        super().__init__(name="query_tower")
        self.query_tower = query_tower

    @tf.function(input_signature=[USER_IDS])
    def serve(self, user_id):
        return {"embeddings": self.query_tower.serve(user_id), "known_user": self.query_tower.known(user_id)}


class CandidateTowerExport(tf.Module):
    """``serving_default(movie_id) -> {embeddings, known_movie}``; cold movies are embedded from their features."""

    def __init__(self, candidate_tower: CandidateTower) -> None:
        super().__init__(name="candidate_tower")
        self.candidate_tower = candidate_tower

    @tf.function(input_signature=[MOVIE_IDS])
    def serve(self, movie_id):
        return {"embeddings": self.candidate_tower(movie_id), "known_movie": self.candidate_tower.known(movie_id)}


class IndexExport(tf.Module):
    """The brute-force index behind the query tower.

    Signatures:
        ``serving_default(user_id, k)``: top ``k`` movies, the user's training movies excluded.
        ``include_seen(user_id, k)``: top ``k`` movies, nothing excluded.
    Both return ``movie_ids`` [users, k], ``scores`` [users, k] and ``known_user`` [users].
    """

    def __init__(self, query_tower: QueryTower, index: SeenAwareBruteForce, seen: SeenMovies) -> None:
        # ``index`` may also be a ScannIndex: same interface.
        super().__init__(name="index")
        self.query_tower = query_tower
        self.index = index
        self.seen = seen

    @tf.function(input_signature=[USER_IDS, K])
    def serve(self, user_id, k):
        scores, movie_ids = self.index.query_excluding(self.query_tower.serve(user_id), self.seen(user_id), k)
        return {"movie_ids": movie_ids, "scores": scores, "known_user": self.query_tower.known(user_id)}

    @tf.function(input_signature=[USER_IDS, K])
    def include_seen(self, user_id, k):
        scores, movie_ids = self.index(self.query_tower.serve(user_id), k)
        return {"movie_ids": movie_ids, "scores": scores, "known_user": self.query_tower.known(user_id)}


def save(module: tf.Module, path: str | Path, **extra_signatures) -> Path:
    """Writes ``module`` as a SavedModel whose ``serving_default`` is ``module.serve``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signatures = {"serving_default": module.serve, **extra_signatures}
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def export_retrieval_stages(model, seen: SeenMovies, folder: str | Path, index=None) -> dict[str, Path]:
    """Exports query tower, candidate tower and index (``model.index`` unless given) under ``folder``."""
    folder = Path(folder)
    index = IndexExport(model.query_tower, index if index is not None else model.index, seen)
    return {
        "query_tower": save(QueryTowerExport(model.query_tower), folder / "query_tower"),
        "candidate_tower": save(CandidateTowerExport(model.candidate_tower), folder / "candidate_tower"),
        "index": save(index, folder / "index", include_seen=index.include_seen),
    }


class RankingExport(tf.Module):
    """``serving_default(user_id, movie_id) -> {predicted_rating, known_user, known_movie}`` for parallel id vectors."""

    def __init__(self, ranking_model) -> None:
        super().__init__(name="ranking")
        self.ranking_model = ranking_model

    @tf.function(input_signature=[USER_IDS, MOVIE_IDS])
    def serve(self, user_id, movie_id):
        return {
            "predicted_rating": self.ranking_model({"user_id": user_id, "movie_id": movie_id}),
            "known_user": self.ranking_model.user_lookup(user_id) > 0,
            "known_movie": self.ranking_model.movie_lookup(movie_id) > 0,
        }


def next_version(base: str | Path) -> int:
    """The next integer version under ``base`` (TensorFlow Serving serves the highest)."""
    base = Path(base)
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def resolve_model(path: str | Path) -> Path:
    """``saved_models/NAME`` -> its newest version folder; ``saved_models/NAME/VERSION`` as given.

    Raises:
        ModelError: no exported model there.
    """
    from tfrs_pipeline.errors import ModelError

    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    if path.is_dir():
        versions = sorted((int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
        for version in versions:
            if (path / str(version) / "saved_model.pb").is_file():
                return path / str(version)
    raise ModelError(f"{path}: no exported model (expected saved_models/NAME or saved_models/NAME/VERSION "
                     "holding saved_model.pb; train one with `tfrs-pipeline train`)")


def load_saved_model(path: str | Path):
    """``tf.saved_model.load``, registering ScaNN's ops first when the model was exported with them."""
    try:
        return tf.saved_model.load(str(path))
    except (RuntimeError, tf.errors.NotFoundError) as error:
        if "Scann" not in str(error):
            raise
        try:
            import scann  # noqa: F401  (registers the ScaNN TensorFlow ops)
        except ImportError:
            from tfrs_pipeline.errors import ModelError

            raise ModelError(f"{path} was exported with a ScaNN index: install ScaNN (pip install 'scann[tf]') "
                             "to load it") from None
        return tf.saved_model.load(str(path))
