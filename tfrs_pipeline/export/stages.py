"""Each stage as its own servable module, with a named ``serving_default`` signature.

* :class:`QueryTowerExport`: ``serving_default(user_id) -> {embeddings, known_user}``.
* :class:`CandidateTowerExport`: ``serving_default(movie_id) -> {embeddings, known_movie}``.
* :class:`IndexExport`: ``serving_default(user_id, k)`` (seen movies excluded) and
  ``include_seen(user_id, k)`` -> ``{movie_ids, scores, known_user}``.
* :class:`RankingExport`: ``serving_default(user_id, movie_id) -> {predicted_rating, known_user, known_movie}``
  and, with a list ranker, ``score_candidates(user_id, movie_ids, retrieval_scores) -> {scores, predicted_ratings}``.
"""

from __future__ import annotations

import tensorflow as tf

from tfrs_pipeline.export.specs import MOVIE_ID_LISTS, MOVIE_IDS, USER_IDS, K, signature
from tfrs_pipeline.ranking.blend import rate_candidates
from tfrs_pipeline.retrieval.candidates import CandidateRetriever


class QueryTowerExport(tf.Module):
    """``serving_default(user_id) -> {embeddings, known_user}``; unknown users get the fallback query."""

    def __init__(self, query_tower) -> None:
        super().__init__(name="query_tower")
        self.query_tower = query_tower

    @signature(USER_IDS)
    def serve(self, user_id):
        return {"embeddings": self.query_tower.serve(user_id), "known_user": self.query_tower.known(user_id)}


class CandidateTowerExport(tf.Module):
    """``serving_default(movie_id) -> {embeddings, known_movie}``; cold movies are embedded from their features."""

    def __init__(self, candidate_tower) -> None:
        super().__init__(name="candidate_tower")
        self.candidate_tower = candidate_tower

    @signature(MOVIE_IDS)
    def serve(self, movie_id):
        return {"embeddings": self.candidate_tower(movie_id), "known_movie": self.candidate_tower.known(movie_id)}


class IndexExport(tf.Module):
    """The index behind the query tower (brute force or ScaNN); unknown users are answered for the mean query.

    Signatures:
        ``serving_default(user_id, k)``: top ``k`` movies, the user's training movies excluded.
        ``include_seen(user_id, k)``: top ``k`` movies, nothing excluded.
    Both return ``movie_ids`` [users, k], ``scores`` [users, k] and ``known_user`` [users].
    """

    def __init__(self, retriever: CandidateRetriever) -> None:
        super().__init__(name="index")
        self.retriever = retriever

    def _answer(self, user_id, k, exclude_seen: bool):
        movie_ids, scores, known = self.retriever(user_id, k, exclude_seen=exclude_seen)
        return {"movie_ids": movie_ids, "scores": scores, "known_user": known}

    @signature(USER_IDS, K)
    def serve(self, user_id, k):
        return self._answer(user_id, k, exclude_seen=True)

    @signature(USER_IDS, K)
    def include_seen(self, user_id, k):
        return self._answer(user_id, k, exclude_seen=False)

    def signatures(self) -> dict:
        return {"serving_default": self.serve, "include_seen": self.include_seen}


class RankingExport(tf.Module):
    """The second stage: ``serving_default(user_id, movie_id) -> {predicted_rating, known_user, known_movie}``
    for parallel id vectors, and ``score_candidates`` when a list ranker orders the candidates."""

    def __init__(self, rating_model, list_ranker=None, seen=None) -> None:
        super().__init__(name="ranking")
        self.rating_model = rating_model
        self.list_ranker = list_ranker
        self.seen = seen  # each training user's movies: the history the list ranker scores from
        if list_ranker is not None:
            # Only then: saving traces every function with an input signature, used or not.
            self.score_candidates = signature(USER_IDS, MOVIE_ID_LISTS, tf.TensorSpec(
                [None, None], tf.float32, name="retrieval_scores"))(self._score_candidates)

    def _score_candidates(self, user_id, movie_ids, retrieval_scores):
        history = self.seen(user_id)
        scores = self.list_ranker.score(history.with_flat_values(tf.cast(history.flat_values, tf.int64) + 1), movie_ids,
                                        retrieval_scores)
        return {"scores": scores, "predicted_ratings": rate_candidates(self.rating_model, user_id, movie_ids)}

    def signatures(self) -> dict:
        signatures = {"serving_default": self.serve}
        if self.list_ranker is not None:
            signatures["score_candidates"] = self.score_candidates
        return signatures

    @signature(USER_IDS, MOVIE_IDS)
    def serve(self, user_id, movie_id):
        return {
            "predicted_rating": self.rating_model({"user_id": user_id, "movie_id": movie_id}),
            "known_user": self.rating_model.user.known(user_id),
            "known_movie": self.rating_model.movie.known(movie_id),
        }
