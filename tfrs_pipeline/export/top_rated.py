"""Each training user's highest-rated movies, exported so that a page can show what a user liked.

A person judging a list wants to see it beside what the user rated highest. The table keeps at
most :data:`PER_USER` movies a user (positions in the catalog, best rating first, the most
recent first among equal ratings), so it costs 8 bytes x ``PER_USER`` a user: 11 MB at 138,000
users. On implicit feedback every rating is 1, so the order is the most recent first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline.features.vocabulary import id_lookup
from tfrs_pipeline.ids import id_positions

#: Movies kept per user.
PER_USER = 10


class TopRatedMovies(tf.Module):
    """A user's highest-rated training movies, best first.

    Args:
        user_ids: the training users (the retrieval vocabulary's order).
        catalog_ids: the catalog, in the index's row order.
        train: the training ratings (``user_id``, ``movie_id``, ``rating``, ``timestamp``).
        per_user: movies kept per user.

    Example:
        >>> table = TopRatedMovies(["u1"], np.array(["a", "b", "c"]), pd.DataFrame({"user_id": ["u1"] * 3,
        ...     "movie_id": ["a", "b", "c"], "rating": [3.0, 5.0, 3.0], "timestamp": [1, 2, 3]}))
        >>> positions, ratings = table(tf.constant(["u1", "stranger"]), 2)
        >>> positions.numpy().tolist(), ratings.numpy().tolist()
        ([[1, 2], [-1, -1]], [[5.0, 3.0], [0.0, 0.0]])
    """

    def __init__(self, user_ids: list[str], catalog_ids: np.ndarray, train: pd.DataFrame,
                 per_user: int = PER_USER) -> None:
        super().__init__(name="top_rated_movies")
        users = id_positions(pd.Index(user_ids), train["user_id"])
        movies = id_positions(pd.Index(np.asarray(catalog_ids).astype(str)), train["movie_id"])
        keep = (users >= 0) & (movies >= 0)
        users, movies = users[keep], movies[keep]
        ratings = train["rating"].to_numpy(np.float32)[keep]
        stamps = train["timestamp"].to_numpy(np.int64)[keep]
        order = np.lexsort((-stamps, -ratings, users))  # by user, best rating first, most recent first
        users, movies, ratings = users[order], movies[order], ratings[order]
        rank = np.arange(len(users)) - np.searchsorted(users, users)  # place within the user's row
        kept = rank < per_user
        # Row 0 is the unknown user (the lookup's out-of-vocabulary row): nothing rated.
        positions = np.full((len(user_ids) + 1, per_user), -1, np.int32)
        best = np.zeros((len(user_ids) + 1, per_user), np.float32)
        positions[users[kept] + 1, rank[kept]] = movies[kept]
        best[users[kept] + 1, rank[kept]] = ratings[kept]
        self.user_lookup = id_lookup(list(user_ids), "user_ids")  # the same asset as the other user lookups
        self.positions = tf.Variable(positions, trainable=False, name="positions")
        self.ratings = tf.Variable(best, trainable=False, name="ratings")

    def __call__(self, user_id: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Catalog positions [batch, min(k, per_user)] (-1 past what the user rated) and their ratings."""
        rows = tf.cast(self.user_lookup(user_id), tf.int32)
        k = tf.minimum(k, tf.shape(self.positions)[1])
        return tf.gather(self.positions, rows)[:, :k], tf.gather(self.ratings, rows)[:, :k]
