"""Where a SavedModel is written: the two-stage pipeline and each stage, into a model folder.

This is the only module that calls ``tf.saved_model.save``. Every signature takes and
returns named tensors (``user_id``, ``k`` in; ``movie_ids``, ``scores`` out) and ``k`` is an
input tensor, so a loaded model answers any ``k``. Loading needs TensorFlow alone:

    >>> import tensorflow as tf
    >>> index = tf.saved_model.load(f"{model_path}/stages/index/1")  # saved_models/NAME/stages/index/VERSION
    >>> sorted(index.signatures["serving_default"](user_id=tf.constant(["42"]), k=tf.constant(5)))
    ['known_user', 'movie_ids', 'scores']
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import tensorflow as tf

from tfrs_pipeline.export.stages import CandidateTowerExport, IndexExport, QueryTowerExport, RankingExport
from tfrs_pipeline.export.top_rated import TopRatedMovies
from tfrs_pipeline.export.two_stage import TwoStagePipeline
from tfrs_pipeline.features.tables import MovieTable
from tfrs_pipeline.model_dir import ModelDir
from tfrs_pipeline.ranking.blend import logit_scale
from tfrs_pipeline.retrieval.candidates import CandidateRetriever, well_rated_popular
from tfrs_pipeline.retrieval.index import SeenMovies, serving_index


def _without_keras_layer_traces():
    """Keras's SavedModel serialization, told not to trace every layer's own call functions.

    Those traces let ``tf.keras.models.load_model`` rebuild each layer; our exports are read
    with ``tf.saved_model.load`` and called through their signatures, whose graphs are the same
    either way. Skipping them took a third off the export of a small model. Where this Keras
    has no such option the export is written with the traces (slower, same signatures).
    """
    try:
        from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope
    except ImportError:
        return contextlib.nullcontext()
    return keras_option_scope(save_traces=False)


def save(module: tf.Module, path: str | Path, signatures: dict | None = None) -> Path:
    """Writes ``module`` as a SavedModel; ``serving_default`` is ``module.serve`` unless ``signatures`` say otherwise.

    Args:
        module: the TensorFlow module to write.
        path: its folder (made if missing).
        signatures: signature name -> traced function (default: ``serving_default`` is ``module.serve``).

    Returns:
        The folder written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _without_keras_layer_traces(), _keras_notes_silenced():
        tf.saved_model.save(module, str(path), signatures=signatures or {"serving_default": module.serve})
    return path


@contextlib.contextmanager
def _keras_notes_silenced():
    """Keras warns, once per layer, that our subclassed models have no ``get_config``: they are
    exported for ``tf.saved_model.load`` and never rebuilt from a config, so the note is noise."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _without_training_state(retrieval, rating_model, list_ranker) -> None:
    """Leaves out of the SavedModels what only training reads: each compiled model's optimizer, whose
    moments are twice the size of the tables they train (15 MiB for a 26,000-movie rating model),
    and the query tower's (user, movie) keys, which only leave a rated movie out of its own history
    while training (the exported query tower never leaves one out). The Python objects keep them."""
    for model in (rating_model, getattr(list_ranker, "head", None), getattr(list_ranker, "short_head", None)):
        if model is not None and getattr(model, "optimizer", None) is not None:
            model._delete_tracking("optimizer")
    pooling = getattr(retrieval.query_tower, "history_pooling", None)
    if pooling is not None:
        pooling._delete_tracking("keys")


def export_model(model_dir: ModelDir, retrieval, rating_model, movies: MovieTable, seen: SeenMovies, *,
                 index_kind: str, num_candidates: int, rating_weight: float, list_ranker=None,
                 top_rated: TopRatedMovies | None = None) -> TwoStagePipeline:
    """Writes the two-stage pipeline into ``model_dir`` and each stage beside it (:meth:`ModelDir.stage`).

    Args:
        model_dir: the (staging) version folder.
        retrieval: the trained retrieval model (its brute-force index built over ``movies``).
        rating_model: the trained rating model (predicted ratings).
        movies: the catalog, in the index's row order.
        seen: each training user's rated movies (excluded from recommendations).
        index_kind: ``brute-force`` or ``scann`` (built from the same embeddings).
        num_candidates: movies retrieved per user before ranking.
        rating_weight: the two-stage blend's rating weight.
        list_ranker: the list ranker that orders the candidates (None: the rating blend does).
        top_rated: each training user's highest-rated movies (the ``rated_movies`` signature).

    Returns:
        The exported pipeline module (as written).
    """
    _without_training_state(retrieval, rating_model, list_ranker)
    embeddings = retrieval.candidate_embeddings()
    index = serving_index(retrieval, index_kind, embeddings)
    catalog_ids = tf.Variable(movies.movie_ids.astype(str), trainable=False, name="catalog_ids")
    retriever = CandidateRetriever(retrieval.query_tower, index, seen, catalog_ids, well_rated_popular(movies))
    config = retrieval.config
    pipeline = TwoStagePipeline(retriever, rating_model, movies, retrieval.without_bias(embeddings), num_candidates,
                                logit_scale(config.normalize, config.temperature), rating_weight, list_ranker,
                                top_rated)
    save(pipeline, model_dir.path, pipeline.signatures())
    index_stage = IndexExport(CandidateRetriever(retrieval.query_tower, index, seen))
    save(QueryTowerExport(retrieval.query_tower), model_dir.stage("query_tower"))
    save(CandidateTowerExport(retrieval.candidate_tower), model_dir.stage("candidate_tower"))
    save(index_stage, model_dir.stage("index"), index_stage.signatures())
    ranking_stage = RankingExport(rating_model, list_ranker, seen if list_ranker is not None else None)
    save(ranking_stage, model_dir.stage("ranking"), ranking_stage.signatures())
    return pipeline
