"""Item-item weights from co-ratings, as a sparse table: each movie's ``k`` strongest neighbours.

Two item-item models, both fitted on a set of ratings (binary: who rated what):

* ``ease`` (Steck 2019): ``B = I - P / diag(P)``, ``P = (X'X + lambda I)^-1``, the closed-form
  item-item model whose user scores ``x_u B`` are the strongest known baseline on MovieLens.
  It inverts a catalog x catalog matrix, so it is used up to :data:`EASE_MAX_CATALOG` movies.
* ``cosine`` (ItemKNN): ``co-ratings(i, j) / sqrt(ratings(i) ratings(j))``, computed in blocks of
  movies with ``scipy.sparse``, for any catalog size.

Each movie keeps the ``k`` largest weights (by magnitude) that point *to* it, so the table
fits in a SavedModel and a candidate's score needs only its own row: the list ranker sums the
kept weights whose source the user rated (``x_u B`` restricted to the kept entries), and
``explain`` decomposes that sum.

Examples:
    >>> from tfrs_pipeline.data import load_data
    >>> data = load_data("synthetic:50x40x600")
    >>> table = ItemNeighbours.build(data.interactions, sorted(data.movies["movie_id"]), k=8)
    >>> table.kind, table.neighbours.shape  # [catalog + 1, k]; row 0 (unknown movie) is empty
    ('ease', (41, 8))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from tfrs_pipeline.ids import id_positions, rows_per_block

#: Largest catalog EASE is fitted on (memory grows with the square: 20,000 movies take about 5 GB at peak).
EASE_MAX_CATALOG = 20_000
#: EASE's L2 penalty (the reference figure in ../shared/README.md uses 200 on ml-latest-small).
EASE_REGULARIZATION = 200.0
KINDS = ("auto", "ease", "cosine")


@dataclass
class ItemNeighbours:
    """For each catalog row: the ``k`` movies with the strongest weights to it (catalog rows, 0 = none) and those weights.

    Row ``i + 1`` belongs to ``catalog_ids[i]``; row 0 (unknown movie) is empty, as are
    movies without training ratings.
    """

    neighbours: np.ndarray
    weights: np.ndarray
    kind: str

    @classmethod
    def build(cls, train: pd.DataFrame, catalog_ids: np.ndarray, k: int = 256, kind: str = "auto",
              block: int = 2048) -> ItemNeighbours:
        """Fits the item-item model on ``train`` and keeps each movie's ``k`` largest weights.

        Args:
            train: ratings (``user_id``, ``movie_id``); a movie rated twice by a user counts once.
            catalog_ids: the catalog's movie ids, in catalog order.
            k: neighbours kept per movie.
            kind: ``ease``, ``cosine``, or ``auto`` (EASE up to EASE_MAX_CATALOG movies, cosine above).
            block: most movies per block of the cosine product (memory: block x catalog floats; fewer
                on catalogs too big for it, see :func:`~tfrs_pipeline.ids.rows_per_block`).
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        catalog = pd.Index(np.asarray(catalog_ids).astype(str))
        if kind == "auto":
            kind = "ease" if len(catalog) <= EASE_MAX_CATALOG else "cosine"
        ratings = rating_matrix(train, catalog)
        width = min(k, max(len(catalog) - 1, 0))
        table = cls(np.zeros((len(catalog) + 1, k), np.int64), np.zeros((len(catalog) + 1, k), np.float32), kind)
        if width == 0:
            return table
        if kind == "ease":
            weights = ease_weights(ratings)
            for start in range(0, len(catalog), block):
                table._keep(start, weights[:, start : start + block].T, width)  # incoming weights of each movie
            return table
        by_item = ratings.T.tocsr()
        block = rows_per_block(len(catalog), block)
        norms = np.sqrt(np.maximum(np.asarray(by_item.sum(axis=1)).ravel(), 1.0))
        for start in range(0, len(catalog), block):
            co = (by_item[start : start + block] @ ratings).toarray()  # [block, catalog] co-rating counts (symmetric)
            co /= norms[start : start + block, None] * norms[None, :]
            table._keep(start, co, width)
        return table

    def _keep(self, start: int, rows: np.ndarray, width: int) -> None:
        """Stores, for catalog positions ``start ...``, the ``width`` largest-magnitude incoming weights (never from itself)."""
        rows = np.array(rows, np.float32)
        rows[np.arange(len(rows)), np.arange(start, start + len(rows))] = 0.0
        top = np.argpartition(-np.abs(rows), width - 1, axis=1)[:, :width]
        values = np.take_along_axis(rows, top, axis=1)
        order = np.argsort(-np.abs(values), axis=1, kind="stable")
        top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
        stored = slice(start + 1, start + 1 + len(rows))
        self.neighbours[stored, :width] = np.where(values != 0, top + 1, 0)
        self.weights[stored, :width] = values


def ease_weights(ratings: sparse.spmatrix, regularization: float = EASE_REGULARIZATION) -> np.ndarray:
    """EASE's item-item matrix ``B`` [catalog, catalog] (float32, zero diagonal) of a users x catalog 0/1 matrix.

    Closed form (Steck 2019): ``P = (X'X + lambda I)^-1``, ``B = -P / diag(P)`` off the diagonal.
    """
    gram = (ratings.T @ ratings).toarray().astype(np.float32)
    gram[np.diag_indices_from(gram)] += np.float32(regularization)
    inverse = np.linalg.inv(gram)
    del gram
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights


def rating_matrix(train: pd.DataFrame, catalog: pd.Index) -> sparse.csr_matrix:
    """Users x catalog binary matrix of who rated what (movies outside the catalog are left out)."""
    items = id_positions(catalog, train["movie_id"])
    users = pd.factorize(train["user_id"])[0]  # any one row per user: the co-rating counts do not depend on it
    known = items >= 0
    matrix = sparse.csr_matrix((np.ones(int(known.sum()), np.float32), (users[known], items[known])),
                               shape=(int(users.max(initial=-1)) + 1, len(catalog)))
    matrix.data[:] = 1.0
    return matrix
