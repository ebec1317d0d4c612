"""The second stage's list ranker: orders retrieval's candidates, trained on the lists it will rank.

Training examples have the shape of serving. For each user of the validation hold-out,
the retrieval stage proposes its top ``N`` movies with the user's fitting-part movies
excluded, from a query built on the fitting part alone; a candidate is relevant (label
1) where the user went on to rate it in the hold-out. The retrieval model never trained
on those ratings and never saw them in a history, so the candidates and their scores
look as they will at serving time. The item-item model then adds its best-scored movies
that retrieval did not return (:func:`add_item_item_candidates`, ``ranker.item_candidates``),
so the ranker can reach movies retrieval missed; serving merges the two sources the same way.

:class:`ListRanker` is a ``tfrs.Model`` with two heads:

* the **relevance head** scores each candidate from features computed in the graph from
  ids alone: the retrieval logit (absolute and relative to the list's best), the
  predicted rating (absolute and relative to the list's mean), the movie's popularity
  and shrunk mean rating, the user's activity, the match of the movie's genres with the
  user's history, the mean cosine between the movie and the user's rated movies in the
  candidate-embedding space, and the movie's item-item score from the user's rated movies
  (EASE or ItemKNN weights, :mod:`~tfrs_pipeline.ranking.neighbours`; EASE counts co-ratings made
  minutes apart more where the hold-out says it helps, :func:`build_item_table`). A small MLP adds to a
  base score, the retrieval logit plus a weight times the item-item score's z-score within the
  list, the weight being the one whose order has the best NDCG@10 on the training lists
  (:func:`choose_item_weight`), times the factor with the lowest softmax cross-entropy on them
  (:func:`calibrate_base_scale`); the MLP starts at zero, so training starts from that blend of
  the two sources. It is trained with a softmax cross-entropy over each list (``tfrs.tasks.Ranking``);
* the **rating head** is the rating model (:class:`~tfrs_pipeline.ranking.rating.RatingModel`,
  trained before on the fitting part's ratings and kept frozen here), so every ranked
  movie carries a predicted rating and the RMSE is the rating model's.

Examples:
    >>> lists = candidate_lists(retriever, prepared.validation, num_candidates=100)  # doctest: +SKIP
    >>> result = train_list_ranker(rating_model, prepared, embeddings, lists, scale=5.0,
    ...                            config=RankerConfig())  # doctest: +SKIP
    >>> scores, ratings = result.model.score(user_ids, movie_ids, retrieval_scores)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs
from scipy import sparse
from scipy.optimize import minimize_scalar

from tfrs_pipeline.config import RankerConfig
from tfrs_pipeline.features.dataset import Prepared, shuffled_row_batches
from tfrs_pipeline.features.tables import MovieTable, UserTable
from tfrs_pipeline.features.vocabulary import Vocabularies, id_lookup
from tfrs_pipeline.ids import id_positions
from tfrs_pipeline.metrics import ndcg_of_lists, recall_and_ndcg, recall_of_lists, top_k_columns
from tfrs_pipeline.ranking.neighbours import ItemNeighbours, Sessions, rating_matrix
from tfrs_pipeline.ranking.rating import RatingModel
from tfrs_pipeline.training.backup import StageBackup
from tfrs_pipeline.training.loop import TrainingResult, fit, in_float32

#: The relevance head's input features, in order (for reports and the README).
FEATURES = ("retrieval logit", "logit minus the list's best", "predicted rating", "predicted rating minus the list's mean",
            "log(1 + training ratings of the movie)", "movie's shrunk mean rating", "log(1 + user's history length)",
            "genre match with the user's history", "mean cosine to the user's rated movies",
            "item-item score from the user's rated movies (EASE or ItemKNN)", "the same per rated movie",
            "retrieved by the two-tower model (0: added by the item-item model)",
            "retrieval logit as a z-score within the list", "item-item score as a z-score within the list")


#: Weights of the item-item z-score tried for the ranker's base score (0: retrieval's order).
ITEM_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)

#: Largest lists x catalog flag table (float32 cells) the item-item score builds; above it, a binary search.
_DENSE_LOOKUP_LIMIT = 32_000_000

#: Largest users x catalog table of item-item scores (float32 cells, 64 MB) the export stores; above
#: it the exported model computes them per request.
MATERIALIZE_LIMIT = 16_000_000



@dataclass
class CandidateLists:
    """Retrieval's candidate lists for a set of users, with hold-out labels.

    Args:
        user_ids: one user per list [lists].
        movie_ids: candidates, best retrieval score first [lists, N].
        retrieval_scores: their index scores [lists, N] (``-inf`` past the user's unseen movies).
        labels: 1.0 where the user rated the candidate in the hold-out [lists, N].
        relevant: how many hold-out movies each user has, retrieved or not [lists].
        retrieved: True where the two-tower model proposed the candidate, False where the
            item-item model added it [lists, N] (None: every candidate was retrieved).
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    retrieval_scores: np.ndarray
    labels: np.ndarray
    relevant: np.ndarray
    retrieved: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, rows: np.ndarray) -> CandidateLists:
        return CandidateLists(self.user_ids[rows], self.movie_ids[rows], self.retrieval_scores[rows], self.labels[rows],
                              self.relevant[rows], None if self.retrieved is None else self.retrieved[rows])

    @property
    def retrieved_mask(self) -> np.ndarray:
        return np.ones(self.movie_ids.shape, bool) if self.retrieved is None else self.retrieved

    def found(self) -> dict[str, int]:
        """Hold-out ratings among the candidates: by the two-tower model, added by the item-item model, both."""
        hits = self.labels > 0
        return {"retrieval": int((hits & self.retrieved_mask).sum()), "item_item_added": int((hits & ~self.retrieved_mask).sum()),
                "merged": int(hits.sum()), "relevant": int(self.relevant.sum())}


def candidate_lists(retriever, holdout: pd.DataFrame, num_candidates: int, batch_users: int = 1024) -> CandidateLists:
    """Retrieves ``num_candidates`` movies for every user of ``holdout`` and labels the ones they rated there.

    ``retriever`` must exclude (and build its queries from) the ratings outside the hold-out only.
    ``batch_users`` are retrieved at once (each scores the whole catalog: fewer on a huge one, see
    :func:`~tfrs_pipeline.ids.rows_per_block`).
    """
    users = np.asarray(sorted(set(holdout["user_id"].astype(str))), dtype=object)
    ids, scores = [], []
    for start in range(0, len(users), batch_users):
        batch = tf.constant(users[start : start + batch_users].astype(str))
        movie_ids, retrieval_scores, _ = retriever(batch, tf.constant(num_candidates))
        ids.append(movie_ids.numpy().astype(str))
        scores.append(retrieval_scores.numpy())
    ids = np.concatenate(ids) if ids else np.zeros((0, num_candidates), str)
    scores = np.concatenate(scores) if scores else np.zeros((0, num_candidates), np.float32)
    labels = holdout_labels(users, ids, holdout)
    relevant = holdout["user_id"].astype(str).value_counts().reindex(users).to_numpy()
    return CandidateLists(users, ids, scores, labels, relevant)


def holdout_labels(users: np.ndarray, movie_ids: np.ndarray, holdout: pd.DataFrame) -> np.ndarray:
    """1.0 where ``users[i]`` rated ``movie_ids[i, j]`` in ``holdout`` [lists, N], else 0.0."""
    pairs = set(zip(holdout["user_id"].astype(str), holdout["movie_id"].astype(str)))
    labels = np.array([[(user, movie) in pairs for movie in row] for user, row in zip(users, movie_ids)], np.float32)
    return labels.reshape(movie_ids.shape)


def history_catalog_rows(vocab: Vocabularies, users: UserTable, movies: MovieTable) -> np.ndarray:
    """Each history entry of ``users`` as a catalog row (1-based; the table's own values are vocabulary rows)."""
    catalog_rows = pd.Index(movies.movie_ids).get_indexer(vocab.movie_ids) + 1
    return np.concatenate([[0], catalog_rows])[users.history_values].astype(np.int64)


def user_profiles(vocab: Vocabularies, users: UserTable, movies: MovieTable, embeddings: np.ndarray):
    """Per user row: (mean genre vector, mean unit embedding, history length) of the history's movies.

    Args:
        embeddings: unit-length candidate embeddings in catalog order [movies, dim].
    """
    history = history_catalog_rows(vocab, users, movies)
    lengths = np.diff(users.history_splits).astype(np.float32)
    # Users x catalog rows, one entry per rated movie: a sparse product sums each user's rows without
    # gathering one row per rating (16M x 64 floats, 4 GB, at 20M ratings).
    rated = sparse.csr_matrix((np.ones(len(history), np.float32), history, users.history_splits),
                              shape=(len(lengths), len(movies.genres)))
    padded = with_empty_row(embeddings)
    denominator = np.maximum(lengths, 1.0)[:, None]
    return (rated @ movies.genres.astype(np.float32)) / denominator, (rated @ padded) / denominator, lengths


def item_table_settings(prepared: Prepared, config: RankerConfig) -> dict:
    """:meth:`ItemNeighbours.build`'s settings for a ranker over ``prepared``: where every user's scores
    can be stored, EASE's whole matrix is kept until they are."""
    storable = stored_cells(len(prepared.vocab.user_ids), len(prepared.movies.movie_ids)) <= MATERIALIZE_LIMIT
    return {"k": config.neighbours, "kind": config.item_model, "keep_ease": storable,
            "regularization": config.ease_regularization}


def build_item_table(prepared: Prepared, config: RankerConfig, log=print) -> ItemNeighbours:
    """The list ranker's item-item model, fitted on the fitting part ``prepared.train``.

    With ``ranker.sessions`` ``auto`` (the default), EASE is fitted twice, with and without the
    session kernel (:class:`~tfrs_pipeline.ranking.neighbours.Sessions`), and the one whose top 10
    has the better NDCG@10 on the validation hold-out is kept (:data:`SESSION_CHOICE_USERS` of its
    users at most, seen movies excluded); ``on`` and ``off`` fit one. Data whose timestamps are all
    the same has no sessions: plain EASE, without the second fit.

    It needs neither trained tower, so a training run builds it before them, while the process
    holds little more than the data: EASE's matrix and its working copies (about 2.4 GB at 20,000
    movies) then do not come on top of what training leaves resident.
    """
    settings = item_table_settings(prepared, config)
    sessions = Sessions(config.session_weight, config.session_minutes, config.session_regularization)
    has_time = prepared.train["timestamp"].nunique() > 1
    if config.sessions == "off" or config.item_model == "cosine" or not has_time:
        if config.sessions == "on" and not has_time:
            log("item-item model: no session kernel, every training timestamp is the same")
        return ItemNeighbours.build(prepared.train, prepared.movies.movie_ids, **settings)
    if config.sessions == "on" or not len(prepared.validation):
        return ItemNeighbours.build(prepared.train, prepared.movies.movie_ids, sessions=sessions, **settings)
    plain = ItemNeighbours.build(prepared.train, prepared.movies.movie_ids, **settings)
    timed = ItemNeighbours.build(prepared.train, prepared.movies.movie_ids, sessions=sessions, **settings)
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
    known = pd.Index(pd.unique(np.asarray(prepared.train["user_id"]).astype(str)))
    held = pd.Index(pd.unique(np.asarray(prepared.validation["user_id"]).astype(str)))
    chosen = held[held.isin(known)]
    if len(chosen) > users:
        chosen = chosen[np.sort(np.random.default_rng(0).choice(len(chosen), users, replace=False))]
    if not len(chosen):
        return 0.0
    history = rating_matrix(prepared.train[id_positions(chosen, prepared.train["user_id"]) >= 0], catalog, chosen)
    history = sparse.hstack([sparse.csr_matrix((len(chosen), 1), dtype=np.float32), history]).tocsr()
    scores = table.user_scores(history)[:, 1:]
    scores[history[:, 1:].toarray() > 0] = -np.inf
    top = top_k_columns(scores, 10)
    validation = prepared.validation[id_positions(chosen, prepared.validation["user_id"]) >= 0]
    return recall_and_ndcg(chosen.to_numpy(), catalog.to_numpy()[top], validation, ks=(10,))["ndcg_at_10"]


def stored_cells(users: int, movies: int) -> int:
    """Cells of the stored users x catalog item-item table, with a row for unknown ids on each side."""
    return (users + 1) * (movies + 1)


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """``rows`` scaled to unit length (a zero row stays zero)."""
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def with_empty_row(rows: np.ndarray) -> np.ndarray:
    """``rows`` [n, d] in float32 below a row of zeros: row 0 stands for the unknown id."""
    return np.vstack([np.zeros((1, rows.shape[1])), rows]).astype(np.float32)


class ListRanker(tfrs.Model):
    """Scores retrieval's candidates for each user; the rating head predicts their ratings.

    Args:
        rating_model: the trained rating model (frozen here).
        prepared: vocabularies and the fitting part's tables (popularity, histories).
        embeddings: candidate-tower embeddings of the catalog [movies, dim] (their direction is used).
        scale: retrieval score -> logit factor.
        config: ``list_hidden_units`` of the relevance MLP, the item-item model and ``item_candidates``.
        candidate_vectors: the index's candidate embeddings [movies, full dim], whose dot product
            with a query is the retrieval score; without them no item-item candidates are added.
        item_table: the item-item model, built already by :func:`build_item_table` on the same
            ``prepared`` and ``config`` (default: built here).
    """

    def __init__(self, rating_model: RatingModel, prepared: Prepared, embeddings: np.ndarray, scale: float,
                 config: RankerConfig, candidate_vectors: np.ndarray | None = None,
                 item_table: ItemNeighbours | None = None) -> None:
        super().__init__()
        self.rating_model = rating_model
        self.rating_model.trainable = False
        self.vocab = prepared.vocab
        self.scale = tf.constant(float(scale), tf.float32)
        self._unit_embeddings = unit = unit_rows(np.asarray(embeddings, np.float32))
        self.catalog_lookup = id_lookup(prepared.movies.movie_ids, "catalog_ids")
        self.user_lookup = id_lookup(prepared.vocab.user_ids, "user_ids")
        self.embeddings = tf.Variable(with_empty_row(unit), trainable=False, name="unit_movie_embeddings")
        genres = unit_rows(prepared.movies.genres)
        self.genres = tf.Variable(genres.astype(np.float32), trainable=False, name="unit_genres")
        # Tables that change with the data they are counted on: swapped by use_tables at export.
        rows, users = len(prepared.movies.movie_ids) + 1, len(prepared.vocab.user_ids) + 1
        self.popularity = tf.Variable(tf.zeros([rows]), trainable=False, name="log_popularity")
        self.mean_rating = tf.Variable(tf.zeros([rows]), trainable=False, name="mean_rating")
        self.genre_profile = tf.Variable(tf.zeros([users, genres.shape[1]]), trainable=False, name="genre_profile")
        self.embedding_profile = tf.Variable(tf.zeros([users, unit.shape[1]]), trainable=False, name="embedding_profile")
        self.activity = tf.Variable(tf.zeros([users]), trainable=False, name="log_activity")
        self.history_splits = tf.Variable(tf.zeros([users + 1], tf.int64), trainable=False, shape=[None],
                                          name="history_splits")
        self.history_rows = tf.Variable(tf.zeros([0], tf.int64), trainable=False, shape=[None], name="history_rows")
        # Item-item weights from the fitting part only: a hold-out rating must not count for its own movie.
        self._item_settings = item_table_settings(prepared, config)
        table = self._item_table = item_table or build_item_table(prepared, config)
        self._item_settings["sessions"] = table.sessions  # the refit at export fits the model chosen here
        self.session_choice = dict(table.session_choice)
        self.item_model = table.kind
        self.item_model_description = table.describe()
        self.neighbours = tf.Variable(table.neighbours, trainable=False, name="item_neighbours")
        self.neighbour_weights = tf.Variable(table.weights, trainable=False, name="item_neighbour_weights")
        # Every (user, movie) item-item score, filled at export by materialize_neighbour_scores; empty: computed per call.
        self.neighbour_table = tf.Variable(tf.zeros([0, 0]), trainable=False, shape=[None, None],
                                           name="item_item_scores")
        # Item-item candidates: each catalog row's id and retrieval candidate vector (row 0: none).
        self.item_candidates = int(config.item_candidates) if candidate_vectors is not None else 0
        vectors = np.zeros((len(prepared.movies.movie_ids), 1), np.float32) if candidate_vectors is None else candidate_vectors
        self.candidate_vectors = tf.Variable(with_empty_row(vectors), trainable=False, name="candidate_vectors")
        # A constant, not a variable: a multi-worker strategy cannot broadcast string variables.
        self.row_ids = tf.constant(np.concatenate([[""], np.asarray(prepared.movies.movie_ids).astype(str)]),
                                   name="catalog_row_ids")
        self.use_tables(prepared.movies, prepared.users)
        # The base score's weight on the item-item z-score, chosen by train_list_ranker before training
        # (item_weight_choice: the training lists' NDCG@10 of each weight tried).
        self.item_weight = tf.Variable(0.0, trainable=False, name="base_item_item_weight")
        self.item_weight_choice: dict[float, float] = {}
        # The base score's scale (a softmax temperature), fitted to the same lists before training
        # (:func:`calibrate_base_scale`): it changes no order, but without it the first epochs spend
        # the MLP's steps on shrinking an overconfident base and reorder the lists while doing so.
        self.base_scale = tf.Variable(1.0, trainable=False, name="base_scale")
        self.normalization = tf.keras.layers.Normalization(axis=-1, name="feature_normalization")
        layers = [tf.keras.layers.Dense(units, activation="relu") for units in config.hidden_units]
        # Zero output at first: the untrained ranker keeps its base score's order (retrieval's, until trained).
        self.mlp = tf.keras.Sequential(layers + [tf.keras.layers.Dense(1, kernel_initializer="zeros")], name="relevance_mlp")
        self.task = in_float32(lambda: tfrs.tasks.Ranking(
            loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.SUM)))

    def use_tables(self, movies: MovieTable, users: UserTable) -> None:
        """Counts popularity and user profiles on another side of the data (the whole training side, at export)."""
        genre_profile, embedding_profile, lengths = user_profiles(self.vocab, users, movies, self._unit_embeddings)
        self.popularity.assign(np.log1p(movies.train_count).astype(np.float32))
        self.mean_rating.assign(movies.mean_rating.astype(np.float32))
        self.genre_profile.assign(unit_rows(genre_profile).astype(np.float32))
        self.embedding_profile.assign(embedding_profile.astype(np.float32))
        self.activity.assign(np.log1p(lengths).astype(np.float32))
        self.history_splits.assign(users.history_splits.astype(np.int64))
        self.history_rows.assign(history_catalog_rows(self.vocab, users, movies))
        self.neighbour_table.assign(tf.zeros([0, 0]))  # a stored table would hold the old histories' scores
        self.scores_stored = False

    def use_retrieval(self, embeddings: np.ndarray, candidate_vectors: np.ndarray) -> None:
        """Takes another retrieval model's catalog embeddings (the refitted one's, at export), as
        :meth:`__init__` took the first's: their directions for the cosine features, the index's
        vectors for the item-item candidates' retrieval logits. The user profiles follow at the next
        :meth:`use_tables`. The relevance head reads statistics of the space (logits, cosines,
        z-scores within a list), not its axes, so it carries over to a model of the same settings.
        """
        unit = unit_rows(np.asarray(embeddings, np.float32))
        if unit.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"use_retrieval: embeddings of {unit.shape[1]} dimensions, the ranker's are "
                             f"{self.embeddings.shape[1]}")
        self._unit_embeddings = unit
        self.embeddings.assign(with_empty_row(unit))
        if self.candidate_vectors.shape[1] == candidate_vectors.shape[1]:  # else built without them: none to swap
            self.candidate_vectors.assign(with_empty_row(candidate_vectors))

    @property
    def item_sessions(self) -> Sessions | None:
        """The session kernel of the item-item model (None: plain co-rating counts)."""
        return self._item_settings["sessions"]

    @property
    def storable(self) -> bool:
        """Whether every (user, movie) item-item score fits the stored table (:data:`MATERIALIZE_LIMIT`)."""
        return self._item_settings["keep_ease"]

    def refit_item_item(self, train: pd.DataFrame) -> None:
        """Fits the item-item model again on ``train`` (the whole training side, at export, as the
        rating model's matrix factorization is), over the same catalog and with the same settings;
        stored scores are dropped (store them again with :meth:`materialize_neighbour_scores`)."""
        table = self._item_table = ItemNeighbours.build(train, self.row_ids.numpy()[1:].astype(str), **self._item_settings)
        self.item_model, self.item_model_description = table.kind, table.describe()
        self.neighbours.assign(table.neighbours)
        self.neighbour_weights.assign(table.weights)
        self.neighbour_table.assign(tf.zeros([0, 0]))
        self.scores_stored = False

    def materialize_neighbour_scores(self, limit: int = MATERIALIZE_LIMIT) -> bool:
        """Stores every (user, movie) item-item score, so that a ranked list reads its scores instead
        of looking up each candidate's neighbours among the user's rated movies (at 100K ratings, a
        third of a serving call's op time), and the item-item model can propose candidates. Call it
        after :meth:`use_tables`.

        The stored scores are EASE's own ``x_u B`` for the movies EASE was fitted on (the whole
        matrix, kept since the ranker was built where the table fits) and the kept weights' sums
        that :meth:`neighbour_scores` computes for the others
        (:meth:`~tfrs_pipeline.ranking.neighbours.ItemNeighbours.user_scores`).

        Returns:
            True if stored; False where users x catalog is over ``limit`` cells (scores stay per call).
        """
        # User rows (0: unknown users) and catalog rows (0: unknown movies).
        users, rows = int(tf.size(self.history_splits)) - 1, int(tf.shape(self.neighbours)[0])
        if users * rows > limit:
            return False
        history = sparse.csr_matrix((np.ones(int(tf.size(self.history_rows)), np.float32), self.history_rows.numpy(),
                                     self.history_splits.numpy()), shape=(users, rows))
        history.sum_duplicates()
        history.data = (history.indices > 0).astype(np.float32)  # a movie rated twice counts once; an unknown one not at all
        history.eliminate_zeros()
        self.neighbour_table.assign(self._item_table.user_scores(history))
        # Read where the graph is traced: an exported model reads the table without a branch.
        self.scores_stored = True
        return True

    def _history(self, user_rows: tf.Tensor) -> tf.RaggedTensor:
        """Catalog rows of each user's rated movies, one ragged row per user."""
        user_rows = tf.cast(user_rows, tf.int64)
        positions = tf.ragged.range(tf.gather(self.history_splits, user_rows), tf.gather(self.history_splits, user_rows + 1))
        return tf.RaggedTensor.from_row_splits(tf.gather(self.history_rows, positions.flat_values), positions.row_splits)

    def contributions(self, user_id: tf.Tensor, movie_id: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
        """Each history movie's weight to ``movie_id`` in the item-item score, one ragged row per user.

        Returns:
            (catalog rows of the user's rated movies, their weights to the movie); the
            weights sum to the ranker's item-item feature for that (user, movie).
        """
        history = self._history(self.user_lookup(user_id))
        target = tf.gather(self.catalog_lookup(movie_id), history.value_rowids())
        matches = tf.equal(tf.gather(self.neighbours, target), history.flat_values[:, None])
        weights = tf.reduce_sum(tf.where(matches, tf.gather(self.neighbour_weights, target), 0.0), axis=1)
        return history, tf.RaggedTensor.from_row_splits(weights, history.row_splits)

    def neighbour_scores(self, user_rows: tf.Tensor, movie_rows: tf.Tensor) -> tf.Tensor:
        """Item-item score [batch, N]: the kept weights to each candidate whose source movie the user rated,
        or read from the stored table where :meth:`materialize_neighbour_scores` filled it (there EASE's
        own score for the movies EASE was fitted on)."""
        if self.scores_stored:  # each user's row, then the candidates' cells: never the whole table
            rows = tf.gather(self.neighbour_table, tf.cast(user_rows, tf.int64))
            return tf.gather(rows, tf.cast(movie_rows, tf.int64), batch_dims=1)
        return self._computed_neighbour_scores(user_rows, movie_rows)

    def _computed_neighbour_scores(self, user_rows: tf.Tensor, movie_rows: tf.Tensor) -> tf.Tensor:
        history = self._history(user_rows)
        rows = tf.shape(self.neighbours, out_type=tf.int64)[0]
        batch = tf.shape(movie_rows, out_type=tf.int64)[0]
        sources = tf.gather(self.neighbours, movie_rows)  # [batch, N, k] catalog rows, 0 = none
        # Each (list, source movie) as one integer key: list * rows + source. Row 0 (no source) is
        # never among the rated keys, so an empty neighbour slot is never found.
        keys = sources + (tf.range(batch) * rows)[:, None, None]
        rated_keys = tf.boolean_mask(history.value_rowids() * rows + history.flat_values, history.flat_values > 0)

        def dense_lookup():
            # One 0/1 flag per (list, catalog movie): fast while batch x catalog stays small.
            rated = tf.tensor_scatter_nd_update(tf.zeros([batch * rows]), rated_keys[:, None],
                                                tf.ones(tf.shape(rated_keys)))  # a movie rated twice is still 1
            return tf.gather(rated, keys)

        def sorted_lookup():
            # Sorted keys of the rated movies; a sentinel past every key keeps the search in range.
            rated = tf.concat([tf.sort(rated_keys), [tf.int64.max]], axis=0)
            flat = tf.reshape(keys, [-1])
            return tf.reshape(tf.cast(tf.gather(rated, tf.searchsorted(rated, flat)) == flat, tf.float32),
                              tf.shape(sources))

        found = tf.cond(batch * rows <= _DENSE_LOOKUP_LIMIT, dense_lookup, sorted_lookup)  # [batch, N, k] 0 or 1
        return tf.reduce_sum(found * tf.gather(self.neighbour_weights, movie_rows), axis=2)

    def add_item_item_candidates(self, user_id: tf.Tensor, queries: tf.Tensor, movie_ids: tf.Tensor,
                                 retrieval_scores: tf.Tensor, exclude: tf.RaggedTensor | None = None):
        """Appends to each list the ``item_candidates`` movies with the highest item-item scores that it
        does not hold and ``exclude`` does not name, with their retrieval scores (``queries`` . candidate).

        Reads the stored item-item table (:meth:`materialize_neighbour_scores`). An added slot is
        empty (score ``-inf``) where its item-item score is not positive, and for unknown users.

        Args:
            user_id: [batch]; queries: their retrieval queries [batch, full dim].
            movie_ids, retrieval_scores: retrieval's candidates [batch, N].
            exclude: catalog positions never to add (the seen movies), one ragged row per user.

        Returns:
            ``(movie_ids, retrieval_scores, retrieved)`` [batch, N + item_candidates]; ``retrieved``
            is False on the added slots.
        """
        user_rows = tf.cast(self.user_lookup(user_id), tf.int64)
        table = tf.gather(self.neighbour_table, user_rows)  # [batch, catalog + 1]
        batch, width = tf.shape(table, out_type=tf.int64)[0], tf.shape(movie_ids, out_type=tf.int64)[1]
        # Never row 0 (unknown), a movie already in the list, or an excluded one.
        taken = [tf.stack([tf.range(batch), tf.zeros([batch], tf.int64)], axis=1),
                 tf.stack([tf.repeat(tf.range(batch), width), tf.reshape(self.catalog_lookup(movie_ids), [-1])], axis=1)]
        if exclude is not None:
            taken.append(tf.stack([exclude.value_rowids(), tf.cast(exclude.flat_values, tf.int64) + 1], axis=1))
        taken = tf.concat(taken, axis=0)
        table = tf.tensor_scatter_nd_update(table, taken, tf.fill(tf.shape(taken)[:1], tf.constant(-np.inf)))
        item_scores, rows = tf.math.top_k(table, k=tf.minimum(self.item_candidates, tf.shape(table)[1] - 1))
        logits = tf.einsum("bd,bmd->bm", tf.cast(queries, tf.float32), tf.gather(self.candidate_vectors, rows))
        usable = (item_scores > 0) & (user_rows > 0)[:, None]
        added = tf.shape(rows)[1]
        return (tf.concat([movie_ids, tf.gather(self.row_ids, rows)], axis=1),
                tf.concat([retrieval_scores, tf.where(usable, logits, tf.constant(-np.inf))], axis=1),
                tf.concat([tf.ones(tf.shape(movie_ids), tf.bool), tf.zeros([batch, added], tf.bool)], axis=1))

    def features(self, user_id: tf.Tensor, movie_ids: tf.Tensor, retrieval_scores: tf.Tensor,
                 retrieved: tf.Tensor | None = None):
        """The relevance features [batch, N, len(FEATURES)], predicted ratings [batch, N] and the valid-slot mask.

        ``retrieved`` [batch, N]: False on the slots the item-item model added (default: none).
        """
        valid = tf.math.is_finite(retrieval_scores)
        logits = tf.where(valid, retrieval_scores * self.scale, 0.0)
        best = tf.reduce_max(tf.where(valid, logits, -1e9), axis=1, keepdims=True)
        batch, width = tf.shape(movie_ids)[0], tf.shape(movie_ids)[1]
        users = tf.reshape(tf.repeat(user_id[:, None], width, axis=1), [-1])
        predicted = tf.reshape(tf.cast(self.rating_model({"user_id": users, "movie_id": tf.reshape(movie_ids, [-1])}),
                                       tf.float32), [batch, width])
        predicted = tf.stop_gradient(predicted)
        valid_count = tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32), axis=1, keepdims=True), 1.0)
        mean_predicted = tf.reduce_sum(tf.where(valid, predicted, 0.0), axis=1, keepdims=True) / valid_count
        movie_rows = self.catalog_lookup(movie_ids)
        user_rows = self.user_lookup(user_id)
        genre_match = tf.einsum("bng,bg->bn", tf.gather(self.genres, movie_rows), tf.gather(self.genre_profile, user_rows))
        similarity = tf.einsum("bnd,bd->bn", tf.gather(self.embeddings, movie_rows),
                               tf.gather(self.embedding_profile, user_rows))
        activity = tf.repeat(tf.gather(self.activity, user_rows)[:, None], width, axis=1)
        neighbour = self.neighbour_scores(user_rows, movie_rows)
        retrieved = tf.ones_like(valid) if retrieved is None else retrieved

        def z_score(values):  # within each list's valid slots: the per-user scale of the two sources' scores
            mean = tf.reduce_sum(tf.where(valid, values, 0.0), axis=1, keepdims=True) / valid_count
            spread = tf.reduce_sum(tf.where(valid, tf.square(values - mean), 0.0), axis=1, keepdims=True) / valid_count
            return tf.where(valid, (values - mean) / tf.sqrt(spread + 1e-6), 0.0)

        columns = [logits, logits - best, predicted, predicted - mean_predicted, tf.gather(self.popularity, movie_rows),
                   tf.gather(self.mean_rating, movie_rows), activity, genre_match, similarity, neighbour,
                   neighbour / tf.maximum(tf.math.expm1(activity), 1.0), tf.cast(retrieved, tf.float32),
                   z_score(logits), z_score(neighbour)]
        return tf.stack(columns, axis=-1), predicted, valid

    def score(self, user_id: tf.Tensor, movie_ids: tf.Tensor, retrieval_scores: tf.Tensor, training: bool = False,
              retrieved: tf.Tensor | None = None):
        """Relevance scores [batch, N] (``-inf`` on empty slots) and predicted ratings [batch, N]."""
        features, predicted, valid = self.features(user_id, movie_ids, retrieval_scores, retrieved)
        return self.score_features(features, valid, training=training), predicted

    def score_features(self, features: tf.Tensor, valid: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Relevance scores from computed :meth:`features` (the rating head is frozen, so they can be computed once)."""
        adjustment = tf.squeeze(self.mlp(self.normalization(features), training=training), axis=-1)
        scores = self.base_scale * base_scores(features, self.item_weight) + tf.cast(adjustment, tf.float32)
        return tf.where(valid, scores, tf.constant(-np.inf, tf.float32))

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if "features" in inputs:
            return self.score_features(inputs["features"], inputs["valid"], training=training)
        return self.score(inputs["user_id"], inputs["movie_ids"], inputs["retrieval_scores"], training=training)[0]

    def list_features(self, lists: CandidateLists, batch_lists: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`features` and the valid-slot mask of every list, computed in batches (NumPy).

        Written into arrays made once: at 20M ratings the lists' features are hundreds of MB, and
        joining per-batch parts would hold them twice.
        """
        slots = lists.movie_ids.shape[1] if len(lists) else 0
        features = np.zeros((len(lists), slots, len(FEATURES)), np.float32)
        valid = np.zeros((len(lists), slots), bool)
        for start in range(0, len(lists), batch_lists):
            part = lists.take(np.arange(start, min(start + batch_lists, len(lists))))
            computed, _, mask = self.features(tf.constant(part.user_ids.astype(str)), tf.constant(part.movie_ids),
                                              tf.constant(part.retrieval_scores), tf.constant(part.retrieved_mask))
            features[start : start + len(part)] = computed.numpy()
            valid[start : start + len(part)] = mask.numpy()
        return features, valid

    # Traced without AutoGraph, as the rating model's loss is (no control flow on tensors).
    @tf.autograph.experimental.do_not_convert
    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        scores = self(inputs, training=training)
        labels = inputs["labels"]
        # Softmax over each list; empty slots get a vanishing share, lists' labels sum to 1.
        scores = tf.where(tf.math.is_finite(scores), scores, -1e9)
        targets = labels / tf.maximum(tf.reduce_sum(labels, axis=1, keepdims=True), 1e-9)
        total = in_float32(lambda: self.task(labels=targets, predictions=scores))
        return total / tf.cast(tf.shape(labels)[0], total.dtype)


def base_scores(features, item_weight):
    """The score the relevance MLP adds to: retrieval logit + ``item_weight`` x the item-item z-score within the list."""
    return features[..., 0] + item_weight * features[..., FEATURES.index("item-item score as a z-score within the list")]


def list_cross_entropy(scores: np.ndarray, valid: np.ndarray, labels: np.ndarray) -> float:
    """The mean softmax cross-entropy of ``scores`` [lists, slots] against each list's labels (as training computes it)."""
    scores = np.where(valid, scores, -np.inf)
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_softmax = np.where(valid, shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), 0.0)
    targets = labels / np.maximum(labels.sum(axis=1, keepdims=True), 1e-9)
    return float(-(targets * log_softmax).sum(axis=1).mean())


def calibrate_base_scale(base: np.ndarray, valid: np.ndarray, labels: np.ndarray) -> float:
    """The factor of the base scores [lists, slots] with the lowest softmax cross-entropy on these lists
    (between e^-6 and e^6; the cross-entropy is convex in it). Scaling keeps each list's order."""
    found = minimize_scalar(lambda log_scale: list_cross_entropy(np.exp(log_scale) * base, valid, labels),
                            bounds=(-6.0, 6.0), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(found.x))


def top_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The labels [lists, k] of each list's ``k`` best-scored slots, best first (ties: the earlier slot)."""
    return np.take_along_axis(labels, top_k_columns(scores, k), axis=1)


def choose_item_weight(features: np.ndarray, valid: np.ndarray, labels: np.ndarray, relevant: np.ndarray,
                       weights=ITEM_WEIGHTS, k: int = 10) -> tuple[float, dict]:
    """The weight of the base score's item-item term with the best NDCG@k on these lists (the first of ties),
    and the NDCG@k of each weight: the ranker starts from this blend of its two sources and learns corrections."""
    found = {}
    for weight in weights:
        scores = np.where(valid, base_scores(features, weight), -np.inf)
        found[weight] = ndcg_of_lists(top_hits(scores, labels, k), relevant)
    return max(found, key=lambda weight: (found[weight], -weight)), found


class _ListValidation(tf.keras.callbacks.Callback):
    """Logs ``val_ndcg_at_10`` and ``val_recall_at_10`` of the ranker's order on held-out users' lists."""

    def __init__(self, lists: CandidateLists, features: np.ndarray, valid: np.ndarray, k: int = 10) -> None:
        super().__init__()
        self.lists, self.features, self.valid, self.k = lists, tf.constant(features), tf.constant(valid), k

    def _hits(self, model: ListRanker) -> np.ndarray:
        return top_hits(model.score_features(self.features, self.valid).numpy(), self.lists.labels, self.k)

    def ndcg(self, model: ListRanker) -> float:
        """NDCG@k of ``model``'s order of the lists (before training: the starting blend's)."""
        return ndcg_of_lists(self._hits(model), self.lists.relevant)

    def on_epoch_end(self, epoch, logs=None):
        hits = self._hits(self.model)
        if logs is not None:
            logs[f"val_ndcg_at_{self.k}"] = ndcg_of_lists(hits, self.lists.relevant)
            logs[f"val_recall_at_{self.k}"] = recall_of_lists(hits, self.lists.relevant)


def split_lists(lists: CandidateLists, stop_fraction: float, seed: int) -> tuple[CandidateLists, CandidateLists]:
    """Lists with at least one relevant candidate, split by user into (training, early-stopping) parts."""
    useful = np.flatnonzero(lists.labels.sum(axis=1) > 0)
    rng = np.random.default_rng(seed + 2)
    shuffled = rng.permutation(useful)
    stop = max(1, int(round(len(shuffled) * stop_fraction))) if len(shuffled) > 1 else 0
    return lists.take(np.sort(shuffled[stop:])), lists.take(np.sort(shuffled[:stop]))


def valid_slots(features: np.ndarray, valid: np.ndarray, lists_per_batch: int = 1024) -> tf.data.Dataset:
    """The feature rows of the valid slots, a batch of lists at a time (for ``Normalization.adapt``,
    which merges the batches' statistics): not one copy of every valid row at once."""
    def batches():
        for start in range(0, len(features), lists_per_batch):
            rows = features[start : start + lists_per_batch][valid[start : start + lists_per_batch]]
            if len(rows):  # an empty batch's mean is NaN, and adapt would merge it
                yield rows

    return tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec([None, features.shape[-1]], tf.float32))


def pad_slots(array: np.ndarray, width: int) -> np.ndarray:
    """``array`` [lists, slots, ...] with empty slots (zeros, False) appended up to ``width``."""
    return np.pad(array, [(0, 0), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2))


def make_list_ranker(rating_model: RatingModel, prepared: Prepared, embeddings: np.ndarray, scale: float,
                     config: RankerConfig, *, candidate_vectors: np.ndarray | None = None,
                     strategy: tf.distribute.Strategy | None = None,
                     item_table: ItemNeighbours | None = None) -> ListRanker:
    """A :class:`ListRanker` over the fitting part's tables, in float32, in ``strategy``'s scope, with its
    item-item scores stored where they fit (as the exported model stores them, so that it learns from
    the scores it will serve with); ``item_table``: see :class:`ListRanker`."""
    with (strategy or tf.distribute.get_strategy()).scope():
        # In float32 whatever the precision policy: its few features are scores and counts, not embeddings.
        model = in_float32(lambda: ListRanker(rating_model, prepared, embeddings, scale, config, candidate_vectors,
                                              item_table))
    model.materialize_neighbour_scores()
    return model


def add_item_item_candidates(model: ListRanker, lists: CandidateLists, retriever, holdout: pd.DataFrame,
                             batch_users: int = 256) -> CandidateLists:
    """``lists`` with the item-item model's candidates appended (:meth:`ListRanker.add_item_item_candidates`),
    labelled against ``holdout``.

    The item-item scores come from the ranker's current (fitting-part) tables, stored first if they
    are not yet; where the users x catalog table is over the limit, nothing is added and
    ``model.item_candidates`` becomes 0, so that serving matches training.

    Args:
        retriever: the :class:`~tfrs_pipeline.retrieval.candidates.CandidateRetriever` that made
            ``lists`` (its queries score the added movies; its seen movies are never added).
    """
    if not model.item_candidates or not len(lists):
        return lists
    if not model.scores_stored and not model.materialize_neighbour_scores():
        model.item_candidates = 0
        return lists
    ids, scores, retrieved = [], [], []
    for start in range(0, len(lists), batch_users):
        users = tf.constant(lists.user_ids[start : start + batch_users].astype(str))
        merged = model.add_item_item_candidates(users, retriever.query_tower.serve(users),
                                                tf.constant(lists.movie_ids[start : start + batch_users]),
                                                tf.constant(lists.retrieval_scores[start : start + batch_users]),
                                                retriever.seen(users))
        ids.append(merged[0].numpy().astype(str))
        scores.append(merged[1].numpy())
        retrieved.append(merged[2].numpy())
    ids, scores, retrieved = np.concatenate(ids), np.concatenate(scores), np.concatenate(retrieved)
    labels = holdout_labels(lists.user_ids, ids, holdout) * np.isfinite(scores)  # an empty slot is never relevant
    return CandidateLists(lists.user_ids, ids, scores, labels, lists.relevant, retrieved)


def train_list_ranker(rating_model: RatingModel, prepared: Prepared, embeddings: np.ndarray, lists: CandidateLists,
                      scale: float, config: RankerConfig, *, seed: int = 7, log_dir: str | Path | None = None,
                      verbose: int = -1, strategy: tf.distribute.Strategy | None = None,
                      backup: StageBackup | None = None, model: ListRanker | None = None,
                      cross_fitted=None) -> TrainingResult:
    """Trains the relevance head on ``lists``; early-stops on NDCG@10 of a fifth of their users (best weights kept;
    with ``cross_fitted`` lists, the starting blend's where no epoch beats it, ``best_epoch`` 0).

    Args:
        model: the ranker to train (default: a new one, :func:`make_list_ranker`).
        cross_fitted: more training lists' features (:class:`~tfrs_pipeline.ranking.cross_fit.CrossFitLists`);
            early stopping stays on the hold-out's lists, the ones made as serving makes them, and
            the starting blend is served where no epoch orders those better.

    Returns:
        The :class:`ListRanker`, its per-epoch history, seconds and lists per second.
    """
    tf.keras.utils.set_random_seed(seed)
    train, stop = split_lists(lists, 0.2, seed)
    strategy = strategy or tf.distribute.get_strategy()
    if model is None:
        model = make_list_ranker(rating_model, prepared, embeddings, scale, config, strategy=strategy)
    features, valid = model.list_features(train)
    labels = train.labels.astype(np.float32)
    if len(train):  # the start: the best blend of the two sources on the hold-out's training lists
        weight, model.item_weight_choice = choose_item_weight(features, valid, labels, train.relevant)
        model.item_weight.assign(weight)
        model.base_scale.assign(calibrate_base_scale(base_scores(features, weight), valid, labels))
    if cross_fitted is not None and len(cross_fitted):
        width = max(features.shape[1], cross_fitted.features.shape[1])
        features = np.concatenate([pad_slots(features, width), pad_slots(cross_fitted.features, width)])
        valid = np.concatenate([pad_slots(valid, width), pad_slots(cross_fitted.valid, width)])
        labels = np.concatenate([pad_slots(labels, width), pad_slots(cross_fitted.labels.astype(np.float32), width)])
    examples = len(labels)
    with strategy.scope():
        if examples:
            model.normalization.adapt(valid_slots(features, valid))
        model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    if not examples:
        return TrainingResult(model)
    tensors = {"features": tf.constant(features), "valid": tf.constant(valid), "labels": tf.constant(labels)}
    del features, valid, labels  # the tensors hold them now
    dataset = shuffled_row_batches(examples, config.batch_size, seed).map(
        lambda rows: {name: tf.gather(tensor, rows) for name, tensor in tensors.items()})
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    callbacks = [_ListValidation(stop, *model.list_features(stop))] if len(stop) else []
    # Cross-fitted lists come from models trained without their fold, not from the served ones: where
    # learning from them orders the early-stopping lists (made as serving makes them) no better than the
    # starting blend, the start is kept. Without them, the start is not a candidate: on the demo data it
    # won the ~160 early-stopping lists on a seed where the trained epoch ranked the test side better.
    start = None
    if callbacks and cross_fitted is not None and len(cross_fitted):
        value = callbacks[0].ndcg(model)  # builds the MLP, so its weights exist
        start = (value, model.get_weights())
    return fit(model, dataset, None, epochs=config.epochs, monitor="val_ndcg_at_10" if len(stop) else "loss",
               mode="max" if len(stop) else "min", patience=config.patience, examples=examples, log_dir=log_dir,
               verbose=verbose, stage="list ranking", shown=("loss", "val_ndcg_at_10", "val_recall_at_10"),
               extra_callbacks=callbacks, early_stopping_without_validation=bool(len(stop)), backup=backup,
               settings="ranker", initial=start)
