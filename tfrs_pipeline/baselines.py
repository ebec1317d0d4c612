"""Classical baselines the models must beat, fitted on the same training split.

* ``movie_mean``: each movie's training mean rating, shrunk towards the global mean
  (the rating side of "most popular").
* ``BiasedMatrixFactorization``: global mean + user and movie biases + a low-rank
  user-movie product, fitted by alternating least squares (each step is closed-form); it lives
  in :mod:`tfrs_pipeline.ranking.factorization`, as the rating model stacks it.
* ``most_popular_recommender``: the most-rated movies first, scored through the same
  index (and the same seen-movie exclusion) as the two-tower model.
* ``ease_recommender``: EASE (Steck 2019), the closed-form item-item model.

Recommenders here are :data:`tfrs_pipeline.metrics.RecommendFn` callables, evaluated by
:func:`tfrs_pipeline.metrics.top_k_report` like the model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline.features.vocabulary import Vocabularies
from tfrs_pipeline.ids import distinct_ids, id_positions, users_of
from tfrs_pipeline.metrics import RecommendFn, top_k_columns
from tfrs_pipeline.ranking.factorization import BiasedMatrixFactorization  # noqa: F401 (a baseline, imported from here)
from tfrs_pipeline.ranking.neighbours import EASE_REGULARIZATION, Sessions, fit_ease, rating_matrix
from tfrs_pipeline.retrieval.index import SeenAwareBruteForce, SeenMovies


def movie_mean(train: pd.DataFrame, movie_ids, shrinkage: float = 10.0) -> np.ndarray:
    """Each movie's training mean rating, shrunk towards the global mean by ``shrinkage`` ratings."""
    mean = float(train["rating"].mean())
    # Grouped by integer code rather than one id string per rating; the same groups and sums.
    movies = distinct_ids(train["movie_id"])
    stats = train["rating"].groupby(id_positions(movies, train["movie_id"])).agg(["sum", "count"])
    values = pd.Series(((stats["sum"] + shrinkage * mean) / (stats["count"] + shrinkage)).to_numpy(),
                       index=movies[stats.index.to_numpy()])
    return values.reindex(np.asarray(movie_ids).astype(str)).fillna(mean).to_numpy()


def index_recommender(query_fn, index: SeenAwareBruteForce, seen: SeenMovies) -> RecommendFn:
    """Turns a query function (user ids -> query embeddings) and an index into a recommender."""

    def recommend(users: np.ndarray, k: int, exclude_seen: bool) -> np.ndarray:
        user_ids = tf.constant(users.astype(str))
        queries = query_fn(user_ids)
        if exclude_seen:
            _, ids = index.query_excluding(queries, seen(user_ids), k)
        else:
            _, ids = index(queries, k)
        return ids.numpy()

    return recommend


def most_popular_recommender(movie_ids: np.ndarray, train_counts: np.ndarray, seen: SeenMovies) -> RecommendFn:
    """Most-rated movies first: a factorized model whose single dimension is the count.

    Args:
        movie_ids: catalog ids, in catalog order.
        train_counts: training ratings per catalog movie, same order.
        seen: each user's training movies.
    """
    index = SeenAwareBruteForce(k=100)
    index.reindex(tf.constant(train_counts.reshape(-1, 1), tf.float32), tf.constant(movie_ids.astype(str)))
    return index_recommender(lambda users: tf.ones([tf.shape(users)[0], 1]), index, seen)


def most_popular_from_training(train: pd.DataFrame, catalog_ids: np.ndarray) -> RecommendFn:
    """The most-popular recommender of a training split, over ``catalog_ids``, seen movies excludable."""
    positions = id_positions(pd.Index(np.asarray(catalog_ids).astype(str)), train["movie_id"])
    counts = np.bincount(positions[positions >= 0], minlength=len(catalog_ids)).astype(np.float32)
    vocab = Vocabularies(list(users_of(train)), [], [], [], [], [])
    return most_popular_recommender(catalog_ids, counts, SeenMovies(vocab, catalog_ids, train))


def ease_recommender(train: pd.DataFrame, catalog_ids: np.ndarray, seen: SeenMovies,
                     regularization: float = EASE_REGULARIZATION, sessions: Sessions | None = None) -> RecommendFn:
    """Closed-form EASE (Steck 2019): B = I - P / diag(P), P = (X'X + lambda I)^-1; scores = X B.

    With ``sessions``, EASE with the session kernel (:class:`~tfrs_pipeline.ranking.neighbours.Sessions`,
    its own lambda), as the list ranker's item-item model fits it.

    ``B`` is fitted over the movies rated in ``train`` (a movie nobody rated scores 0, as it
    would with the whole catalog in ``B``), so its memory follows the rated movies: 4 n^2 bytes,
    0.3 GB for the 8,996 movies rated in ml-latest-small's training side. Scores are computed per batch of users.
    """
    users = pd.Index(users_of(train))
    items = pd.Index(np.asarray(catalog_ids).astype(str))
    x = rating_matrix(train, items, users)
    rated = np.flatnonzero(x.getnnz(axis=0) > 0)
    weights = fit_ease(train, items, x, rated, regularization, sessions)
    x_rated = x[:, rated].tocsr()
    ids = items.to_numpy()

    def recommend(batch: np.ndarray, k: int, exclude_seen: bool) -> np.ndarray:
        batch = np.asarray(batch).astype(str)
        positions = users.get_indexer(batch)
        scores = np.zeros((len(batch), len(items)), np.float32)  # unknown users: every movie 0
        found = np.flatnonzero(positions >= 0)
        scores[np.ix_(found, rated)] = np.asarray(x_rated[positions[found]] @ weights)
        if exclude_seen:
            excluded = seen(tf.constant(batch))
            scores[excluded.value_rowids().numpy(), excluded.flat_values.numpy()] = -np.inf
        return ids[top_k_columns(scores, k)]

    return recommend
