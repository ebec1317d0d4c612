"""Classical baselines the models must beat, fitted on the same training split.

* ``movie_mean``: each movie's training mean rating, shrunk towards the global mean
  (the rating side of "most popular").
* ``BiasedMatrixFactorization``: global mean + user and movie biases + a low-rank
  user-movie product, fitted by alternating least squares (each step is closed-form).
* ``most_popular_recommender``: the most-rated movies first, scored through the same
  index (and the same seen-movie exclusion) as the two-tower model.
* ``ease_recommender``: EASE (Steck 2019), the closed-form item-item model.

Recommenders here are :data:`tfrs_pipeline.metrics.RecommendFn` callables, evaluated by
:func:`tfrs_pipeline.metrics.ranking_report` like the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf
from scipy import sparse

from tfrs_pipeline.features.vocabulary import Vocabularies
from tfrs_pipeline.ids import distinct_ids, id_positions, users_of
from tfrs_pipeline.metrics import RecommendFn
from tfrs_pipeline.ranking.neighbours import EASE_REGULARIZATION, ease_weights
from tfrs_pipeline.retrieval.index import SeenAwareBruteForce, SeenMovies


@dataclass
class BiasedMatrixFactorization:
    """Rating = mu + b_u + b_i + p_u . q_i, fitted by ALS with L2 penalty ``regularization``.

    Examples:
        >>> from tfrs_pipeline.config import SplitConfig
        >>> from tfrs_pipeline.data import load_data
        >>> from tfrs_pipeline.data.split import split_ratings
        >>> split = split_ratings(load_data("synthetic:50x40x600"), SplitConfig())
        >>> mf = BiasedMatrixFactorization(factors=16).fit(split.train)
        >>> mf.predict(split.test["user_id"], split.test["movie_id"]).shape
        (120,)
    """

    factors: int = 16
    regularization: float = 8.0
    iterations: int = 12
    seed: int = 0
    rating_scale: tuple[float, float] = (0.5, 5.0)

    def fit(self, train: pd.DataFrame) -> BiasedMatrixFactorization:
        # Distinct ids in order of first appearance, looked up without one string per rating.
        self.users_ = pd.Index(np.asarray(pd.unique(train["user_id"])).astype(str))
        self.movies_ = pd.Index(np.asarray(pd.unique(train["movie_id"])).astype(str))
        users = id_positions(self.users_, train["user_id"])
        movies = id_positions(self.movies_, train["movie_id"])
        ratings = train["rating"].to_numpy(np.float64)
        self.mean_ = float(ratings.mean())
        rng = np.random.default_rng(self.seed)
        # Augmented factors: user [p_u, b_u, 1], movie [q_i, 1, b_i], so biases are solved with the factors.
        k = self.factors
        p = np.hstack([rng.normal(0, 0.1, (len(self.users_), k)), np.zeros((len(self.users_), 1)), np.ones((len(self.users_), 1))])
        q = np.hstack([rng.normal(0, 0.1, (len(self.movies_), k)), np.ones((len(self.movies_), 1)), np.zeros((len(self.movies_), 1))])
        residual = ratings - self.mean_
        by_user = _groups(users, len(self.users_))
        by_movie = _groups(movies, len(self.movies_))
        for _ in range(self.iterations):
            p[:, : k + 1] = _solve(by_user, movies, q, residual, fixed=k + 1, reg=self.regularization, solve_for=k + 1)
            q[:, list(range(k)) + [k + 1]] = _solve(by_movie, users, p[:, list(range(k)) + [k + 1, k]], residual,
                                                    fixed=k + 1, reg=self.regularization, solve_for=k + 1)
        self.p_, self.q_ = p, q
        return self

    def predict(self, user_ids, movie_ids, batch_size: int = 65_536) -> np.ndarray:
        """Predicted ratings, clipped to the scale; unknown users or movies fall back to the biases they have.

        ``batch_size`` ratings are computed at a time: both factor rows of 4M test ratings at once are 2 GB.
        """
        users = self.users_.get_indexer(np.asarray(user_ids).astype(str))
        movies = self.movies_.get_indexer(np.asarray(movie_ids).astype(str))
        # Row -1, an unknown id, keeps the other side's bias: [0, ..., 0, 0, 1] for users, [0, ..., 0, 1, 0] for movies.
        p = np.vstack([self.p_, np.eye(1, self.p_.shape[1], self.p_.shape[1] - 1)])
        q = np.vstack([self.q_, np.eye(1, self.q_.shape[1], self.factors)])
        dots = [np.einsum("ij,ij->i", p[users[start : start + batch_size]], q[movies[start : start + batch_size]])
                for start in range(0, len(users), batch_size)]
        return np.clip(self.mean_ + np.concatenate(dots or [np.zeros(0)]), *self.rating_scale)


def _groups(index: np.ndarray, count: int) -> list[np.ndarray]:
    order = np.argsort(index, kind="stable")
    bounds = np.searchsorted(index[order], np.arange(count + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(count)]


def _solve(groups, other, other_vectors, residual, *, fixed: int, reg: float, solve_for: int) -> np.ndarray:
    """Ridge solution of the first ``solve_for`` coordinates for each group; the column ``fixed`` of the other side is a constant term."""
    solved = np.zeros((len(groups), solve_for))
    eye = reg * np.eye(solve_for)
    for row, members in enumerate(groups):
        if len(members) == 0:
            continue
        x = other_vectors[other[members]]
        design, offset = x[:, :solve_for], x[:, fixed]
        target = residual[members] - offset
        solved[row] = np.linalg.solve(design.T @ design + eye, design.T @ target)
    return solved


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
                     regularization: float = EASE_REGULARIZATION) -> RecommendFn:
    """Closed-form EASE (Steck 2019): B = I - P / diag(P), P = (X'X + lambda I)^-1; scores = X B.

    ``B`` is fitted over the movies rated in ``train`` (a movie nobody rated scores 0, as it
    would with the whole catalog in ``B``), so its memory follows the rated movies: 4 n^2 bytes,
    0.3 GB for the 8,996 movies rated in ml-latest-small's training side. Scores are computed per batch of users.
    """
    users = pd.Index(sorted(set(train["user_id"].astype(str))))
    items = pd.Index(np.asarray(catalog_ids).astype(str))
    rows, columns = users.get_indexer(train["user_id"].astype(str)), items.get_indexer(train["movie_id"].astype(str))
    known = columns >= 0
    x = sparse.csr_matrix((np.ones(int(known.sum()), np.float32), (rows[known], columns[known])),
                          shape=(len(users), len(items)))
    x.data[:] = 1.0
    rated = np.flatnonzero(x.getnnz(axis=0) > 0)
    weights = ease_weights(x[:, rated], regularization)
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
        k = min(k, len(items))
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(items) else np.tile(np.arange(k), (len(batch), 1))
        # Best first; equal scores in catalog order, as the index's top-k orders them.
        order = np.lexsort((top, -np.take_along_axis(scores, top, axis=1)), axis=-1)
        return ids[np.take_along_axis(top, order, axis=1)]

    return recommend
