"""The two stages as one servable module: retrieve candidates, rank them, return the top k with titles.

Signatures (all inputs and outputs named; ``k`` is a tensor, so any ``k`` works after loading):

* ``serving_default(user_id[batch], k)`` -> ``movie_ids``, ``titles``, ``scores``,
  ``predicted_ratings``, ``retrieval_scores`` [batch, k], ``known_user`` [batch]. Retrieves
  ``num_candidates`` movies the user has not rated and returns the ``k`` the list ranker
  scores highest (``scores``), best first, each with its predicted rating. A model
  trained without the list ranker keeps ``k`` by the rating blend
  (:mod:`~tfrs_pipeline.ranking.blend`) and shows them by predicted rating.
* ``recommend_including_seen(user_id, k)``: as ``serving_default``, seen movies allowed.
* ``recommend_excluding(user_id[batch], exclude_movie_ids[batch, n], k)``: as
  ``serving_default``, and never the movies in ``exclude_movie_ids`` (out of stock, already
  shown; "" pads shorter rows).
* ``recommend_from_history(movie_ids[batch, n], k)`` -> ``movie_ids``, ``titles``, ``scores``,
  ``predicted_ratings``, ``retrieval_scores`` [batch, k], ``history_known`` [batch]: for a
  visitor the model never saw, from the movies they just rated or watched ("" pads): the
  query tower pools those movies' history embeddings (with the mean training user's id
  embedding), the index retrieves unseen movies, best retrieval score first.
  ``history_known`` counts the movies the model knows; with none, the popular list.
* ``retrieve(user_id, k)`` -> ``movie_ids``, ``titles``, ``retrieval_scores``, ``known_user``.
* ``rank(user_id[batch], movie_ids[batch, n])`` -> ``predicted_ratings`` [batch, n],
  ``known_user``, ``known_movie`` [batch, n].
* ``similar_movies(movie_id[batch], k)`` -> ``movie_ids``, ``titles``, ``scores``, ``known_movie``.
* ``explain(user_id[batch], movie_id[batch], k)`` -> the ``k`` movies the user rated that
  contribute most to ``movie_id``'s item-item score in the list ranker (``movie_ids``,
  ``titles``, ``contributions``) and their ``shares`` of the positive total, ``known_user``,
  ``known_movie``. Without a list ranker, contributions are embedding cosines.

On implicit feedback (a data set without ratings) ``predicted_ratings`` are relevance
scores: the ranking stage's probability (0 to 1) that the user interacts with the movie;
the exported variable ``implicit`` is then True.

A user unknown to the model gets well-rated popular movies (ranked for an average
user) and ``known_user = False``; a movie id not in the catalog gets popular movies in
``similar_movies`` and ``known_movie = False``. Nothing crashes on unknown ids.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_pipeline.export.specs import EXCLUDE_MOVIE_IDS, MOVIE_ID_LISTS, MOVIE_IDS, USER_IDS, K, signature
from tfrs_pipeline.features.tables import MovieTable
from tfrs_pipeline.features.vocabulary import id_lookup
from tfrs_pipeline.ranking.blend import blend_top_k, rank_candidates
from tfrs_pipeline.retrieval.candidates import CandidateRetriever

_NEG_INF = -np.inf


class TwoStagePipeline(tf.Module):
    """Candidate retrieval + ranking model + catalog, exported together.

    Args:
        retriever: the candidate retriever (with the popular fallback for unknown users).
        ranking: the trained rating model.
        movies: the catalog, in the index's row order.
        movie_embeddings: candidate-tower embeddings of the catalog [movies, dim] (for ``similar_movies``).
        num_candidates: movies retrieved per user before ranking.
        logit_scale: retrieval score -> logit factor of the blend.
        rating_weight: ``w`` of the blend (chosen on validation at training).
        list_ranker: the list ranker that orders the candidates (None: the rating blend does).
    """

    def __init__(self, retriever: CandidateRetriever, ranking, movies: MovieTable, movie_embeddings: tf.Tensor,
                 num_candidates: int, logit_scale: float, rating_weight: float = 1.0, list_ranker=None) -> None:
        super().__init__(name="two_stage_pipeline")
        self.retriever = retriever
        self.ranking = ranking
        self.list_ranker = list_ranker
        self.num_candidates = tf.constant(int(min(num_candidates, len(movies.movie_ids))), tf.int32)
        self.rating_weight = tf.Variable(float(rating_weight), trainable=False, name="rating_weight")
        self.logit_scale = tf.Variable(float(logit_scale), trainable=False, name="logit_scale")
        # True: predicted_ratings are relevance probabilities (the model was trained on implicit feedback).
        self.implicit = tf.Variable(bool(getattr(ranking, "implicit", False)), trainable=False, name="implicit")
        self.catalog_lookup = id_lookup(movies.movie_ids, "catalog_ids")
        self.catalog_ids = retriever.catalog_ids
        self.titles = tf.Variable(movies.titles[1:].astype(str), trainable=False, name="titles")
        # Similarity by direction alone: the bias column (if any) is popularity, not taste.
        self.movie_embeddings = tf.Variable(tf.math.l2_normalize(movie_embeddings, axis=1), trainable=False,
                                            name="normalized_movie_embeddings")

    def _titles(self, movie_ids: tf.Tensor) -> tf.Tensor:
        positions = self.catalog_lookup(movie_ids) - 1
        return tf.where(positions >= 0, tf.gather(self.titles, tf.maximum(positions, 0)), "")

    def _positions(self, movie_ids: tf.Tensor) -> tf.Tensor:
        """Catalog positions of movie ids (-1 for unknown ids and "" padding)."""
        return self.catalog_lookup(movie_ids) - 1

    def _two_stage(self, user_id, k, exclude_seen: bool, also_exclude=None):
        movie_ids, retrieval_scores, known, queries, exclude = self.retriever.search(
            user_id, self.num_candidates, exclude_seen, also_exclude)
        k = tf.minimum(k, tf.shape(movie_ids)[1])  # at most num_candidates, with or without added candidates
        if self.list_ranker is not None:
            retrieved = None
            if self.list_ranker.item_candidates:
                # The item-item model's best movies that retrieval did not return (nor the excluded ones).
                movie_ids, retrieval_scores, retrieved = self.list_ranker.add_item_item_candidates(
                    user_id, queries, movie_ids, retrieval_scores, exclude)
            scores, predicted = self.list_ranker.score(user_id, movie_ids, retrieval_scores, retrieved=retrieved)
            # Unknown users keep the well-rated popular order the retriever gave them (added slots are empty for them).
            scores = tf.where(known[:, None], scores, retrieval_scores)
            _, order = tf.math.top_k(scores, k=k)
        else:
            predicted = rank_candidates(self.ranking, user_id, movie_ids)
            scores = retrieval_scores * self.logit_scale + self.rating_weight * predicted
            order = blend_top_k(retrieval_scores, predicted, self.logit_scale, self.rating_weight, k)
        top_ids = tf.gather(movie_ids, order, batch_dims=1)
        return {
            "movie_ids": top_ids,
            "titles": self._titles(top_ids),
            "scores": tf.gather(scores, order, batch_dims=1),
            "predicted_ratings": tf.gather(predicted, order, batch_dims=1),
            "retrieval_scores": tf.gather(retrieval_scores, order, batch_dims=1),
            "known_user": known,
        }

    @signature(USER_IDS, K)
    def serve(self, user_id, k):
        return self._two_stage(user_id, k, exclude_seen=True)

    @signature(USER_IDS, K)
    def serve_including_seen(self, user_id, k):
        return self._two_stage(user_id, k, exclude_seen=False)

    @signature(USER_IDS, EXCLUDE_MOVIE_IDS, K)
    def serve_excluding(self, user_id, exclude_movie_ids, k):
        return self._two_stage(user_id, k, exclude_seen=True, also_exclude=self._positions(exclude_movie_ids))

    @signature(MOVIE_ID_LISTS, K)
    def recommend_from_history(self, movie_ids, k):
        positions = self._positions(movie_ids)
        candidates, retrieval_scores, history_known = self.retriever.from_history(movie_ids, positions,
                                                                                  self.num_candidates)
        visitors = tf.fill(tf.shape(movie_ids)[:1], "")  # no user id: the ranking stage's unknown user
        predicted = rank_candidates(self.ranking, visitors, candidates)
        _, order = tf.math.top_k(retrieval_scores, k=tf.minimum(k, tf.shape(retrieval_scores)[1]))
        top_ids = tf.gather(candidates, order, batch_dims=1)
        top_scores = tf.gather(retrieval_scores, order, batch_dims=1)
        return {
            "movie_ids": top_ids,
            "titles": self._titles(top_ids),
            "scores": top_scores,
            "predicted_ratings": tf.gather(predicted, order, batch_dims=1),
            "retrieval_scores": top_scores,
            "history_known": history_known,
        }

    @signature(USER_IDS, K)
    def retrieve(self, user_id, k):
        movie_ids, scores, known = self.retriever(user_id, k)
        return {"movie_ids": movie_ids, "titles": self._titles(movie_ids), "retrieval_scores": scores,
                "known_user": known}

    @signature(USER_IDS, MOVIE_ID_LISTS)
    def rank(self, user_id, movie_ids):
        return {
            "predicted_ratings": rank_candidates(self.ranking, user_id, movie_ids),
            "known_user": self.retriever.query_tower.known(user_id),
            "known_movie": self.catalog_lookup(movie_ids) > 0,
        }

    @signature(MOVIE_IDS, K)
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
        popular = tf.scatter_nd(self.retriever.fallback_positions[:, None],
                                1.0 - tf.cast(tf.range(count), tf.float32) / tf.cast(count, tf.float32),
                                [tf.cast(count, tf.int64)])
        scores = tf.where(known[:, None], scores, popular[None, :] - 1.0)
        top_scores, order = tf.math.top_k(scores, k=tf.minimum(k, count - 1))
        movie_ids = tf.gather(self.catalog_ids, order)
        return {"movie_ids": movie_ids, "titles": self._titles(movie_ids), "scores": top_scores, "known_movie": known}

    def _history_contributions(self, user_id, movie_id):
        """(catalog positions of each user's rated movies, their contribution to ``movie_id``), ragged rows."""
        if self.list_ranker is not None:
            # Exact: the terms of the ranker's item-item score for (user, movie).
            rows, weights = self.list_ranker.contributions(user_id, movie_id)
            return rows - 1, weights
        # Without a ranker: cosine of the candidate-tower embeddings (the similar_movies space).
        history = self.retriever.seen(user_id)
        target = tf.gather(self.movie_embeddings, tf.maximum(self.catalog_lookup(movie_id) - 1, 0))
        similarity = tf.reduce_sum(tf.gather(self.movie_embeddings, history.flat_values)
                                   * tf.gather(target, history.value_rowids()), axis=1)
        return history, tf.RaggedTensor.from_row_splits(similarity, history.row_splits)

    @signature(USER_IDS, MOVIE_IDS, K)
    def explain(self, user_id, movie_id, k):
        """The user's rated movies that contribute most to ``movie_id``, with their shares of the positive total."""
        positions, contributions = self._history_contributions(user_id, movie_id)
        total = tf.reduce_sum(tf.nn.relu(contributions), axis=1)
        dense = contributions.to_tensor(default_value=_NEG_INF)
        top, order = tf.math.top_k(dense, k=tf.minimum(k, tf.shape(dense)[1]))
        found = top > 0  # a rated movie with no positive weight to this one explains nothing
        rated = tf.gather(positions.to_tensor(default_value=0), order, batch_dims=1)
        movie_ids = tf.where(found, tf.gather(self.catalog_ids, tf.maximum(rated, 0)), "")
        return {
            "movie_ids": movie_ids,
            "titles": self._titles(movie_ids),
            "contributions": tf.where(found, top, 0.0),
            "shares": tf.where(found, top / tf.maximum(total, 1e-12)[:, None], 0.0),
            "known_user": self.retriever.query_tower.known(user_id),
            "known_movie": self.catalog_lookup(movie_id) > 0,
        }

    def signatures(self) -> dict:
        return {"serving_default": self.serve, "recommend_including_seen": self.serve_including_seen,
                "recommend_excluding": self.serve_excluding, "recommend_from_history": self.recommend_from_history,
                "retrieve": self.retrieve, "rank": self.rank, "similar_movies": self.similar_movies,
                "explain": self.explain}
