"""Item-item weights from co-ratings, as a sparse table: each movie's ``k`` strongest neighbours.

Two item-item models, both fitted on a set of ratings (binary: who rated what) and both over
the movies that *have* ratings there (a movie nobody rated gets no weights either way):

* ``ease`` (Steck 2019): ``B = I - P / diag(P)``, ``P = (X'X + lambda I)^-1``, the closed-form
  item-item model whose user scores ``x_u B`` are the strongest known baseline on MovieLens.
  It inverts a rated-movies x rated-movies matrix (in place: about ``4 n^2`` bytes at peak).
* ``cosine`` (ItemKNN): ``co-ratings(i, j) / sqrt(ratings(i) ratings(j))``, computed in blocks of
  movies with ``scipy.sparse``, for any catalog size.

EASE can also count *when* movies were rated (:class:`Sessions`): two movies a user rated
minutes apart are more alike than two they rated years apart, so the co-rating counts off the
diagonal are mixed with co-ratings weighted ``exp(-|t_a - t_b| / tau)`` over each user's ratings
(a session kernel; ``tau`` a few minutes). On ml-latest-small's random split this raises EASE's
own NDCG@10 from 0.385 to about 0.40; on data without sessions it does nothing useful, which is
why the list ranker turns it on only where its validation hold-out says so
(:func:`~tfrs_pipeline.ranking.list_ranker.build_item_table`).

``auto`` fits EASE over the :data:`EASE_MAX_CATALOG` most-rated movies and ItemKNN for the
other rated movies (kind ``ease+cosine``; :meth:`ItemNeighbours.describe` says where the cut fell).

Each movie keeps the ``k`` largest weights (by magnitude) that point *to* it, so the table
fits in a SavedModel and a candidate's score needs only its own row: the list ranker sums the
kept weights whose source the user rated (``x_u B`` restricted to the kept entries), and
``explain`` decomposes that sum. Where the users x catalog scores are stored instead
(:meth:`ItemNeighbours.user_scores`), the EASE part can keep its whole matrix until then
(``keep_ease``), so that the stored scores are EASE's own ``x_u B``, not the kept weights' sum.

Examples:
    >>> from tfrs_pipeline.data import load_data
    >>> data = load_data("synthetic:50x40x600")
    >>> table = ItemNeighbours.build(data.interactions, sorted(data.movies["movie_id"]), k=8)
    >>> table.kind, table.neighbours.shape  # [catalog + 1, k]; row 0 (unknown movie) is empty
    ('ease', (41, 8))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.linalg import lapack

from tfrs_pipeline.ids import id_positions, rows_per_block

#: Most movies EASE is fitted on (the most-rated ones; ItemKNN for the rest): its matrix takes
#: 4 n^2 bytes, 1.6 GB at 20,000 movies.
EASE_MAX_CATALOG = 20_000
#: EASE's L2 penalty (the reference figure in ../shared/README.md uses 200 on ml-latest-small).
EASE_REGULARIZATION = 200.0
KINDS = ("auto", "ease", "cosine")
#: Most later ratings of the same user each rating is paired with by the session kernel: bounds
#: its cost at this many pairs per rating where a user rated hundreds of movies within minutes.
SESSION_NEIGHBOURS = 64
#: The session kernel's pairs reach this many time scales apart at most (weight exp(-8) < 0.0004 past it).
SESSION_REACH = 8.0


@dataclass(frozen=True)
class Sessions:
    """How EASE counts co-ratings made close in time (see the module's notes).

    Attributes:
        weight: share of the session kernel in the co-rating counts off the diagonal (0: plain
            EASE, 1: the kernel alone); the diagonal (each movie's rating count) is unchanged.
        minutes: the kernel's time scale ``tau``.
        regularization: EASE's L2 penalty with the kernel (the mixed counts are smaller off the
            diagonal, so it wants less than plain EASE).
    """

    weight: float = 0.6
    minutes: float = 5.0
    regularization: float = 100.0

    def describe(self) -> str:
        return f"session kernel {self.minutes:g} min, weight {self.weight:g}, lambda {self.regularization:g}"

    @classmethod
    def from_record(cls, record: dict | None) -> Sessions | None:
        """The kernel a ``metrics.json`` item-item record names (``training.item_item.sessions``); None
        where it names none (plain EASE, ItemKNN, or a model exported before the record had it)."""
        return cls(**record["sessions"]) if record and record.get("sessions") else None


@dataclass
class ItemNeighbours:
    """For each catalog row: the ``k`` movies with the strongest weights to it (catalog rows, 0 = none) and those weights.

    Row ``i + 1`` belongs to ``catalog_ids[i]``; row 0 (unknown movie) is empty, as are
    movies without training ratings.

    Attributes:
        kind: ``ease``, ``cosine`` or ``ease+cosine`` (EASE over the most-rated movies, ItemKNN for the rest).
        ease_movies: movies whose weights come from EASE.
        cosine_movies: movies whose weights come from ItemKNN.
        cutoff_ratings: fewest training ratings of an EASE movie where the catalog was cut (0: not cut).
        ease_matrix: EASE's whole weight matrix over ``ease_rows`` (``build(keep_ease=True)``), else None.
        ease_rows: catalog rows (1-based) of the movies EASE was fitted on, in the matrix's order.
        sessions: the session kernel EASE was fitted with (None: plain co-rating counts).
        session_choice: where the list ranker chose between plain and session-aware EASE on its
            hold-out, each one's NDCG@10 there (``{"plain": ..., "sessions": ...}``), else empty.
    """

    neighbours: np.ndarray
    weights: np.ndarray
    kind: str
    ease_movies: int = 0
    cosine_movies: int = 0
    cutoff_ratings: int = 0
    ease_matrix: np.ndarray | None = None
    ease_rows: np.ndarray | None = None
    sessions: Sessions | None = None
    session_choice: dict = field(default_factory=dict)

    @classmethod
    def build(cls, train: pd.DataFrame, catalog_ids: np.ndarray, k: int = 256, kind: str = "auto",
              block: int = 2048, max_ease: int = EASE_MAX_CATALOG, keep_ease: bool = False,
              regularization: float = EASE_REGULARIZATION, sessions: Sessions | None = None) -> ItemNeighbours:
        """Fits the item-item model on ``train`` and keeps each movie's ``k`` largest weights.

        Args:
            train: ratings (``user_id``, ``movie_id``); a movie rated twice by a user counts once.
            catalog_ids: the catalog's movie ids, in catalog order.
            k: neighbours kept per movie.
            kind: ``ease`` (over every rated movie), ``cosine``, or ``auto`` (EASE over the
                ``max_ease`` most-rated movies, ItemKNN for the other rated movies).
            block: most movies per block of the cosine product and of the kept-weight selection
                (memory: block x catalog floats; fewer on catalogs too big for it, see
                :func:`~tfrs_pipeline.ids.rows_per_block`).
            max_ease: most movies ``auto`` fits EASE on.
            keep_ease: keep EASE's whole matrix (4 bytes per pair of EASE movies) for :meth:`user_scores`.
            regularization: EASE's L2 penalty (lambda).
            sessions: count co-ratings close in time more (:class:`Sessions`, whose own
                ``regularization`` then applies); ``train`` needs its ``timestamp`` column.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        catalog = pd.Index(np.asarray(catalog_ids).astype(str))
        ratings = rating_matrix(train, catalog)
        counts = np.asarray(ratings.sum(axis=0)).ravel()
        rated = np.flatnonzero(counts > 0)
        by_count = rated[np.argsort(-counts[rated], kind="stable")]
        ease_part = {"ease": rated, "cosine": rated[:0], "auto": np.sort(by_count[:max_ease])}[kind]
        cosine_part = np.setdiff1d(rated, ease_part)
        cutoff = int(counts[by_count[max_ease - 1]]) if kind == "auto" and len(cosine_part) else 0
        name = "+".join(part for part, movies in (("ease", ease_part), ("cosine", cosine_part)) if len(movies)) or "ease"
        table = cls(np.zeros((len(catalog) + 1, k), np.int64), np.zeros((len(catalog) + 1, k), np.float32), name,
                    len(ease_part), len(cosine_part), cutoff, sessions=sessions)
        if len(ease_part) > 1:
            weights = fit_ease(train, catalog, ratings, ease_part, regularization, sessions, block=block)
            for start in range(0, len(ease_part), block):
                # Column j of B holds the weights pointing to movie j: a contiguous block of the Fortran-order matrix.
                table._keep(ease_part[start : start + block], weights[:, start : start + block].T, ease_part)
            if keep_ease:
                table.ease_matrix, table.ease_rows = weights, ease_part + 1
            del weights
        if len(cosine_part):
            by_item = ratings.T.tocsr()
            step = rows_per_block(len(catalog), block)
            norms = np.sqrt(np.maximum(counts, 1.0))
            every = np.arange(len(catalog))
            for start in range(0, len(cosine_part), step):
                targets = cosine_part[start : start + step]
                co = (by_item[targets] @ ratings).toarray()  # [block, catalog] co-rating counts
                co /= norms[targets, None] * norms[None, :]
                table._keep(targets, co, every)
        return table

    def describe(self) -> str:
        """Which movies got which item-item model, in a line."""
        if self.kind == "ease+cosine":
            return (f"EASE over the {self.ease_movies:,} most-rated movies (those with at least {self.cutoff_ratings:,} "
                    f"training ratings), ItemKNN for the other {self.cosine_movies:,} rated movies" + self._session_note())
        if self.kind == "cosine":
            return f"ItemKNN over the {self.cosine_movies:,} rated movies"
        return f"EASE over the {self.ease_movies:,} rated movies" + self._session_note()

    def _session_note(self) -> str:
        choice = ""
        if self.session_choice:
            choice = (f"; chosen on the hold-out, NDCG@10 {self.session_choice['sessions']:.4f} with sessions, "
                      f"{self.session_choice['plain']:.4f} without")
        return (f" ({self.sessions.describe()}{choice})" if self.sessions is not None
                else f" (no session kernel{choice})" if choice else "")

    def user_scores(self, history: sparse.spmatrix) -> np.ndarray:
        """Item-item scores of every catalog row for each user [users, catalog + 1] from their rated
        movies ``history`` (users x catalog rows, 0/1; row 0 is the unknown movie and scores nothing).

        The kept weights' sums; for the movies EASE was fitted on, EASE's own ``x_u B`` where the
        table kept EASE's whole matrix (``build(keep_ease=True)``).
        """
        rows = self.neighbours.shape[0]
        kept = self.neighbours > 0
        if self.ease_matrix is not None:
            kept[self.ease_rows] = False  # their columns come from the whole matrix below
        targets = np.broadcast_to(np.arange(rows)[:, None], self.neighbours.shape)
        incoming = sparse.csr_matrix((self.weights[kept], (self.neighbours[kept], targets[kept])), shape=(rows, rows))
        history = sparse.csr_matrix(history, dtype=np.float32)
        scores = np.asarray((history @ incoming).toarray(), np.float32)
        if self.ease_matrix is not None:
            scores[:, self.ease_rows] = history[:, self.ease_rows] @ self.ease_matrix
        return scores

    def _keep(self, targets: np.ndarray, rows: np.ndarray, sources: np.ndarray) -> None:
        """Stores, for catalog positions ``targets``, the largest-magnitude incoming weights ``rows``
        [targets, sources] (never from the movie itself); ``sources`` are sorted catalog positions."""
        rows = np.array(rows, np.float32)
        width = min(self.neighbours.shape[1], rows.shape[1])
        if width == 0 or not len(rows):
            return
        column = np.minimum(np.searchsorted(sources, targets), len(sources) - 1)
        itself = sources[column] == targets
        rows[np.flatnonzero(itself), column[itself]] = 0.0
        top = np.argpartition(-np.abs(rows), width - 1, axis=1)[:, :width]
        values = np.take_along_axis(rows, top, axis=1)
        order = np.argsort(-np.abs(values), axis=1, kind="stable")
        top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
        self.neighbours[targets + 1, :width] = np.where(values != 0, sources[top] + 1, 0)
        self.weights[targets + 1, :width] = values


def gram_matrix(ratings: sparse.spmatrix, block: int = 2048) -> np.ndarray:
    """``X'X`` of a users x movies 0/1 matrix, dense float32 in Fortran order, computed a block of columns at a time."""
    columns = sparse.csc_matrix(ratings, dtype=np.float32)
    by_movie = columns.T.tocsr()
    gram = np.empty((columns.shape[1], columns.shape[1]), np.float32, order="F")
    for start in range(0, columns.shape[1], block):
        gram[:, start : start + block] = (by_movie @ columns[:, start : start + block]).toarray()
    return gram


def session_pairs(train: pd.DataFrame, catalog: pd.Index, movies: np.ndarray, minutes: float,
                  neighbours: int = SESSION_NEIGHBOURS) -> sparse.csr_matrix:
    """The session kernel's co-ratings over ``movies`` (catalog positions, sorted): a symmetric
    [movies, movies] matrix whose (i, j) entry sums ``exp(-|t_a - t_b| / tau)`` over the pairs of
    one user's ratings ``a`` of i and ``b`` of j (i != j), ``tau`` = ``minutes``.

    Each rating is paired with the user's next ratings in time, at most ``neighbours`` of them and
    at most :data:`SESSION_REACH` time scales later; a movie a user rated twice counts at its first rating.
    """
    column = np.full(len(catalog), -1, np.int64)
    column[movies] = np.arange(len(movies))
    items = id_positions(catalog, train["movie_id"])
    known = items >= 0
    frame = pd.DataFrame({"user": pd.factorize(train["user_id"])[0][known], "movie": column[items[known]],
                          "time": np.asarray(train["timestamp"], np.float64)[known]})
    frame = frame[frame["movie"] >= 0].sort_values(["user", "time"], kind="stable")
    frame = frame.drop_duplicates(["user", "movie"])
    user, movie, time = (frame[name].to_numpy() for name in ("user", "movie", "time"))
    scale = 60.0 * float(minutes)
    rows, cols, values = [], [], []
    for offset in range(1, neighbours + 1):
        gap = time[offset:] - time[:-offset]
        near = np.flatnonzero((user[offset:] == user[:-offset]) & (gap <= SESSION_REACH * scale))
        if not len(near):
            break  # sorted in time: no pair further apart in order is closer in time
        rows.append(movie[near])
        cols.append(movie[near + offset])
        values.append(np.exp(-gap[near] / scale).astype(np.float32))
    rows, cols = np.concatenate(rows or [np.zeros(0, np.int64)]), np.concatenate(cols or [np.zeros(0, np.int64)])
    values = np.concatenate(values or [np.zeros(0, np.float32)])
    pairs = sparse.coo_matrix((values, (rows, cols)), shape=(len(movies), len(movies))).tocsr()
    return (pairs + pairs.T).tocsr()


def fit_ease(train: pd.DataFrame, catalog: pd.Index, ratings: sparse.spmatrix, movies: np.ndarray,
             regularization: float = EASE_REGULARIZATION, sessions: Sessions | None = None, block: int = 2048) -> np.ndarray:
    """EASE's ``B`` over the catalog positions ``movies`` of ``ratings`` (users x catalog, from
    ``train``): :func:`ease_weights` with ``regularization``, or with the session kernel's mixed
    counts and its own lambda where ``sessions`` is given."""
    if sessions is None:
        return ease_weights(ratings[:, movies], regularization, block=block)
    return ease_weights(ratings[:, movies], sessions.regularization, block=block,
                        sessions=session_pairs(train, catalog, movies, sessions.minutes), session_weight=sessions.weight)


def ease_weights(ratings: sparse.spmatrix, regularization: float = EASE_REGULARIZATION, block: int = 2048,
                 sessions: sparse.spmatrix | None = None, session_weight: float = 0.0) -> np.ndarray:
    """EASE's item-item matrix ``B`` [movies, movies] (float32, Fortran order, zero diagonal) of a users x movies 0/1 matrix.

    Closed form (Steck 2019): ``P = (X'X + lambda I)^-1``, ``B = -P / diag(P)`` off the diagonal,
    with ``P`` from a Cholesky factorization done in place, so that the peak is about one
    movies x movies matrix (plus a block of columns). With ``sessions`` (:func:`session_pairs`),
    ``X'X`` off the diagonal becomes ``(1 - session_weight) X'X + session_weight sessions``.
    """
    gram = gram_matrix(ratings, block)
    if sessions is not None:
        diagonal = np.diag(gram).copy()
        gram *= np.float32(1.0 - session_weight)
        gram[np.diag_indices_from(gram)] = diagonal
        pairs = sparse.coo_matrix(sessions)
        gram[pairs.row, pairs.col] += np.float32(session_weight) * pairs.data.astype(np.float32)
    gram[np.diag_indices_from(gram)] += np.float32(regularization)
    factor, info = lapack.spotrf(gram, lower=1, overwrite_a=1, clean=0)
    if info == 0:
        factor, info = lapack.spotri(factor, lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: the regularized co-rating matrix is not positive definite (LAPACK info {info})")
    inverse = factor  # the lower triangle holds P; mirror it into the upper one, a block of columns at a time
    for start in range(0, inverse.shape[0], block):
        end = min(start + block, inverse.shape[0])
        inverse[start:end, end:] = inverse[end:, start:end].T
        square = inverse[start:end, start:end]
        inverse[start:end, start:end] = np.tril(square) + np.tril(square, -1).T
    diagonal = np.diag(inverse).copy()
    inverse /= -diagonal[None, :]  # B_ij = -P_ij / P_jj
    np.fill_diagonal(inverse, 0.0)
    return inverse


def rating_matrix(train: pd.DataFrame, catalog: pd.Index, users: pd.Index | None = None) -> sparse.csr_matrix:
    """Users x catalog binary matrix of who rated what (movies outside the catalog are left out).

    Row ``i`` belongs to ``users[i]`` where ``users`` is given (every user of ``train`` must be
    in it); otherwise rows are in no particular order (the co-rating counts do not depend on it).
    """
    items = id_positions(catalog, train["movie_id"])
    rows = pd.factorize(train["user_id"])[0] if users is None else id_positions(users, train["user_id"])
    known = items >= 0
    count = int(rows.max(initial=-1)) + 1 if users is None else len(users)
    matrix = sparse.csr_matrix((np.ones(int(known.sum()), np.float32), (rows[known], items[known])),
                               shape=(count, len(catalog)))
    matrix.data[:] = 1.0
    return matrix
