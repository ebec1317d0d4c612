"""The two stages as one servable module: retrieve candidates, rank them, return the top k with titles.

Signatures (all inputs and outputs named; ``k`` is a tensor, so any ``k`` works after loading):

* ``serving_default(user_id[batch], k)`` -> ``movie_ids``, ``titles``, ``predicted_ratings``,
  ``retrieval_scores`` [batch, k], ``known_user`` [batch]. Retrieves ``num_candidates``
  movies the user has not rated, ranks them by predicted rating, keeps the top ``k``.
* ``retrieve(user_id, k)`` -> ``movie_ids``, ``titles``, ``retrieval_scores``, ``known_user``.
* ``rank(user_id[batch], movie_ids[batch, n])`` -> ``predicted_ratings`` [batch, n],
  ``known_user``, ``known_movie`` [batch, n].
* ``similar_movies(movie_id[batch], k)`` -> ``movie_ids``, ``titles``, ``scores``, ``known_movie``.

A user unknown to the model gets well-rated popular movies (ranked for an average
user) and ``known_user = False``; a movie id not in the catalog gets popular movies in
``similar_movies`` and ``known_movie = False``. Nothing crashes on unknown ids.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_pipeline.export import MOVIE_IDS, USER_IDS, K
from tfrs_pipeline.features import MovieTable
from tfrs_pipeline.index import SeenMovies
from tfrs_pipeline.ranking import RankingModel
from tfrs_pipeline.retrieval import RetrievalModel


def well_rated_popular(movies: MovieTable) -> np.ndarray:
    """Catalog positions ordered best first by shrunk mean rating x log(1 + training ratings)."""
    quality = movies.mean_rating[1:] * np.log1p(movies.train_count[1:])
    return np.argsort(-quality, kind="stable")


class TwoStagePipeline(tf.Module):
    """Retrieval model + ranking model + catalog, exported together.

    Args:
        retrieval: the trained retrieval model (its index already built over the catalog).
        ranking: the trained ranking model.
        movies: the catalog, in the index's row order.
        seen: each training user's rated movies (excluded from recommendations).
        num_candidates: movies retrieved per user before ranking.
    """

    def __init__(self, retrieval: RetrievalModel, ranking: RankingModel, movies: MovieTable, seen: SeenMovies,
                 num_candidates: int) -> None:
        super().__init__(name="two_stage_pipeline")
        self.query_tower = retrieval.query_tower
        self.index = retrieval.index
        self.ranking = ranking
        self.seen = seen
        self.num_candidates = tf.constant(int(min(num_candidates, len(movies.movie_ids))), tf.int32)
        self.catalog_lookup = tf.keras.layers.StringLookup(vocabulary=list(movies.movie_ids), num_oov_indices=1)
        self.catalog_ids = tf.Variable(movies.movie_ids.astype(str), trainable=False, name="catalog_ids")
        self.titles = tf.Variable(movies.titles[1:].astype(str), trainable=False, name="titles")
        embeddings = tf.math.l2_normalize(retrieval.candidate_embeddings(), axis=1)
        self.movie_embeddings = tf.Variable(embeddings, trainable=False, name="normalized_movie_embeddings")
        fallback = well_rated_popular(movies)
        self.fallback_positions = tf.Variable(fallback.astype(np.int64), trainable=False, name="fallback_positions")

    # -- building blocks -----------------------------------------------------------------------

    def _titles(self, movie_ids: tf.Tensor) -> tf.Tensor:
        positions = self.catalog_lookup(movie_ids) - 1
        return tf.where(positions >= 0, tf.gather(self.titles, tf.maximum(positions, 0)), "")

    def _retrieve(self, user_id: tf.Tensor, k: tf.Tensor):
        """Top ``k`` unseen movies per user; unknown users get the well-rated popular list."""
        known = self.query_tower.known(user_id)
        scores, movie_ids = self.index.query_excluding(self.query_tower.serve(user_id), self.seen(user_id), k)
        width = tf.shape(movie_ids)[1]
        fallback = tf.gather(self.catalog_ids, self.fallback_positions[:width])
        fallback_ids = tf.tile(fallback[None, :], [tf.shape(user_id)[0], 1])
        # Popular-list scores: descending placeholders, so the order is visible to callers.
        fallback_scores = tf.tile(-tf.cast(tf.range(width), tf.float32)[None, :] / tf.cast(width, tf.float32),
                                  [tf.shape(user_id)[0], 1])
        movie_ids = tf.where(known[:, None], movie_ids, fallback_ids)
        scores = tf.where(known[:, None], scores, fallback_scores)
        return movie_ids, scores, known

    def _rank(self, user_id: tf.Tensor, movie_ids: tf.Tensor) -> tf.Tensor:
        batch, width = tf.shape(movie_ids)[0], tf.shape(movie_ids)[1]
        users = tf.reshape(tf.repeat(user_id[:, None], width, axis=1), [-1])
        predictions = self.ranking({"user_id": users, "movie_id": tf.reshape(movie_ids, [-1])})
        return tf.reshape(predictions, [batch, width])

    # -- signatures ----------------------------------------------------------------------------

    @tf.function(input_signature=[USER_IDS, K])
    def serve(self, user_id, k):
        movie_ids, retrieval_scores, known = self._retrieve(user_id, self.num_candidates)
        predicted = self._rank(user_id, movie_ids)
        # Movies past the unseen ones (score -inf) must stay last.
        predicted = tf.where(tf.math.is_inf(retrieval_scores), tf.fill(tf.shape(predicted), -np.inf), predicted)
        top_ratings, order = tf.math.top_k(predicted, k=tf.minimum(k, tf.shape(predicted)[1]))
        top_ids = tf.gather(movie_ids, order, batch_dims=1)
        return {
            "movie_ids": top_ids,
            "titles": self._titles(top_ids),
            "predicted_ratings": top_ratings,
            "retrieval_scores": tf.gather(retrieval_scores, order, batch_dims=1),
            "known_user": known,
        }

    @tf.function(input_signature=[USER_IDS, K])
    def retrieve(self, user_id, k):
        movie_ids, scores, known = self._retrieve(user_id, k)
        return {"movie_ids": movie_ids, "titles": self._titles(movie_ids), "retrieval_scores": scores,
                "known_user": known}

    @tf.function(input_signature=[USER_IDS, tf.TensorSpec([None, None], tf.string, name="movie_ids")])
    def rank(self, user_id, movie_ids):
        return {
            "predicted_ratings": self._rank(user_id, movie_ids),
            "known_user": self.query_tower.known(user_id),
            "known_movie": self.catalog_lookup(movie_ids) > 0,
        }

    @tf.function(input_signature=[MOVIE_IDS, K])
    def similar_movies(self, movie_id, k):
        positions = self.catalog_lookup(movie_id) - 1
        known = positions >= 0
        query = tf.gather(self.movie_embeddings, tf.maximum(positions, 0))
        scores = tf.matmul(query, self.movie_embeddings, transpose_b=True)
        count = tf.shape(scores)[1]
        # Never the movie itself.
        scores = tf.where(tf.one_hot(tf.maximum(positions, 0), count, on_value=True, off_value=False),
                          tf.constant(-np.inf, tf.float32), scores)
        # Unknown movies: the well-rated popular list, in its order.
        popular = tf.scatter_nd(self.fallback_positions[:, None],
                                1.0 - tf.cast(tf.range(count), tf.float32) / tf.cast(count, tf.float32),
                                [tf.cast(count, tf.int64)])
        scores = tf.where(known[:, None], scores, popular[None, :] - 1.0)
        top_scores, order = tf.math.top_k(scores, k=tf.minimum(k, count - 1))
        movie_ids = tf.gather(self.catalog_ids, order)
        return {"movie_ids": movie_ids, "titles": self._titles(movie_ids), "scores": top_scores, "known_movie": known}

    def signatures(self) -> dict:
        return {"serving_default": self.serve, "retrieve": self.retrieve, "rank": self.rank,
                "similar_movies": self.similar_movies}
