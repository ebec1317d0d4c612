"""The exported pipeline's contract: its signature names, which one answers a recommendation
request, and the names its outputs take in a table or a JSON answer.

:class:`~tfrs_pipeline.export.two_stage.TwoStagePipeline` exports these signatures;
:class:`~tfrs_pipeline.recommender.Recommender`, the HTTP server and the evaluation call them by
these names, so that a renamed signature is renamed in one place.

Examples:
    >>> recommend_signature(user=True, history=False, exclude=False)
    'serving_default'
    >>> recommend_signature(user=False, history=True, exclude=False)
    'recommend_from_history'
    >>> RANKED_COLUMNS["scores"]
    'ranker_score'
"""

from __future__ import annotations

SERVING_DEFAULT = "serving_default"
RECOMMEND_INCLUDING_SEEN = "recommend_including_seen"
RECOMMEND_EXCLUDING = "recommend_excluding"
RECOMMEND_WITH_HISTORY = "recommend_with_history"
RECOMMEND_FROM_HISTORY = "recommend_from_history"
RETRIEVE = "retrieve"
PREDICT_RATINGS = "predict_ratings"
#: :data:`PREDICT_RATINGS`'s name before this release: exported as a second name of it, for one release.
RANK = "rank"
SIMILAR_MOVIES = "similar_movies"
EXPLAIN = "explain"
RATED_MOVIES = "rated_movies"

#: A recommended movie's outputs [rows, k] and their names in a table or a JSON answer; the first names the movie.
RANKED_COLUMNS = {"movie_ids": "movie_id", "titles": "title", "scores": "ranker_score",
                  "predicted_ratings": "predicted_rating", "retrieval_scores": "retrieval_score"}
#: A retrieved candidate's.
RETRIEVED_COLUMNS = {"movie_ids": "movie_id", "titles": "title", "retrieval_scores": "retrieval_score"}
#: A similar movie's.
SIMILAR_COLUMNS = {"movie_ids": "movie_id", "titles": "title", "scores": "similarity"}
#: A movie the user rated (``rated_movies``).
RATED_COLUMNS = {"movie_ids": "movie_id", "titles": "title", "ratings": "rating"}
#: A rated movie behind a recommendation (``explain``).
EXPLAINED_COLUMNS = {"movie_ids": "because_movie_id", "titles": "because_title", "contributions": "contribution",
                     "shares": "share"}


#: The inputs (besides ``k``) each recommendation signature takes.
RECOMMEND_INPUTS = {SERVING_DEFAULT: ("user_id",), RECOMMEND_INCLUDING_SEEN: ("user_id",),
                    RECOMMEND_EXCLUDING: ("user_id", "exclude_movie_ids"),
                    RECOMMEND_WITH_HISTORY: ("user_id", "movie_ids", "exclude_movie_ids"),
                    RECOMMEND_FROM_HISTORY: ("movie_ids",)}


def recommend_signature(*, user: bool, history: bool, exclude: bool, exclude_seen: bool = True) -> str:
    """The signature that answers a recommendation request.

    Args:
        user: the request names a user id.
        history: it brings movies rated since training (with a user) or a visitor's movies (without).
        exclude: it names movies to leave out.
        exclude_seen: leave the user's training movies out (only a plain user request may keep them).
    """
    if history:
        return RECOMMEND_WITH_HISTORY if user or exclude else RECOMMEND_FROM_HISTORY
    if exclude:
        return RECOMMEND_EXCLUDING
    return SERVING_DEFAULT if exclude_seen else RECOMMEND_INCLUDING_SEEN
