"""Candidate retrieval as every signature does it: query tower -> index -> seen movies excluded.

:class:`CandidateRetriever` is the one implementation behind the pipeline's
``serving_default``, ``retrieve`` and ``recommend_including_seen``, the index stage, and
the validation lists the two-stage weight is chosen on. Users unknown to the model get
the well-rated popular list (when the retriever has one) and ``known_user = False``.

Example:
    >>> retriever = CandidateRetriever(model.query_tower, model.index, seen,
    ...                                catalog_ids, well_rated_popular(movies))  # doctest: +SKIP
    >>> movie_ids, scores, known = retriever(tf.constant(["42"]), tf.constant(100))  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_pipeline.features import MovieTable
from tfrs_pipeline.index import SeenMovies


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

    def __call__(self, user_id: tf.Tensor, k: tf.Tensor, exclude_seen: bool = True):
        """Returns ``(movie_ids [batch, k'], scores [batch, k'], known_user [batch])``, ``k' = min(k, catalog)``.

        Past the unseen movies (``k`` above what a user has left) scores are ``-inf``.
        Unknown users' scores, when the popular list answers them, are descending
        placeholders in (-1, 0].
        """
        known = self.query_tower.known(user_id)
        queries = self.query_tower.serve(user_id)
        if exclude_seen:
            scores, movie_ids = self.index.query_excluding(queries, self.seen(user_id), k)
        else:
            scores, movie_ids = self.index(queries, k)
        if self.fallback_positions is None:
            return movie_ids, scores, known
        width, batch = tf.shape(movie_ids)[1], tf.shape(user_id)[0]
        fallback_ids = tf.tile(tf.gather(self.catalog_ids, self.fallback_positions[:width])[None, :], [batch, 1])
        fallback_scores = tf.tile(-tf.cast(tf.range(width), tf.float32)[None, :] / tf.cast(width, tf.float32), [batch, 1])
        movie_ids = tf.where(known[:, None], movie_ids, fallback_ids)
        scores = tf.where(known[:, None], scores, fallback_scores)
        return movie_ids, scores, known
