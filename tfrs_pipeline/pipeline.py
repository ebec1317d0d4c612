"""The two stages as one servable module: retrieve candidates, rank them, return the top k with titles.

Signatures (all inputs and outputs named; ``k`` is a tensor, so any ``k`` works after loading):

* ``serving_default(user_id[batch], k)`` -> ``movie_ids``, ``titles``, ``predicted_ratings``,
  ``retrieval_scores`` [batch, k], ``known_user`` [batch]. Retrieves ``num_candidates``
  movies the user has not rated, ranks them by predicted rating, keeps the top ``k``.
* ``recommend_including_seen(user_id, k)``: as ``serving_default``, seen movies allowed.
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


def retrieval_logit_scale(retrieval: RetrievalModel) -> float:
    """What turns retrieval scores into the logits the retrieval loss was trained on."""
    config = retrieval.config
    return 1.0 / config.temperature if config.normalize else 1.0


def choose_rating_weight(retrieval: RetrievalModel, ranking: RankingModel, prepared, num_candidates: int,
                         k: int = 10, weights=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1e4)) -> tuple[float, dict]:
    """The rating weight with the best validation recall@k (ties: the larger weight, more rating-led).

    Candidates come from the retrieval model with each user's fitting-part movies
    excluded; the validation hold-out supplies the relevant movies. Weight 0 keeps
    retrieval's own order, so the chosen weight is never worse than retrieval alone on
    validation; 1e4 is a pure sort by predicted rating.

    Returns:
        The weight, and validation recall@k for every weight tried.
    """
    from tfrs_pipeline.evaluation import recall_and_ndcg, users_of
    from tfrs_pipeline.index import SeenMovies

    validation = prepared.validation
    if len(validation) == 0:
        return 1.0, {}
    users = users_of(validation)
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, prepared.train)
    recall = {}
    logits, ids, ratings = [], [], []
    for start in range(0, len(users), 1024):
        batch = tf.constant(users[start : start + 1024].astype(str))
        scores, movie_ids = retrieval.index.query_excluding(retrieval.query_tower.serve(batch), seen(batch),
                                                            min(num_candidates, retrieval.index.num_candidates))
        width = tf.shape(movie_ids)[1]
        predicted = ranking({"user_id": tf.reshape(tf.repeat(batch[:, None], width, axis=1), [-1]),
                             "movie_id": tf.reshape(movie_ids, [-1])})
        logits.append(scores.numpy() * retrieval_logit_scale(retrieval))
        ids.append(movie_ids.numpy())
        ratings.append(tf.reshape(predicted, tf.shape(movie_ids)).numpy())
    logits, ids, ratings = np.concatenate(logits), np.concatenate(ids), np.concatenate(ratings)
    for weight in weights:
        order = np.argsort(-(logits + weight * ratings), axis=1, kind="stable")[:, :k]
        recall[weight] = recall_and_ndcg(users, np.take_along_axis(ids, order, axis=1), validation, ks=(k,))[f"recall_at_{k}"]
    best = max(recall.values())
    return max(w for w, r in recall.items() if r >= best), recall


class TwoStagePipeline(tf.Module):
    """Retrieval model + ranking model + catalog, exported together.

    Args:
        retrieval: the trained retrieval model (its index already built over the catalog).
        ranking: the trained ranking model.
        movies: the catalog, in the index's row order.
        seen: each training user's rated movies (excluded from recommendations).
        num_candidates: movies retrieved per user before ranking.
        rating_weight: which ``k`` of the candidates are kept: the highest
            ``retrieval logit + rating_weight * predicted rating`` (see
            :func:`choose_rating_weight`); the kept ``k`` are then sorted by predicted rating.
        index: the index to serve with (default: the retrieval model's brute-force index;
            see :func:`tfrs_pipeline.index.serving_index` for ScaNN).
    """

    def __init__(self, retrieval: RetrievalModel, ranking: RankingModel, movies: MovieTable, seen: SeenMovies,
                 num_candidates: int, rating_weight: float = 1.0, index=None) -> None:
        super().__init__(name="two_stage_pipeline")
        self.query_tower = retrieval.query_tower
        self.index = index if index is not None else retrieval.index
        self.ranking = ranking
        self.seen = seen
        self.num_candidates = tf.constant(int(min(num_candidates, len(movies.movie_ids))), tf.int32)
        self.rating_weight = tf.Variable(float(rating_weight), trainable=False, name="rating_weight")
        self.logit_scale = tf.Variable(retrieval_logit_scale(retrieval), trainable=False, name="logit_scale")
        self.catalog_lookup = tf.keras.layers.StringLookup(vocabulary=list(movies.movie_ids), num_oov_indices=1)
        self.catalog_ids = tf.Variable(movies.movie_ids.astype(str), trainable=False, name="catalog_ids")
        self.titles = tf.Variable(movies.titles[1:].astype(str), trainable=False, name="titles")
        # Similarity by direction alone: the bias column (if any) is popularity, not taste.
        embeddings = tf.math.l2_normalize(retrieval.candidate_embeddings()[:, : retrieval.config.embedding_dim], axis=1)
        self.movie_embeddings = tf.Variable(embeddings, trainable=False, name="normalized_movie_embeddings")
        fallback = well_rated_popular(movies)
        self.fallback_positions = tf.Variable(fallback.astype(np.int64), trainable=False, name="fallback_positions")

    # -- building blocks -----------------------------------------------------------------------

    def _titles(self, movie_ids: tf.Tensor) -> tf.Tensor:
        positions = self.catalog_lookup(movie_ids) - 1
        return tf.where(positions >= 0, tf.gather(self.titles, tf.maximum(positions, 0)), "")

    def _retrieve(self, user_id: tf.Tensor, k: tf.Tensor, exclude_seen: bool = True):
        """Top ``k`` movies per user (unseen ones unless ``exclude_seen`` is False); unknown users get the well-rated popular list."""
        known = self.query_tower.known(user_id)
        queries = self.query_tower.serve(user_id)
        if exclude_seen:
            scores, movie_ids = self.index.query_excluding(queries, self.seen(user_id), k)
        else:
            scores, movie_ids = self.index(queries, k)
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

    def _two_stage(self, user_id, k, exclude_seen: bool):
        movie_ids, retrieval_scores, known = self._retrieve(user_id, self.num_candidates, exclude_seen)
        predicted = self._rank(user_id, movie_ids)
        # Keep the k best by retrieval logit + weight * rating (-inf scores, past the unseen movies, stay last) ...
        blended = retrieval_scores * self.logit_scale + self.rating_weight * predicted
        _, kept = tf.math.top_k(blended, k=tf.minimum(k, tf.shape(predicted)[1]))
        kept_ratings = tf.gather(predicted, kept, batch_dims=1)
        kept_ratings = tf.where(tf.math.is_inf(tf.gather(retrieval_scores, kept, batch_dims=1)), -np.inf, kept_ratings)
        # ... and show them sorted by predicted rating.
        top_ratings, order = tf.math.top_k(kept_ratings, k=tf.shape(kept)[1])
        order = tf.gather(kept, order, batch_dims=1)
        top_ratings = tf.gather(predicted, order, batch_dims=1)
        top_ids = tf.gather(movie_ids, order, batch_dims=1)
        return {
            "movie_ids": top_ids,
            "titles": self._titles(top_ids),
            "predicted_ratings": top_ratings,
            "retrieval_scores": tf.gather(retrieval_scores, order, batch_dims=1),
            "known_user": known,
        }

    @tf.function(input_signature=[USER_IDS, K])
    def serve(self, user_id, k):
        return self._two_stage(user_id, k, exclude_seen=True)

    @tf.function(input_signature=[USER_IDS, K])
    def serve_including_seen(self, user_id, k):
        return self._two_stage(user_id, k, exclude_seen=False)

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
        return {"serving_default": self.serve, "recommend_including_seen": self.serve_including_seen,
                "retrieve": self.retrieve, "rank": self.rank, "similar_movies": self.similar_movies}
