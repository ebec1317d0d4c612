"""The two stages as one servable module: retrieve candidates, rank them, return the top k with titles.

Every list is made from what the user did, through one path (:meth:`TwoStagePipeline.recommend`):
the user's history is their training movies (none for a visitor) merged with the movies a
request brings; the query tower pools that history into the retrieval query, the item-item
model scores the catalog from it, the list ranker's features are computed from it, and its
movies are excluded. A visitor who sends a known user's training history gets that user's list,
and a movie rated after training changes the list as soon as a request brings it.

Signatures (all inputs and outputs named; ``k`` is a tensor, so any ``k`` works after loading):

* ``serving_default(user_id[batch], k)`` -> ``movie_ids``, ``titles``, ``scores``,
  ``predicted_ratings``, ``retrieval_scores`` [batch, k], ``known_user`` [batch]. Retrieves
  ``num_candidates`` movies the user has not rated, adds the item-item model's best ones, and
  returns the ``k`` the list ranker scores highest (``scores``), best first, each with its
  predicted rating. A model trained without the list ranker keeps ``k`` by the rating blend
  (:mod:`~tfrs_pipeline.ranking.blend`) and shows them by predicted rating. Slots past the
  movies there are hold "" and a score of ``-inf``.
* ``recommend_including_seen(user_id, k)``: as ``serving_default``, seen movies allowed.
* ``recommend_excluding(user_id[batch], exclude_movie_ids[batch, n], k)``: as
  ``serving_default``, without the movies in ``exclude_movie_ids`` (out of stock, already
  shown; "" pads shorter rows); the other movies keep the order ``serving_default`` gives them.
* ``recommend_with_history(user_id[batch], movie_ids[batch, n], exclude_movie_ids[batch, m], k)``:
  the general form. ``movie_ids`` are movies the user rated or watched since training (or, for a
  visitor, ``user_id`` "", all they did), added to their history and excluded; outputs as
  ``serving_default`` plus ``history_known`` [batch], the known movies of the merged history.
* ``recommend_from_history(movie_ids[batch, n], k)`` -> as ``recommend_with_history`` for visitors
  the model never saw, with ``history_known``; with no known movie, the popular list.
* ``retrieve(user_id, k)`` -> ``movie_ids``, ``titles``, ``retrieval_scores``, ``known_user``.
* ``predict_ratings(user_id[batch], movie_ids[batch, n])`` -> ``predicted_ratings`` [batch, n] in the
  order given, ``known_user``, ``known_movie`` [batch, n]. ``rank`` is its name before this release,
  kept for one release.
* ``similar_movies(movie_id[batch], k)`` -> ``movie_ids``, ``titles``, ``scores``, ``known_movie``.
* ``rated_movies(user_id[batch], k)`` -> ``movie_ids``, ``titles``, ``ratings`` [batch, at most
  min(k, 10)]: the user's highest-rated training movies, best first ("" past what they rated),
  and ``known_user``; what a page shows beside the recommendations.
* ``explain(user_id[batch], movie_id[batch], k)`` -> the ``k`` movies the user rated that
  contribute most to ``movie_id``'s item-item score in the list ranker (``movie_ids``,
  ``titles``, ``contributions``) and their ``shares`` of the positive total, ``known_user``,
  ``known_movie``. Without a list ranker, contributions are embedding cosines.

On implicit feedback (a data set without ratings) ``predicted_ratings`` are relevance
scores: the ranking stage's probability (0 to 1) that the user interacts with the movie;
the exported variable ``implicit`` is then True.

A user with no history (an unknown id and no movies) gets well-rated popular movies (ranked
for an average user) and ``known_user = False``; a movie id not in the catalog gets popular
movies in ``similar_movies`` and ``known_movie = False``. Nothing crashes on unknown ids.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_pipeline import signatures as signature_names
from tfrs_pipeline.export.specs import EXCLUDE_MOVIE_IDS, MOVIE_ID_LISTS, MOVIE_IDS, USER_IDS, K, signature
from tfrs_pipeline.export.top_rated import TopRatedMovies
from tfrs_pipeline.features.tables import MovieTable
from tfrs_pipeline.features.vocabulary import id_lookup
from tfrs_pipeline.ranking.blend import blend_top_k, rate_candidates
from tfrs_pipeline.retrieval.candidates import CandidateRetriever

_NEG_INF = -np.inf


class TwoStagePipeline(tf.Module):
    """Candidate retrieval + rating model + list ranker + catalog, exported together.

    Args:
        retriever: the candidate retriever (with the popular fallback for unknown users).
        rating_model: the trained rating model.
        movies: the catalog, in the index's row order.
        movie_embeddings: candidate-tower embeddings of the catalog [movies, dim] (for ``similar_movies``).
        num_candidates: movies retrieved per user before ranking.
        logit_scale: retrieval score -> logit factor of the blend.
        rating_weight: ``w`` of the blend (chosen on validation at training).
        list_ranker: the list ranker that orders the candidates (None: the rating blend does).
        top_rated: each training user's highest-rated movies (None: no ``rated_movies`` signature).
    """

    def __init__(self, retriever: CandidateRetriever, rating_model, movies: MovieTable, movie_embeddings: tf.Tensor,
                 num_candidates: int, logit_scale: float, rating_weight: float = 1.0, list_ranker=None,
                 top_rated: TopRatedMovies | None = None) -> None:
        super().__init__(name="two_stage_pipeline")
        self.retriever = retriever
        self.top_rated = top_rated
        self.rating_model = rating_model
        self.list_ranker = list_ranker
        self.num_candidates = tf.constant(int(min(num_candidates, len(movies.movie_ids))), tf.int32)
        self.rating_weight = tf.Variable(float(rating_weight), trainable=False, name="rating_weight")
        self.logit_scale = tf.Variable(float(logit_scale), trainable=False, name="logit_scale")
        # True: predicted_ratings are relevance probabilities (the model was trained on implicit feedback).
        self.implicit = tf.Variable(bool(getattr(rating_model, "implicit", False)), trainable=False, name="implicit")
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

    def recommend(self, user_id, k, exclude_seen: bool = True, movie_ids=None, exclude_movie_ids=None) -> dict:
        """The two-stage top ``k`` from what each user did: their training movies and ``movie_ids``
        [batch, n] (rated since training, or a visitor's; "" pads), never ``exclude_movie_ids`` [batch, m].

        Per-request exclusions are removed after ranking, so that the other movies keep their order.
        """
        given = None if movie_ids is None else self._positions(movie_ids)
        history = self.retriever.history(user_id, given)  # catalog positions
        rows = history.with_flat_values(tf.cast(history.flat_values, tf.int64) + 1)  # catalog rows
        has_history = history.row_lengths() > 0
        movie_ids, retrieval_scores, queries = self.retriever.from_history(user_id, history, self.num_candidates,
                                                                           exclude_seen)
        k = tf.minimum(k, tf.shape(movie_ids)[1])  # at most num_candidates, with or without added candidates
        vocab_history = rows.with_flat_values(tf.gather(self.retriever.vocab_rows, rows.flat_values - 1))
        if self.list_ranker is not None:
            item_scores = self.list_ranker.item_scores(rows)
            retrieved = None
            if self.list_ranker.item_candidates:
                # The item-item model's best movies that retrieval did not return (nor, unless asked, seen ones).
                movie_ids, retrieval_scores, retrieved = self.list_ranker.add_item_item_candidates(
                    item_scores, queries, movie_ids, retrieval_scores, history if exclude_seen else None)
            scores = self.list_ranker.score(rows, movie_ids, retrieval_scores, retrieved=retrieved,
                                            item_scores=item_scores)
            # An empty history keeps the well-rated popular order the retriever gave it (added slots are empty).
            scores = tf.where(has_history[:, None], scores, retrieval_scores)
            predicted = None  # rated below for the k movies shown only
        else:
            predicted = self.rating_model.rate(user_id, vocab_history, movie_ids)
            scores = tf.where(tf.math.is_finite(retrieval_scores),
                              retrieval_scores * self.logit_scale + self.rating_weight * predicted, -np.inf)
        if exclude_movie_ids is not None:
            excluded = tf.reduce_any(tf.equal(self._positions(movie_ids)[:, :, None],
                                              self._positions(exclude_movie_ids)[:, None, :])
                                     & (self._positions(movie_ids) >= 0)[:, :, None], axis=2)
            scores = tf.where(excluded, tf.constant(-np.inf), scores)
            retrieval_scores = tf.where(excluded, tf.constant(-np.inf), retrieval_scores)  # the blend keeps them last
        if self.list_ranker is not None:
            top, order = tf.math.top_k(scores, k=k)
        else:
            order = blend_top_k(retrieval_scores, predicted, self.logit_scale, self.rating_weight, k)
            top = tf.gather(scores, order, batch_dims=1)
        filled = tf.math.is_finite(top)  # past the movies there are: empty slots, never a seen or excluded movie
        top_ids = tf.where(filled, tf.gather(movie_ids, order, batch_dims=1), "")
        if predicted is None:
            predicted = self.rating_model.rate(user_id, vocab_history, top_ids)
        else:
            predicted = tf.gather(predicted, order, batch_dims=1)
        return {
            "movie_ids": top_ids,
            "titles": self._titles(top_ids),
            "scores": top,
            "predicted_ratings": tf.where(filled, predicted, 0.0),
            "retrieval_scores": tf.where(filled, tf.gather(retrieval_scores, order, batch_dims=1), -np.inf),
            "known_user": self.retriever.query_tower.known(user_id),
            "history_known": tf.cast(history.row_lengths(), tf.int32),
        }

    @staticmethod
    def _without(outputs: dict, name: str) -> dict:
        return {key: value for key, value in outputs.items() if key != name}

    @signature(USER_IDS, K)
    def serve(self, user_id, k):
        return self._without(self.recommend(user_id, k), "history_known")

    @signature(USER_IDS, K)
    def serve_including_seen(self, user_id, k):
        return self._without(self.recommend(user_id, k, exclude_seen=False), "history_known")

    @signature(USER_IDS, EXCLUDE_MOVIE_IDS, K)
    def serve_excluding(self, user_id, exclude_movie_ids, k):
        return self._without(self.recommend(user_id, k, exclude_movie_ids=exclude_movie_ids), "history_known")

    @signature(USER_IDS, MOVIE_ID_LISTS, EXCLUDE_MOVIE_IDS, K)
    def recommend_with_history(self, user_id, movie_ids, exclude_movie_ids, k):
        return self.recommend(user_id, k, movie_ids=movie_ids, exclude_movie_ids=exclude_movie_ids)

    @signature(MOVIE_ID_LISTS, K)
    def recommend_from_history(self, movie_ids, k):
        visitors = tf.fill(tf.shape(movie_ids)[:1], "")
        return self._without(self.recommend(visitors, k, movie_ids=movie_ids), "known_user")

    @signature(USER_IDS, K)
    def retrieve(self, user_id, k):
        movie_ids, scores, known = self.retriever(user_id, k)
        movie_ids = tf.where(tf.math.is_finite(scores), movie_ids, "")  # past the unseen movies: empty slots
        return {"movie_ids": movie_ids, "titles": self._titles(movie_ids), "retrieval_scores": scores,
                "known_user": known}

    @signature(USER_IDS, MOVIE_ID_LISTS)
    def predict_ratings(self, user_id, movie_ids):
        return {
            "predicted_ratings": rate_candidates(self.rating_model, user_id, movie_ids),
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
            history = self.retriever.seen(user_id)
            rows = history.with_flat_values(tf.cast(history.flat_values, tf.int64) + 1)
            return history, self.list_ranker.contributions(rows, movie_id)
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

    @signature(USER_IDS, K)
    def rated_movies(self, user_id, k):
        """The user's highest-rated training movies, best first, with their ratings."""
        positions, ratings = self.top_rated(user_id, k)
        rated = positions >= 0
        movie_ids = tf.where(rated, tf.gather(self.catalog_ids, tf.maximum(positions, 0)), "")
        return {"movie_ids": movie_ids, "titles": self._titles(movie_ids), "ratings": ratings,
                "known_user": self.retriever.query_tower.known(user_id)}

    def signatures(self) -> dict:
        names = signature_names
        return {names.SERVING_DEFAULT: self.serve, names.RECOMMEND_INCLUDING_SEEN: self.serve_including_seen,
                names.RECOMMEND_EXCLUDING: self.serve_excluding, names.RECOMMEND_WITH_HISTORY: self.recommend_with_history,
                names.RECOMMEND_FROM_HISTORY: self.recommend_from_history, names.RETRIEVE: self.retrieve,
                names.PREDICT_RATINGS: self.predict_ratings, names.RANK: self.predict_ratings,  # the former name
                names.SIMILAR_MOVIES: self.similar_movies, names.EXPLAIN: self.explain,
                **({names.RATED_MOVIES: self.rated_movies} if self.top_rated is not None else {})}
