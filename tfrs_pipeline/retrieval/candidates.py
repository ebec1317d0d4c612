"""Candidate retrieval as every signature does it: query tower -> index -> seen movies excluded.

:class:`CandidateRetriever` is the one implementation behind the pipeline's
``serving_default``, ``retrieve`` and ``recommend_including_seen``, the index stage, and
the validation lists the two-stage weight is chosen on. Users unknown to the model get
the well-rated popular list (when the retriever has one) and ``known_user = False``.

Examples:
    >>> retriever = CandidateRetriever(model.query_tower, model.index, seen,
    ...                                catalog_ids, well_rated_popular(movies))  # doctest: +SKIP
    >>> movie_ids, scores, known = retriever(tf.constant(["42"]), tf.constant(100))  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_pipeline.features.tables import MovieTable
from tfrs_pipeline.retrieval.index import SeenMovies


def well_rated_popular(movies: MovieTable) -> np.ndarray:
    """Catalog positions ordered best first by shrunk mean rating x log(1 + training ratings)."""
    quality = movies.mean_rating[1:] * np.log1p(movies.train_count[1:])
    return np.argsort(-quality, kind="stable")


class CandidateRetriever(tf.Module):
    """Top ``k`` movies for each user, seen movies excluded unless asked otherwise.

    Args:
        query_tower: user ids -> queries (``serve``: unknown users get the mean query) and ``known``.
        index: a brute-force or ScaNN index over the catalog (``__call__`` and ``query_excluding``).
        seen: each training user's rated movies as catalog positions.
        catalog_ids: the catalog's movie ids (a variable shared with the pipeline), for the fallback.
        fallback_positions: catalog positions of the list unknown users get, best first;
            ``None`` keeps the index's answer to the mean query for them.
    """

    def __init__(self, query_tower, index, seen: SeenMovies, catalog_ids: tf.Variable | None = None,
                 fallback_positions: np.ndarray | None = None) -> None:
        super().__init__(name="candidate_retriever")
        self.query_tower = query_tower
        self.index = index
        self.seen = seen
        self.catalog_ids = catalog_ids
        self.fallback_positions = (None if fallback_positions is None else
                                   tf.Variable(np.asarray(fallback_positions, np.int64), trainable=False,
                                               name="fallback_positions"))
        # Each catalog movie's row in the query tower's movie vocabulary (0: a movie without training ratings).
        self.vocab_rows = (None if catalog_ids is None else
                           tf.Variable(query_tower.movie_lookup(catalog_ids), trainable=False, name="vocab_rows"))

    def __call__(self, user_id: tf.Tensor, k: tf.Tensor, exclude_seen: bool = True,
                 also_exclude: tf.Tensor | None = None):
        """Returns ``(movie_ids [batch, k'], scores [batch, k'], known_user [batch])``, ``k' = min(k, catalog)``.

        Past the unseen movies (``k`` above what a user has left) scores are ``-inf``.
        Unknown users' scores, when the popular list answers them, are descending
        placeholders in (-1, 0]. ``also_exclude`` [batch, n] holds catalog positions never to
        return besides the seen movies (-1: nothing).
        """
        return self.search(user_id, k, exclude_seen, also_exclude)[:3]

    def search(self, user_id: tf.Tensor, k: tf.Tensor, exclude_seen: bool = True, also_exclude: tf.Tensor | None = None):
        """As calling the retriever, also returning the queries [batch, dim] and the excluded catalog
        positions (ragged, one row per user; None where nothing is excluded), for a second source of
        candidates to reuse."""
        known = self.query_tower.known(user_id)
        queries = self.query_tower.serve(user_id)
        exclude = self.seen(user_id) if exclude_seen else None
        if also_exclude is not None:
            exclude = self.exclusions(also_exclude, exclude)
        if exclude is not None:
            scores, movie_ids = self.index.query_excluding(queries, exclude, k)
        else:
            scores, movie_ids = self.index(queries, k)
        # Unknown users have no seen movies: only the per-call exclusions change their popular list.
        fallback_exclude = exclude if also_exclude is not None else None
        return (*self._with_fallback(movie_ids, scores, known, fallback_exclude), queries, exclude)

    def history(self, user_id: tf.Tensor, positions: tf.Tensor | None = None) -> tf.RaggedTensor:
        """What each user did: their training movies (none for a visitor, "" or an unknown id) and the
        catalog ``positions`` [batch, n] given with the request (-1: unknown or padding), merged:
        sorted, unique catalog positions, one ragged row per user."""
        seen = self.seen(user_id)
        return seen if positions is None else self.exclusions(positions, seen)

    def from_history(self, user_id: tf.Tensor, history: tf.RaggedTensor, k: tf.Tensor, exclude_seen: bool = True):
        """Top ``k`` from what each user did (:meth:`history`): the query is the query tower's from the
        history (:meth:`~tfrs_pipeline.retrieval.towers.QueryTower.query`); the history's movies are
        never returned unless ``exclude_seen`` is False. A user with an empty history gets the popular list.

        Returns:
            ``(movie_ids, scores [batch, k'], queries [batch, dim])``.
        """
        vocab_rows = tf.gather(self.vocab_rows, tf.cast(history.flat_values, tf.int64))
        queries = self.query_tower.query(user_id, history.with_flat_values(vocab_rows))
        if exclude_seen:
            scores, ids = self.index.query_excluding(queries, history, k)
        else:
            scores, ids = self.index(queries, k)
        ids, scores, _ = self._with_fallback(ids, scores, history.row_lengths() > 0, history if exclude_seen else None)
        return ids, scores, queries

    def exclusions(self, positions: tf.Tensor, seen: tf.RaggedTensor | None = None) -> tf.RaggedTensor:
        """Catalog positions [batch, n] (-1 ignored), merged with ``seen``: sorted, unique, one row per query."""
        stride = tf.constant(2**31, tf.int64)
        positions = tf.cast(positions, tf.int64)
        rows = tf.broadcast_to(tf.range(tf.shape(positions, out_type=tf.int64)[0])[:, None], tf.shape(positions, out_type=tf.int64))
        keys = tf.boolean_mask(rows * stride + positions, positions >= 0)
        if seen is not None:
            keys = tf.concat([keys, seen.value_rowids() * stride + tf.cast(seen.flat_values, tf.int64)], axis=0)
        keys = tf.sort(tf.unique(keys)[0])
        return tf.RaggedTensor.from_value_rowids(keys % stride, keys // stride,
                                                 nrows=tf.shape(positions, out_type=tf.int64)[0])

    def _with_fallback(self, movie_ids, scores, known, exclude: tf.RaggedTensor | None = None):
        """Rows of unknown users replaced by the popular list (skipping ``exclude``)."""
        if self.fallback_positions is None:
            return movie_ids, scores, known
        width, batch = tf.shape(movie_ids)[1], tf.shape(known)[0]
        if exclude is None:
            fallback_ids = tf.tile(tf.gather(self.catalog_ids, self.fallback_positions[:width])[None, :], [batch, 1])
        else:
            # Popular order as scores over the catalog, the excluded movies last.
            count = tf.shape(self.catalog_ids, out_type=tf.int64)[0]
            rank = tf.scatter_nd(self.fallback_positions[:, None], -tf.range(count, dtype=tf.float32), [count])
            ranks = tf.tile(rank[None, :], [batch, 1])
            ranks = tf.tensor_scatter_nd_update(
                ranks, tf.stack([exclude.value_rowids(), exclude.flat_values], axis=1),
                tf.fill(tf.shape(exclude.flat_values), tf.constant(-np.inf)))
            ranked, order = tf.math.top_k(ranks, k=width)
            fallback_ids = tf.gather(self.catalog_ids, order)
        fallback_scores = tf.tile(-tf.cast(tf.range(width), tf.float32)[None, :] / tf.cast(width, tf.float32), [batch, 1])
        if exclude is not None:  # past the movies left, the excluded ones: empty slots
            fallback_scores = tf.where(tf.math.is_finite(ranked), fallback_scores, tf.constant(-np.inf))
        movie_ids = tf.where(known[:, None], movie_ids, fallback_ids)
        scores = tf.where(known[:, None], scores, fallback_scores)
        return movie_ids, scores, known
