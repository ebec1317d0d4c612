"""Biased matrix factorization fitted by alternating least squares: the classical rating baseline,
and the factorization the rating model is stacked with (:func:`~tfrs_pipeline.ranking.rating.stack_matrix_factorization`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tfrs_pipeline.ids import id_positions


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
        # Positions as int32 and one float64 copy of the ratings, made the residual in place: at 20M
        # ratings each array is 64 or 128 MB, and this fit ran at the evaluation's memory peak.
        users = id_positions(self.users_, train["user_id"]).astype(np.int32)
        movies = id_positions(self.movies_, train["movie_id"]).astype(np.int32)
        residual = np.array(train["rating"], dtype=np.float64)  # a copy, never a view of ``train``
        self.mean_ = float(residual.mean())
        residual -= self.mean_
        rng = np.random.default_rng(self.seed)
        # Augmented factors: user [p_u, b_u, 1], movie [q_i, 1, b_i], so biases are solved with the factors.
        k = self.factors
        p = np.hstack([rng.normal(0, 0.1, (len(self.users_), k)), np.zeros((len(self.users_), 1)), np.ones((len(self.users_), 1))])
        q = np.hstack([rng.normal(0, 0.1, (len(self.movies_), k)), np.ones((len(self.movies_), 1)), np.zeros((len(self.movies_), 1))])
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
    order = np.argsort(index, kind="stable").astype(np.int32 if len(index) < 2**31 else np.int64)
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
