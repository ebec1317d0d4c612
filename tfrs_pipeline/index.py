"""The retrieval index: top candidates for a query, excluding what the user already rated.

``SeenAwareBruteForce`` is ``tfrs.layers.factorized_top_k.BruteForce`` with two
additions: ``k`` may be a tensor (so an exported index answers any ``k`` after
loading), and ``query_excluding`` removes each user's seen movies exactly, by masking
their scores before the top-k (``query_with_exclusions`` instead fetches ``k`` plus the
longest exclusion list and filters, which needs that length at trace time).

Example:
    >>> index = SeenAwareBruteForce()
    >>> index.reindex(tf.eye(3), tf.constant(["a", "b", "c"]))  # doctest: +SKIP
    >>> scores, ids = index.query_excluding(tf.constant([[1.0, 0.5, 0.0]]),
    ...                                     tf.ragged.constant([[0]], dtype=tf.int64), k=1)  # doctest: +SKIP
    >>> ids.numpy()  # doctest: +SKIP
    array([[b'b']], dtype=object)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_pipeline.features import Vocabularies


class SeenAwareBruteForce(tfrs.layers.factorized_top_k.BruteForce):
    """Exact top-k over every candidate, with call-time ``k`` and exact exclusion."""

    def reindex(self, candidates: tf.Tensor, identifiers: tf.Tensor) -> SeenAwareBruteForce:
        """Builds the index, or refreshes its embeddings in place when the shapes match."""
        if self._candidates is not None and self._candidates.shape == candidates.shape:
            self._candidates.assign(candidates)
            self._identifiers.assign(identifiers)
            return self
        return self.index(candidates, identifiers)

    @property
    def num_candidates(self) -> int:
        return int(self._candidates.shape[0])

    def scores(self, queries: tf.Tensor) -> tf.Tensor:
        """Scores of every candidate for each query, [queries, candidates]."""
        return self._compute_score(queries, self._candidates)

    def call(self, queries: tf.Tensor, k: int | tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        k = self._k if k is None else k
        scores = self.scores(queries)
        values, positions = tf.math.top_k(scores, k=tf.minimum(tf.cast(k, tf.int32), tf.shape(scores)[1]))
        return values, tf.gather(self._identifiers, positions)

    def query_excluding(self, queries: tf.Tensor, exclude: tf.RaggedTensor, k: int | tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Top ``k`` per query, never returning the candidate positions in ``exclude`` (ragged, one row per query).

        When ``k`` exceeds what is left after exclusion, the tail holds excluded movies
        with score ``-inf``.
        """
        scores = self.scores(queries)
        rows = exclude.value_rowids()
        columns = tf.cast(exclude.flat_values, tf.int64)
        scores = tf.tensor_scatter_nd_update(
            scores, tf.stack([rows, columns], axis=1), tf.fill(tf.shape(columns), tf.constant(-np.inf, scores.dtype))
        )
        values, positions = tf.math.top_k(scores, k=tf.minimum(tf.cast(k, tf.int32), tf.shape(scores)[1]))
        return values, tf.gather(self._identifiers, positions)


class SeenMovies(tf.Module):
    """Each training user's rated movies as positions in the catalog (the index's row order)."""

    def __init__(self, vocab: Vocabularies, catalog_ids: np.ndarray, train: pd.DataFrame) -> None:
        super().__init__(name="seen_movies")
        self.user_lookup = tf.keras.layers.StringLookup(vocabulary=vocab.user_ids, num_oov_indices=1)
        user_rows = pd.Index(vocab.user_ids).get_indexer(train["user_id"].astype(str)) + 1
        positions = pd.Index(catalog_ids).get_indexer(train["movie_id"].astype(str))
        order = np.lexsort((positions, user_rows))
        counts = np.bincount(user_rows, minlength=len(vocab.user_ids) + 1)
        self.splits = tf.Variable(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), trainable=False)
        self.values = tf.Variable(positions[order].astype(np.int64), trainable=False)

    def __call__(self, user_id: tf.Tensor) -> tf.RaggedTensor:
        rows = tf.cast(self.user_lookup(user_id), tf.int64)
        starts = tf.gather(self.splits, rows)
        ends = tf.gather(self.splits, rows + 1)
        positions = tf.ragged.range(starts, ends)
        return tf.RaggedTensor.from_row_splits(tf.gather(self.values, positions.flat_values), positions.row_splits)


def build_scann(queries_dim: int, candidates: tf.Tensor, identifiers: tf.Tensor, k: int = 100):
    """A ``tfrs.layers.factorized_top_k.ScaNN`` index for catalogs too big for brute force.

    Needs the ``scann`` extra (TensorFlow 2.20 ops). Leaves are sized for the catalog.
    """
    try:
        index = tfrs.layers.factorized_top_k.ScaNN(
            k=k, num_leaves=max(2, int(np.sqrt(candidates.shape[0]))), num_leaves_to_search=max(1, int(np.sqrt(candidates.shape[0]) // 10)),
            num_reordering_candidates=max(k * 4, 200), distance_measure="dot_product",
        )
    except ImportError as error:  # pragma: no cover - depends on the installed extra
        from tfrs_pipeline.errors import ConfigError

        raise ConfigError("retrieval.index = 'scann' needs the scann extra: pip install -e '.[scann]'") from error
    del queries_dim
    return index.index(candidates, identifiers)
