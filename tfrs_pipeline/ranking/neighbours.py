"""Item-item weights from co-ratings, as a sparse matrix: the strongest weights of the fitted model.

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

A small catalog (rows x rows at most :data:`DENSE_CELLS`) keeps every EASE weight, served as a
dense matrix. A larger one keeps ``k`` weights per movie (EASE: the ``k n`` strongest of its
``n^2``, so that a popular movie keeps more than a rare one), as a sparse matrix that a
SavedModel holds at any catalog size. A user's scores are the sums of the kept weights from the movies they rated
(:meth:`ItemNeighbours.user_scores`; in the exported model
:class:`~tfrs_pipeline.ranking.item_scores.ItemItemScores`), computed from whatever history a
request brings: nothing per user is stored, and ``explain`` decomposes the same sums.

Examples:
    >>> from tfrs_pipeline.data import load_data
    >>> data = load_data("synthetic:50x40x600")
    >>> table = ItemNeighbours.build(data.interactions, sorted(data.movies["movie_id"]), k=8)
    >>> table.kind, table.weights.shape, table.dense  # [catalog + 1, catalog + 1]: row 0 is the unknown movie
    ('ease', (41, 41), True)
    >>> table.kept  # every off-diagonal weight of 40 movies
    1560
    >>> sparse_table = ItemNeighbours.build(data.interactions, sorted(data.movies["movie_id"]), k=8, dense_cells=0)
    >>> sparse_table.dense, sparse_table.kept  # the 8 x 40 strongest
    (False, 320)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.linalg import lapack

from tfrs_pipeline.config import RankerConfig
from tfrs_pipeline.features.dataset import Prepared
from tfrs_pipeline.ids import id_positions, rows_per_block
from tfrs_pipeline.metrics import recall_and_ndcg, top_k_columns

#: Largest catalog (rows x rows cells, 64 MiB of float32) whose item-item model is served as a dense
#: matrix with every one of EASE's weights: summing a history's rows of a dense matrix is a few
#: times faster per request than of a sparse one (0.6 against 7.5 ms for one user of the demo data).
DENSE_CELLS = 16_777_216
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
    """The item-item model's kept weights as a sparse matrix over catalog rows: ``weights[i, j]`` is
    how much having rated the movie of row ``i`` adds to the score of the movie of row ``j``.

    Row ``i + 1`` belongs to ``catalog_ids[i]``; row and column 0 (the unknown movie) are empty,
    as are movies without training ratings. A user's scores are their rated rows' sum,
    ``x_u W`` (:meth:`user_scores`): no per-user table is stored, so the scores follow whatever
    history a request brings.

    Attributes:
        weights: the kept weights, ``scipy.sparse`` CSR [catalog + 1, catalog + 1] float32, each
            row's columns sorted.
        kind: ``ease``, ``cosine`` or ``ease+cosine`` (EASE over the most-rated movies, ItemKNN for the rest).
        ease_movies: movies whose weights come from EASE.
        cosine_movies: movies whose weights come from ItemKNN.
        cutoff_ratings: fewest training ratings of an EASE movie where the catalog was cut (0: not cut).
        ease_weights: EASE's nonzero weights before pruning (``ease_movies`` x (``ease_movies`` - 1)).
        ease_kept: how many of them are kept (all where ``k`` per movie covers them, or where the
            catalog is small enough to serve them as a dense matrix).
        dense: every weight is kept and served as a dense matrix (:data:`DENSE_CELLS`).
        per_movie: the weights kept per movie (on average for EASE): ``k``, or less under ``max_weights``.
        sessions: the session kernel EASE was fitted with (None: plain co-rating counts).
        session_choice: where the list ranker chose between plain and session-aware EASE on its
            hold-out, each one's NDCG@10 there (``{"plain": ..., "sessions": ...}``), else empty.
    """

    weights: sparse.csr_matrix
    kind: str
    ease_movies: int = 0
    cosine_movies: int = 0
    cutoff_ratings: int = 0
    ease_weights: int = 0
    ease_kept: int = 0
    per_movie: int = 0
    dense: bool = False
    sessions: Sessions | None = None
    session_choice: dict = field(default_factory=dict)

    @classmethod
    def build(cls, train: pd.DataFrame, catalog_ids: np.ndarray, k: int = 512, kind: str = "auto",
              block: int = 2048, max_ease: int = EASE_MAX_CATALOG,
              regularization: float = EASE_REGULARIZATION, sessions: Sessions | None = None,
              max_weights: int = 0, dense_cells: int | None = None) -> ItemNeighbours:
        """Fits the item-item model on ``train`` and keeps its strongest weights (all of them on a
        catalog of up to :data:`DENSE_CELLS` cells, served as a dense matrix).

        EASE's matrix is dense; of its ``n (n - 1)`` weights the ``k n`` largest in magnitude are
        kept (``k`` per movie on average: a popular movie keeps more, a rarely rated one fewer),
        all of them where ``n <= k + 1``. On ml-latest-small (8,996 EASE movies, ``k`` 256: 2.8%
        of the weights) the kept ones' NDCG@10 was 0.4010 against the whole matrix's 0.4017; the
        strongest ``k`` weights *per movie* gave 0.3927. ItemKNN keeps each movie's ``k`` largest
        incoming weights.

        Args:
            train: ratings (``user_id``, ``movie_id``); a movie rated twice by a user counts once.
            catalog_ids: the catalog's movie ids, in catalog order.
            k: weights kept per movie (EASE: on average).
            kind: ``ease`` (over every rated movie), ``cosine``, or ``auto`` (EASE over the
                ``max_ease`` most-rated movies, ItemKNN for the other rated movies).
            block: most movies per block of the cosine product and of the weight selection
                (memory: block x catalog floats; fewer on catalogs too big for it, see
                :func:`~tfrs_pipeline.ids.rows_per_block`).
            max_ease: most movies ``auto`` fits EASE on.
            regularization: EASE's L2 penalty (lambda).
            sessions: count co-ratings close in time more (:class:`Sessions`, whose own
                ``regularization`` then applies); ``train`` needs its ``timestamp`` column.
            max_weights: most weights kept in all (0: no cap): ``k`` is lowered to fit, the size of
                the served model being 8 bytes a weight.
            dense_cells: where EASE covers every rated movie and the catalog's rows x rows is at most
                this many cells, every weight is kept, to be served as a dense matrix (0: never;
                default :data:`DENSE_CELLS`).
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        if k < 1:
            raise ValueError(f"k must be a whole number from 1 up, got {k}")
        catalog = pd.Index(np.asarray(catalog_ids).astype(str))
        ratings = rating_matrix(train, catalog)
        counts = np.asarray(ratings.sum(axis=0)).ravel()
        rated = np.flatnonzero(counts > 0)
        by_count = rated[np.argsort(-counts[rated], kind="stable")]
        ease_part = {"ease": rated, "cosine": rated[:0], "auto": np.sort(by_count[:max_ease])}[kind]
        cosine_part = np.setdiff1d(rated, ease_part)
        cutoff = int(counts[by_count[max_ease - 1]]) if kind == "auto" and len(cosine_part) else 0
        dense_cells = DENSE_CELLS if dense_cells is None else dense_cells
        dense = not len(cosine_part) and (len(catalog) + 1) ** 2 <= dense_cells
        if dense:
            k = len(catalog)  # every weight
        elif max_weights and k * len(rated) > max_weights:
            k = max(1, max_weights // max(len(rated), 1))
        name = "+".join(part for part, movies in (("ease", ease_part), ("cosine", cosine_part)) if len(movies)) or "ease"
        entries = []  # (source rows, target rows, weights), catalog rows (1-based)
        ease_total = ease_kept = 0
        if len(ease_part) > 1:
            weights = fit_ease(train, catalog, ratings, ease_part, regularization, sessions, block=block)
            ease_total = int(len(ease_part) * (len(ease_part) - 1))
            sources, targets, values = strongest(weights, k * len(ease_part), block)
            del weights
            entries.append((ease_part[sources] + 1, ease_part[targets] + 1, values))
            ease_kept = len(values)
        if len(cosine_part):
            by_item = ratings.T.tocsr()
            step = rows_per_block(len(catalog), block)
            norms = np.sqrt(np.maximum(counts, 1.0))
            for start in range(0, len(cosine_part), step):
                targets = cosine_part[start : start + step]
                co = (by_item[targets] @ ratings).toarray()  # [block, catalog] co-rating counts
                co /= norms[targets, None] * norms[None, :]
                co[np.arange(len(targets)), targets] = 0.0  # never from the movie itself
                entries.append(incoming(co, targets, k))
        rows = len(catalog) + 1
        sources, targets, values = (np.concatenate([part[i] for part in entries]) if entries
                                    else np.zeros(0, np.int64 if i < 2 else np.float32) for i in range(3))
        matrix = sparse.csr_matrix((values.astype(np.float32), (sources, targets)), shape=(rows, rows))
        matrix.sum_duplicates()
        matrix.sort_indices()
        return cls(matrix, name, len(ease_part), len(cosine_part), cutoff, ease_total, ease_kept, sessions=sessions,
                   per_movie=k, dense=dense)

    @property
    def kept(self) -> int:
        """How many weights the model keeps."""
        return int(self.weights.nnz)

    @property
    def nbytes(self) -> int:
        """Bytes of the kept weights as the exported model holds them: a float32 per cell of a dense
        matrix, or a row offset and an int32 column and a float32 weight per weight."""
        if self.dense:
            return int(self.weights.shape[0]) ** 2 * 4
        return int(self.weights.shape[0] + 1) * 8 + self.kept * 8

    def describe(self) -> str:
        """Which movies got which item-item model, and how many weights are kept, in a line."""
        if self.kind == "ease+cosine":
            text = (f"EASE over the {self.ease_movies:,} most-rated movies (those with at least {self.cutoff_ratings:,} "
                    f"training ratings), ItemKNN for the other {self.cosine_movies:,} rated movies" + self._session_note())
        elif self.kind == "cosine":
            text = f"ItemKNN over the {self.cosine_movies:,} rated movies"
        else:
            text = f"EASE over the {self.ease_movies:,} rated movies" + self._session_note()
        if self.ease_weights and self.ease_kept < self.ease_weights:
            share = (f"the strongest {self.ease_kept:,} of EASE's {self.ease_weights:,} weights ({self.per_movie:,} per "
                     "movie on average)")
        elif self.ease_weights:
            share = f"all {self.ease_kept:,} of EASE's weights" + (", as a dense matrix," if self.dense else "")
        else:
            share = f"{self.kept:,} weights"
        return f"{text}; {share} kept ({self.nbytes / 2**20:,.1f} MiB)"

    def _session_note(self) -> str:
        choice = ""
        if self.session_choice:
            choice = (f"; chosen on the hold-out, NDCG@10 {self.session_choice['sessions']:.4f} with sessions, "
                      f"{self.session_choice['plain']:.4f} without")
        return (f" ({self.sessions.describe()}{choice})" if self.sessions is not None
                else f" (no session kernel{choice})" if choice else "")

    def user_scores(self, history: sparse.spmatrix) -> np.ndarray:
        """Item-item scores of every catalog row for each user [users, catalog + 1] from their rated
        movies ``history`` (users x catalog rows, 0/1; row 0 is the unknown movie and scores nothing):
        the sums of the kept weights from the rated rows."""
        history = sparse.csr_matrix(history, dtype=np.float32)
        return np.asarray((history @ self.weights).toarray(), np.float32)


def strongest(weights: np.ndarray, count: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``count`` largest-magnitude nonzero entries of a square matrix (the diagonal is zero), as
    (rows, columns, values); every nonzero one where there are no more than ``count``.

    Read a block of columns at a time: the threshold comes from each block's own strongest
    ``count`` (the whole matrix's strongest are among them), then the entries at or above it are
    taken; ties at the threshold may add a few.
    """
    size = weights.shape[1]
    candidates = []
    for start in range(0, size, block):
        magnitude = np.abs(weights[:, start : start + block]).ravel()
        if magnitude.size > count:
            magnitude = np.partition(magnitude, magnitude.size - count)[magnitude.size - count :]
        candidates.append(magnitude[magnitude > 0])
    candidates = np.concatenate(candidates)
    threshold = np.partition(candidates, len(candidates) - count)[len(candidates) - count] \
        if len(candidates) >= count else np.float32(np.finfo(np.float32).tiny)
    del candidates
    rows, columns, values = [], [], []
    for start in range(0, size, block):
        part = weights[:, start : start + block]
        row, column = np.nonzero(np.abs(part) >= threshold)
        rows.append(row)
        columns.append(column + start)
        values.append(part[row, column].astype(np.float32))
    return np.concatenate(rows), np.concatenate(columns), np.concatenate(values)


def incoming(rows: np.ndarray, targets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` largest positive weights pointing to each of ``targets`` (catalog positions) from
    ``rows`` [targets, catalog], as (source rows, target rows, weights) in catalog rows (1-based)."""
    width = min(k, rows.shape[1])
    top = np.argpartition(-rows, width - 1, axis=1)[:, :width]
    values = np.take_along_axis(rows, top, axis=1)
    keep = values > 0
    return (top[keep] + 1, np.broadcast_to(targets[:, None] + 1, top.shape)[keep], values[keep].astype(np.float32))


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


#: Most EASE movies whose weights are fitted a second time, on the whole training side, for the
#: exported ranker: above it that fit costs minutes and its matrix (4 n^2 bytes, 576 MB at 12,000)
#: would come on top of what training holds resident, so the fitting part's weights are served.
REFIT_MAX_EASE_MOVIES = 12_000


def item_table_settings(config: RankerConfig) -> dict:
    """:meth:`ItemNeighbours.build`'s settings for a ranker of ``config`` (the session kernel aside)."""
    return {"k": config.neighbours, "kind": config.item_model, "regularization": config.ease_regularization,
            "max_weights": config.max_item_weights}


def build_item_table(prepared: Prepared, config: RankerConfig, log=print) -> ItemNeighbours:
    """The list ranker's item-item model, fitted on the fitting part ``prepared.fitting``.

    With ``ranker.sessions`` ``auto`` (the default), EASE is fitted twice, with and without the
    session kernel (:class:`~tfrs_pipeline.ranking.neighbours.Sessions`), and the one whose top 10
    has the better NDCG@10 on the validation hold-out is kept (:data:`SESSION_CHOICE_USERS` of its
    users at most, seen movies excluded); ``on`` and ``off`` fit one. Data whose timestamps are all
    the same has no sessions: plain EASE, without the second fit.

    It needs neither trained tower, so a training run builds it before them, while the process
    holds little more than the data: EASE's matrix and its working copies (about 2.4 GB at 20,000
    movies) then do not come on top of what training leaves resident.
    """
    settings = item_table_settings(config)
    sessions = Sessions(config.session_weight, config.session_minutes, config.session_regularization)
    has_time = prepared.fitting["timestamp"].nunique() > 1
    if config.sessions == "off" or config.item_model == "cosine" or not has_time:
        if config.sessions == "on" and not has_time:
            log("item-item model: no session kernel, every training timestamp is the same")
        return ItemNeighbours.build(prepared.fitting, prepared.movies.movie_ids, **settings)
    if config.sessions == "on" or not len(prepared.validation):
        return ItemNeighbours.build(prepared.fitting, prepared.movies.movie_ids, sessions=sessions, **settings)
    plain = ItemNeighbours.build(prepared.fitting, prepared.movies.movie_ids, **settings)
    timed = ItemNeighbours.build(prepared.fitting, prepared.movies.movie_ids, sessions=sessions, **settings)
    scores = {"plain": hold_out_ndcg(plain, prepared), "sessions": hold_out_ndcg(timed, prepared)}
    table = timed if scores["sessions"] > scores["plain"] else plain
    table.session_choice = scores
    return table


#: Most hold-out users whose top 10 choose between plain and session-aware EASE.
SESSION_CHOICE_USERS = 2000


def hold_out_ndcg(table: ItemNeighbours, prepared: Prepared, users: int = SESSION_CHOICE_USERS) -> float:
    """NDCG@10 of the item-item model's own top 10 (fitting-part movies excluded) on the validation
    hold-out, over at most ``users`` of its users (a fixed sample) who have fitting-part ratings."""
    catalog = pd.Index(np.asarray(prepared.movies.movie_ids).astype(str))
    known = pd.Index(pd.unique(np.asarray(prepared.fitting["user_id"]).astype(str)))
    held = pd.Index(pd.unique(np.asarray(prepared.validation["user_id"]).astype(str)))
    chosen = held[held.isin(known)]
    if len(chosen) > users:
        chosen = chosen[np.sort(np.random.default_rng(0).choice(len(chosen), users, replace=False))]
    if not len(chosen):
        return 0.0
    history = rating_matrix(prepared.fitting[id_positions(chosen, prepared.fitting["user_id"]) >= 0], catalog, chosen)
    history = sparse.hstack([sparse.csr_matrix((len(chosen), 1), dtype=np.float32), history]).tocsr()
    scores = table.user_scores(history)[:, 1:]
    scores[history[:, 1:].toarray() > 0] = -np.inf
    top = top_k_columns(scores, 10)
    validation = prepared.validation[id_positions(chosen, prepared.validation["user_id"]) >= 0]
    return recall_and_ndcg(chosen.to_numpy(), catalog.to_numpy()[top], validation, ks=(10,))["ndcg_at_10"]
