"""The second stage's list ranker: orders retrieval's candidates, trained on the lists it will rank.

Training examples have the shape of serving. For each user of the validation hold-out,
the retrieval stage proposes its top ``N`` movies with the user's fitting-part movies
excluded, from a query built on the fitting part alone; a candidate is relevant (label
1) where the user went on to rate it in the hold-out. The retrieval model never trained
on those ratings and never saw them in a history, so the candidates and their scores
look as they will at serving time. The item-item model then adds its best-scored movies
that retrieval did not return (:func:`add_item_item_candidates`, ``ranker.item_candidates``),
so the ranker can reach movies retrieval missed; serving merges the two sources the same way.

:class:`ListRanker` is a ``tfrs.Model`` whose every input is a movie or the user's history
(the catalog rows of the movies they rated), never a user id: a visitor who brings a known
user's history is scored exactly as that user, and a rating made after training counts
as soon as a request brings it. Its features: the retrieval logit (absolute, relative to the
list's best, and as a z-score within the list), the movie's popularity and shrunk mean
rating, the history's length, the match of the movie's genres with the history's, the mean
cosine between the movie and the history's movies in the candidate-embedding space, and the
movie's item-item score from the history (EASE or ItemKNN weights, computed per request by
:class:`~tfrs_pipeline.ranking.item_scores.ItemItemScores`; EASE counts co-ratings made minutes
apart more where the hold-out says it helps, :func:`build_item_table`), absolute, per rated
movie and as a z-score. A linear head (or an MLP) adds to a base score, the retrieval logit plus
a weight times the item-item z-score, the weight being the one whose order has the best NDCG@10
on the training lists (:func:`choose_item_weight`), times the factor with the lowest softmax
cross-entropy on them (:func:`calibrate_base_scale`); the head starts at zero, so training starts
from that blend of the two sources. It is trained with a softmax cross-entropy over each list
(``tfrs.tasks.Ranking``). Predicted ratings come from the rating model beside it
(:class:`~tfrs_pipeline.ranking.rating.RatingModel`), not from the ranker.

Examples:
    >>> lists = candidate_lists(retriever, prepared.validation, num_candidates=100)  # doctest: +SKIP
    >>> result = train_list_ranker(prepared, embeddings, lists, histories, scale=5.0,
    ...                            config=RankerConfig())  # doctest: +SKIP
    >>> scores = result.model.score(history_rows, movie_ids, retrieval_scores)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
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
from tfrs_pipeline.features.tables import MovieTable
from tfrs_pipeline.features.vocabulary import id_lookup
from tfrs_pipeline.ids import id_positions
from tfrs_pipeline.metrics import ndcg_of_lists, recall_and_ndcg, recall_of_lists, top_k_columns
from tfrs_pipeline.ranking.item_scores import item_item_scores
from tfrs_pipeline.ranking.neighbours import ItemNeighbours, Sessions, rating_matrix
from tfrs_pipeline.ranking.rating import RatingModel
from tfrs_pipeline.retrieval.index import SeenMovies
from tfrs_pipeline.training.backup import StageBackup
from tfrs_pipeline.training.loop import TrainingResult, fit, in_float32
from tfrs_pipeline.training.step import ScaledLossModel

#: The relevance head's input features, in order (for reports and the README).
FEATURES = ("retrieval logit", "logit minus the list's best", "predicted rating for the history",
            "predicted rating for the history minus the list's mean", "log(1 + training ratings of the movie)",
            "movie's shrunk mean rating", "log(1 + length of the user's history)", "genre match with the user's history",
            "mean cosine to the user's rated movies", "item-item score from the user's rated movies (EASE or ItemKNN)",
            "the same per rated movie", "retrieved by the two-tower model (0: added by the item-item model)",
            "retrieval logit as a z-score within the list", "item-item score as a z-score within the list")

#: A history of at most this many times ``ranker.short_history`` movies is scored by the short-history
#: head (trained on lists from that many movies), a longer one by the head trained on whole histories.
SHORT_HEAD_REACH = 2
#: The feature holding log(1 + the history's length).
ACTIVITY = FEATURES.index("log(1 + length of the user's history)")


#: Weights of the item-item z-score tried for the ranker's base score (0: retrieval's order).
ITEM_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)

#: Most EASE movies whose weights are fitted a second time, on the whole training side, for the
#: exported ranker: above it that fit costs minutes and its matrix (4 n^2 bytes, 576 MB at 12,000)
#: would come on top of what training holds resident, so the fitting part's weights are served.
REFIT_MAX_EASE_MOVIES = 12_000


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
        histories: the history each list was made from, catalog rows, one array per list (None:
            each user's whole fitting part, looked up by user id).
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    retrieval_scores: np.ndarray
    labels: np.ndarray
    relevant: np.ndarray
    retrieved: np.ndarray | None = None
    histories: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.user_ids)

    def take(self, rows: np.ndarray) -> CandidateLists:
        return CandidateLists(self.user_ids[rows], self.movie_ids[rows], self.retrieval_scores[rows], self.labels[rows],
                              self.relevant[rows], None if self.retrieved is None else self.retrieved[rows],
                              None if self.histories is None else [self.histories[row] for row in rows])

    def history_rows(self, histories: SeenMovies) -> tf.RaggedTensor:
        """Each list's history as catalog rows: its own, or its user's in ``histories``."""
        if self.histories is None:
            return history_rows(histories, self.user_ids)
        lengths = [len(rows) for rows in self.histories]
        values = np.concatenate(self.histories) if self.histories else np.zeros(0, np.int64)
        return tf.RaggedTensor.from_row_lengths(values.astype(np.int64), np.asarray(lengths, np.int64))

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


def item_table_settings(config: RankerConfig) -> dict:
    """:meth:`ItemNeighbours.build`'s settings for a ranker of ``config`` (the session kernel aside)."""
    return {"k": config.neighbours, "kind": config.item_model, "regularization": config.ease_regularization,
            "max_weights": config.max_item_weights}


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
    settings = item_table_settings(config)
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


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """``rows`` scaled to unit length (a zero row stays zero)."""
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def with_empty_row(rows: np.ndarray) -> np.ndarray:
    """``rows`` [n, d] in float32 below a row of zeros: row 0 stands for the unknown id."""
    return np.vstack([np.zeros((1, rows.shape[1])), rows]).astype(np.float32)


def history_rows(histories: SeenMovies, user_ids) -> tf.RaggedTensor:
    """Each user's rated movies as catalog rows (positions + 1), one ragged row per user."""
    seen = histories(tf.constant(np.asarray(user_ids).astype(str)) if not tf.is_tensor(user_ids) else user_ids)
    return seen.with_flat_values(tf.cast(seen.flat_values, tf.int64) + 1)


class ListRanker(ScaledLossModel):
    """Scores retrieval's candidates for a user from their history.

    Args:
        rating_model: the trained rating model (frozen here): the predicted rating of each candidate
            for a rater with the user's history is a feature.
        prepared: the catalog's tables (popularity, mean ratings, genres) of the fitting part.
        embeddings: candidate-tower embeddings of the catalog [movies, dim] (their direction is used).
        scale: retrieval score -> logit factor.
        config: ``hidden_units`` of the relevance head, the item-item model and ``item_candidates``.
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
        # Each catalog row's row in the rating model's movie vocabulary (0: unknown), for the history it rates from.
        self.vocab_rows = tf.Variable(np.concatenate([[0], pd.Index(prepared.vocab.movie_ids).get_indexer(
            np.asarray(prepared.movies.movie_ids).astype(str)) + 1]).astype(np.int64), trainable=False, name="vocab_rows")
        self.scale = tf.constant(float(scale), tf.float32)
        unit = unit_rows(np.asarray(embeddings, np.float32))
        self.catalog_lookup = id_lookup(prepared.movies.movie_ids, "catalog_ids")
        self.embeddings = tf.Variable(with_empty_row(unit), trainable=False, name="unit_movie_embeddings")
        self.genres = tf.Variable(prepared.movies.genres.astype(np.float32), trainable=False, name="genres")
        # Counted on the data the ranker is served with: swapped by use_tables at export.
        rows = len(prepared.movies.movie_ids) + 1
        self.popularity = tf.Variable(tf.zeros([rows]), trainable=False, name="log_popularity")
        self.mean_rating = tf.Variable(tf.zeros([rows]), trainable=False, name="mean_rating")
        # Item-item weights from the fitting part only: a hold-out rating must not count for its own movie.
        self._item_settings = item_table_settings(config)
        table = self._item_table = item_table or build_item_table(prepared, config)
        self._item_settings["sessions"] = table.sessions  # the refit at export fits the model chosen here
        self.session_choice = dict(table.session_choice)
        self.item_model = table.kind
        self.item_model_description = table.describe()
        self.item_item = item_item_scores(table)
        # Item-item candidates: each catalog row's id and retrieval candidate vector (row 0: none).
        self.item_candidates = int(config.item_candidates) if candidate_vectors is not None else 0
        vectors = np.zeros((len(prepared.movies.movie_ids), 1), np.float32) if candidate_vectors is None else candidate_vectors
        self.candidate_vectors = tf.Variable(with_empty_row(vectors), trainable=False, name="candidate_vectors")
        # A constant, not a variable: a multi-worker strategy cannot broadcast string variables.
        self.row_ids = tf.constant(np.concatenate([[""], np.asarray(prepared.movies.movie_ids).astype(str)]),
                                   name="catalog_row_ids")
        self.use_tables(prepared.movies)
        # Two heads over the same features: one trained on whole histories' lists, one on short
        # histories' (a visitor's few movies), which score differently: an item-item score from five
        # movies is worth far less than from hundreds. A history of at most ``short_limit`` movies
        # (0: none) is scored by the second.
        self.head = RelevanceHead(config.hidden_units, name="relevance_head")
        self.short_head = RelevanceHead(config.hidden_units, name="short_history_head")
        self.short_limit = tf.Variable(0.0, trainable=False, name="short_history_limit")

    def use_tables(self, movies: MovieTable) -> None:
        """Counts popularity and mean ratings on another side of the data (the whole training side, at export)."""
        self.popularity.assign(np.log1p(movies.train_count).astype(np.float32))
        self.mean_rating.assign(movies.mean_rating.astype(np.float32))

    def use_retrieval(self, embeddings: np.ndarray, candidate_vectors: np.ndarray) -> None:
        """Takes another retrieval model's catalog embeddings (the refitted one's, at export), as
        :meth:`__init__` took the first's: their directions for the cosine features, the index's
        vectors for the item-item candidates' retrieval logits. The relevance head reads statistics
        of the space (logits, cosines, z-scores within a list), not its axes, so it carries over to
        a model of the same settings.
        """
        unit = unit_rows(np.asarray(embeddings, np.float32))
        if unit.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"use_retrieval: embeddings of {unit.shape[1]} dimensions, the ranker's are "
                             f"{self.embeddings.shape[1]}")
        self.embeddings.assign(with_empty_row(unit))
        if self.candidate_vectors.shape[1] == candidate_vectors.shape[1]:  # else built without them: none to swap
            self.candidate_vectors.assign(with_empty_row(candidate_vectors))

    @property
    def item_sessions(self) -> Sessions | None:
        """The session kernel of the item-item model (None: plain co-rating counts)."""
        return self._item_settings["sessions"]

    @property
    def item_table(self) -> ItemNeighbours:
        """The item-item model whose kept weights the ranker scores with."""
        return self._item_table

    def refit_item_item(self, train: pd.DataFrame) -> None:
        """Fits the item-item model again on ``train`` (the whole training side, at export, as the
        rating model's matrix factorization is), over the same catalog and with the same settings."""
        table = ItemNeighbours.build(train, self.row_ids.numpy()[1:].astype(str), **self._item_settings)
        if table.dense != self._item_table.dense:  # the same catalog: the same form, unless the rated movies changed it
            raise ValueError("refit_item_item: the refit's weights are "
                             f"{'dense' if table.dense else 'sparse'}, the ranker's are not")
        self._item_table = table
        self.item_model, self.item_model_description = table.kind, table.describe()
        self.item_item.assign(table.weights)

    def item_scores(self, history: tf.RaggedTensor) -> tf.Tensor:
        """The item-item score of every catalog row [batch, catalog + 1] from each history (catalog rows)."""
        return self.item_item(history)

    def contributions(self, history: tf.RaggedTensor, movie_id: tf.Tensor) -> tf.RaggedTensor:
        """Each history movie's weight to ``movie_id`` [batch] in the item-item score, one ragged row per
        history: they sum to the ranker's item-item feature for that (history, movie)."""
        return self.item_item.contributions(history, self.catalog_lookup(movie_id))

    def add_item_item_candidates(self, item_scores: tf.Tensor, queries: tf.Tensor, movie_ids: tf.Tensor,
                                 retrieval_scores: tf.Tensor, exclude: tf.RaggedTensor | None = None):
        """Appends to each list the ``item_candidates`` movies with the highest item-item scores that it
        does not hold and ``exclude`` does not name, with their retrieval scores (``queries`` . candidate).

        An added slot is empty (score ``-inf``) where its item-item score is not positive (and so for
        an empty history).

        Args:
            item_scores: :meth:`item_scores` of the histories [batch, catalog + 1].
            queries: their retrieval queries [batch, full dim].
            movie_ids, retrieval_scores: retrieval's candidates [batch, N].
            exclude: catalog positions never to add (the history's), one ragged row per user.

        Returns:
            ``(movie_ids, retrieval_scores, retrieved)`` [batch, N + item_candidates]; ``retrieved``
            is False on the added slots.
        """
        batch, width = tf.shape(item_scores, out_type=tf.int64)[0], tf.shape(movie_ids, out_type=tf.int64)[1]
        # Never row 0 (unknown), a movie already in the list, or an excluded one.
        taken = [tf.stack([tf.range(batch), tf.zeros([batch], tf.int64)], axis=1),
                 tf.stack([tf.repeat(tf.range(batch), width), tf.reshape(self.catalog_lookup(movie_ids), [-1])], axis=1)]
        if exclude is not None:
            taken.append(tf.stack([exclude.value_rowids(), tf.cast(exclude.flat_values, tf.int64) + 1], axis=1))
        taken = tf.concat(taken, axis=0)
        table = tf.tensor_scatter_nd_update(item_scores, taken, tf.fill(tf.shape(taken)[:1], tf.constant(-np.inf)))
        added_scores, rows = tf.math.top_k(table, k=tf.minimum(self.item_candidates, tf.shape(table)[1] - 1))
        logits = tf.einsum("bd,bmd->bm", tf.cast(queries, tf.float32), tf.gather(self.candidate_vectors, rows))
        usable = added_scores > 0
        added = tf.shape(rows)[1]
        return (tf.concat([movie_ids, tf.gather(self.row_ids, rows)], axis=1),
                tf.concat([retrieval_scores, tf.where(usable, logits, tf.constant(-np.inf))], axis=1),
                tf.concat([tf.ones(tf.shape(movie_ids), tf.bool), tf.zeros([batch, added], tf.bool)], axis=1))

    def features(self, history: tf.RaggedTensor, movie_ids: tf.Tensor, retrieval_scores: tf.Tensor,
                 retrieved: tf.Tensor | None = None, item_scores: tf.Tensor | None = None):
        """The relevance features [batch, N, len(FEATURES)] and the valid-slot mask [batch, N].

        Args:
            history: each user's rated movies, catalog rows (ragged [batch, None]).
            movie_ids, retrieval_scores: the candidates [batch, N] (``-inf``: an empty slot).
            retrieved: False on the slots the item-item model added (default: none).
            item_scores: :meth:`item_scores` of ``history``, if computed already.
        """
        valid = tf.math.is_finite(retrieval_scores)
        logits = tf.where(valid, retrieval_scores * self.scale, 0.0)
        history = history.with_flat_values(tf.cast(history.flat_values, tf.int64))
        # The rating model's prediction for a rater of this history (no user id: a visitor's and a known
        # user's are the same); a user's own ratings bias shifts a list, not its order.
        raters = tf.fill(tf.shape(movie_ids)[:1], "")
        predicted = tf.stop_gradient(self.rating_model.rate(
            raters, history.with_flat_values(tf.gather(self.vocab_rows, history.flat_values)), movie_ids))
        best = tf.reduce_max(tf.where(valid, logits, -1e9), axis=1, keepdims=True)
        width = tf.shape(movie_ids)[1]
        valid_count = tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32), axis=1, keepdims=True), 1.0)
        mean_predicted = tf.reduce_sum(tf.where(valid, predicted, 0.0), axis=1, keepdims=True) / valid_count
        movie_rows = self.catalog_lookup(movie_ids)
        length = tf.cast(history.row_lengths(), tf.float32)[:, None]
        genre_profile = tf.math.l2_normalize(tf.reduce_sum(tf.gather(self.genres, history), axis=1), axis=1)
        embedding_profile = tf.reduce_sum(tf.gather(self.embeddings, history), axis=1) / tf.maximum(length, 1.0)
        genre_match = tf.einsum("bng,bg->bn", tf.math.l2_normalize(tf.gather(self.genres, movie_rows), axis=-1),
                                genre_profile)
        similarity = tf.einsum("bnd,bd->bn", tf.gather(self.embeddings, movie_rows), embedding_profile)
        activity = tf.repeat(tf.math.log1p(length), width, axis=1)
        if item_scores is None:
            item_scores = self.item_scores(history)
        neighbour = tf.gather(item_scores, movie_rows, batch_dims=1)
        retrieved = tf.ones_like(valid) if retrieved is None else retrieved

        def z_score(values):  # within each list's valid slots: the per-user scale of the two sources' scores
            mean = tf.reduce_sum(tf.where(valid, values, 0.0), axis=1, keepdims=True) / valid_count
            spread = tf.reduce_sum(tf.where(valid, tf.square(values - mean), 0.0), axis=1, keepdims=True) / valid_count
            return tf.where(valid, (values - mean) / tf.sqrt(spread + 1e-6), 0.0)

        columns = [logits, logits - best, predicted, predicted - mean_predicted, tf.gather(self.popularity, movie_rows),
                   tf.gather(self.mean_rating, movie_rows),
                   activity, genre_match, similarity, neighbour, neighbour / tf.maximum(length, 1.0),
                   tf.cast(retrieved, tf.float32), z_score(logits), z_score(neighbour)]
        return tf.stack(columns, axis=-1), valid

    def score(self, history: tf.RaggedTensor, movie_ids: tf.Tensor, retrieval_scores: tf.Tensor, training: bool = False,
              retrieved: tf.Tensor | None = None, item_scores: tf.Tensor | None = None) -> tf.Tensor:
        """Relevance scores [batch, N] (``-inf`` on empty slots); arguments as :meth:`features`."""
        features, valid = self.features(history, movie_ids, retrieval_scores, retrieved, item_scores)
        return self.score_features(features, valid, training=training)

    def score_features(self, features: tf.Tensor, valid: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Relevance scores from computed :meth:`features`: the short-history head's for a history of
        at most ``short_limit`` movies, the whole-history head's otherwise."""
        length = tf.math.expm1(features[:, :1, ACTIVITY])  # [batch, 1]: the same in every slot of a list
        short = length <= self.short_limit + 0.5
        return tf.where(short, self.short_head.score_features(features, valid, training=training),
                        self.head.score_features(features, valid, training=training))

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.score_features(inputs["features"], inputs["valid"], training=training)

    def list_features(self, lists: CandidateLists, histories: SeenMovies,
                      batch_lists: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`features` and the valid-slot mask of every list, the users' histories read from
        ``histories``, computed in batches (NumPy).

        Written into arrays made once: at 20M ratings the lists' features are hundreds of MB, and
        joining per-batch parts would hold them twice.
        """
        slots = lists.movie_ids.shape[1] if len(lists) else 0
        features = np.zeros((len(lists), slots, len(FEATURES)), np.float32)
        valid = np.zeros((len(lists), slots), bool)
        for start in range(0, len(lists), batch_lists):
            part = lists.take(np.arange(start, min(start + batch_lists, len(lists))))
            computed, mask = self.features(part.history_rows(histories), tf.constant(part.movie_ids),
                                           tf.constant(part.retrieval_scores), tf.constant(part.retrieved_mask))
            features[start : start + len(part)] = computed.numpy()
            valid[start : start + len(part)] = mask.numpy()
        return features, valid


class RelevanceHead(ScaledLossModel):
    """The score of each candidate from the list ranker's features: a base score, the retrieval logit
    plus ``item_weight`` x the item-item z-score, times ``base_scale``, plus a learned function (zero
    at the start) of the normalized features; trained with a softmax cross-entropy over each list.

    Args:
        hidden_units: ReLU layers of the learned function (none: linear).
    """

    def __init__(self, hidden_units, **kwargs) -> None:
        super().__init__(**kwargs)
        # The base score's weight on the item-item z-score, chosen by train_list_ranker before training
        # (item_weight_choice: the training lists' NDCG@10 of each weight tried).
        self.item_weight = tf.Variable(0.0, trainable=False, name="base_item_item_weight")
        self.item_weight_choice: dict[float, float] = {}
        # The base score's scale (a softmax temperature), fitted to the same lists before training
        # (:func:`calibrate_base_scale`): it changes no order, but without it the first epochs spend
        # the head's steps on shrinking an overconfident base and reorder the lists while doing so.
        self.base_scale = tf.Variable(1.0, trainable=False, name="base_scale")
        self.normalization = tf.keras.layers.Normalization(axis=-1, name="feature_normalization")
        layers = [tf.keras.layers.Dense(units, activation="relu") for units in hidden_units]
        # Zero output at first: the untrained head keeps its base score's order (retrieval's, until trained).
        self.mlp = tf.keras.Sequential(layers + [tf.keras.layers.Dense(1, kernel_initializer="zeros")], name="relevance_mlp")
        self.task = in_float32(lambda: tfrs.tasks.Ranking(
            loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.SUM)))

    def score_features(self, features: tf.Tensor, valid: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Relevance scores [batch, N] from :meth:`ListRanker.features` (``-inf`` on empty slots)."""
        adjustment = tf.squeeze(self.mlp(self.normalization(features), training=training), axis=-1)
        scores = self.base_scale * base_scores(features, self.item_weight) + tf.cast(adjustment, tf.float32)
        return tf.where(valid, scores, tf.constant(-np.inf, tf.float32))

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.score_features(inputs["features"], inputs["valid"], training=training)

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
    """Logs ``val_ndcg_at_10`` and ``val_recall_at_10`` of the ranker's order on held-out users' lists.

    Args:
        labels: the lists' labels [lists, N]; relevant: each list's hold-out movies [lists].
        features, valid: their :meth:`ListRanker.features` and valid slots.
    """

    def __init__(self, labels: np.ndarray, relevant: np.ndarray, features: np.ndarray, valid: np.ndarray,
                 k: int = 10) -> None:
        super().__init__()
        self.labels, self.relevant = labels, relevant
        self.features, self.valid, self.k = tf.constant(features), tf.constant(valid), k

    def _hits(self, model: ListRanker) -> np.ndarray:
        return top_hits(model.score_features(self.features, self.valid).numpy(), self.labels, self.k)

    def ndcg(self, model: ListRanker) -> float:
        """NDCG@k of ``model``'s order of the lists (before training: the starting blend's)."""
        return ndcg_of_lists(self._hits(model), self.relevant)

    def on_epoch_end(self, epoch, logs=None):
        hits = self._hits(self.model)
        if logs is not None:
            logs[f"val_ndcg_at_{self.k}"] = ndcg_of_lists(hits, self.relevant)
            logs[f"val_recall_at_{self.k}"] = recall_of_lists(hits, self.relevant)


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


def stacked(*parts: np.ndarray) -> np.ndarray:
    """Arrays [lists, slots, ...] one after the other, the narrower with empty slots appended."""
    width = max(part.shape[1] for part in parts)
    return np.concatenate([pad_slots(part, width) for part in parts])


def make_list_ranker(rating_model: RatingModel, prepared: Prepared, embeddings: np.ndarray, scale: float,
                     config: RankerConfig, *,
                     candidate_vectors: np.ndarray | None = None, strategy: tf.distribute.Strategy | None = None,
                     item_table: ItemNeighbours | None = None) -> ListRanker:
    """A :class:`ListRanker` over the fitting part's tables, in float32, in ``strategy``'s scope;
    ``item_table``: see :class:`ListRanker`."""
    with (strategy or tf.distribute.get_strategy()).scope():
        # In float32 whatever the precision policy: its few features are scores and counts, not embeddings.
        return in_float32(lambda: ListRanker(rating_model, prepared, embeddings, scale, config, candidate_vectors,
                                             item_table))


def add_item_item_candidates(model: ListRanker, lists: CandidateLists, retriever, holdout: pd.DataFrame,
                             batch_users: int = 256) -> CandidateLists:
    """``lists`` with the item-item model's candidates appended (:meth:`ListRanker.add_item_item_candidates`),
    labelled against ``holdout``, the users' histories and queries those of ``retriever``.

    Args:
        retriever: the :class:`~tfrs_pipeline.retrieval.candidates.CandidateRetriever` that made
            ``lists`` (its queries score the added movies; its seen movies are the histories, never added).
    """
    if not model.item_candidates or not len(lists):
        return lists
    ids, scores, retrieved = [], [], []
    for start in range(0, len(lists), batch_users):
        users = tf.constant(lists.user_ids[start : start + batch_users].astype(str))
        seen = retriever.seen(users)
        history = seen.with_flat_values(tf.cast(seen.flat_values, tf.int64) + 1)
        merged = model.add_item_item_candidates(model.item_scores(history), retriever.query_tower.serve(users),
                                                tf.constant(lists.movie_ids[start : start + batch_users]),
                                                tf.constant(lists.retrieval_scores[start : start + batch_users]), seen)
        ids.append(merged[0].numpy().astype(str))
        scores.append(merged[1].numpy())
        retrieved.append(merged[2].numpy())
    ids, scores, retrieved = np.concatenate(ids), np.concatenate(scores), np.concatenate(retrieved)
    labels = holdout_labels(lists.user_ids, ids, holdout) * np.isfinite(scores)  # an empty slot is never relevant
    return CandidateLists(lists.user_ids, ids, scores, labels, lists.relevant, retrieved)


#: Most hold-out users the short-history lists are made for (a fixed sample beyond): at 20M ratings
#: their features would otherwise hold gigabytes beside the whole histories' lists.
SHORT_HISTORY_USERS = 5_000
#: Short histories per hold-out user: the most recent movies and sets drawn at random.
SHORT_HISTORY_DRAWS = 4


def short_history_lists(model: ListRanker, retriever, prepared: Prepared, movies: int, num_candidates: int,
                        batch_users: int = 256, users: int = SHORT_HISTORY_USERS,
                        draws: int = SHORT_HISTORY_DRAWS, seed: int = 0) -> CandidateLists:
    """Candidate lists made as for a visitor who brings only ``movies`` of a hold-out user's
    fitting-part movies (``users`` of them at most): their most recent ones, and ``draws - 1`` more
    sets drawn at random (on a random split recent movies tell no more than others, and a few
    hundred lists leave the head's early stopping to chance). Retrieval and the item-item model
    work from those movies alone and exclude only them; the lists are labelled against the hold-out
    (a movie the user rated elsewhere in the fitting part is a candidate and not relevant, as for
    such a visitor). The ranker learns from them how far to trust an item-item score from a few movies.

    Args:
        retriever: the :class:`~tfrs_pipeline.retrieval.candidates.CandidateRetriever` over the
            fitting part, with its catalog ids (for :meth:`~tfrs_pipeline.retrieval.candidates.CandidateRetriever.from_history`).
    """
    holdout = prepared.validation
    rng = np.random.default_rng(seed)
    chosen = np.asarray(sorted(set(holdout["user_id"].astype(str))), dtype=object)
    if len(chosen) > users:
        chosen = chosen[np.sort(rng.choice(len(chosen), users, replace=False))]
    train = prepared.train
    owner = id_positions(pd.Index(chosen), train["user_id"])
    kept = np.flatnonzero(owner >= 0)
    rated = pd.DataFrame({"user": owner[kept], "time": np.asarray(train["timestamp"], np.float64)[kept],
                          "position": id_positions(pd.Index(np.asarray(prepared.movies.movie_ids).astype(str)),
                                                   train["movie_id"])[kept]})
    rated = rated[rated["position"] >= 0].sort_values(["user", "time"], kind="stable")
    by_user = {user: group.to_numpy() for user, group in rated.groupby("user")["position"]}
    users, histories = [], []
    for index, user in enumerate(chosen):
        positions = pd.unique(by_user.get(index, np.zeros(0, np.int64))[::-1])[::-1]  # a movie rated twice: its last time
        sets = [positions[-movies:]]  # the most recent first
        if len(positions) > movies:
            sets += [rng.choice(positions, movies, replace=False) for _ in range(draws - 1)]
        users += [user] * len(sets)
        histories += [np.sort(chosen_set).astype(np.int64) for chosen_set in sets]
    users = np.asarray(users, dtype=object)
    ids, scores, retrieved = [], [], []
    for start in range(0, len(histories), batch_users):
        part = histories[start : start + batch_users]
        positions = tf.RaggedTensor.from_row_lengths(np.concatenate(part).astype(np.int64) if part else
                                                     np.zeros(0, np.int64), [len(p) for p in part])
        visitors = tf.fill([len(part)], "")
        movie_ids, retrieval_scores, queries = retriever.from_history(visitors, positions, tf.constant(num_candidates))
        rows = positions.with_flat_values(positions.flat_values + 1)
        merged = (movie_ids, retrieval_scores, tf.ones(tf.shape(movie_ids), tf.bool))
        if model.item_candidates:
            merged = model.add_item_item_candidates(model.item_scores(rows), queries, movie_ids, retrieval_scores,
                                                    positions)
        ids.append(merged[0].numpy().astype(str))
        scores.append(merged[1].numpy())
        retrieved.append(merged[2].numpy())
    ids, scores, retrieved = np.concatenate(ids), np.concatenate(scores), np.concatenate(retrieved)
    labels = holdout_labels(users, ids, holdout) * np.isfinite(scores)
    relevant = holdout["user_id"].astype(str).value_counts().reindex(users).to_numpy()
    return CandidateLists(users, ids, scores, labels, relevant, retrieved, [rows + 1 for rows in histories])


def train_list_ranker(rating_model: RatingModel, prepared: Prepared, embeddings: np.ndarray, lists: CandidateLists,
                      histories: SeenMovies, scale: float, config: RankerConfig, *, seed: int = 7,
                      log_dir: str | Path | None = None, verbose: int = -1,
                      strategy: tf.distribute.Strategy | None = None, backup: StageBackup | None = None,
                      model: ListRanker | None = None, cross_fitted=None) -> TrainingResult:
    """Trains the ranker's whole-history head on ``lists``; early-stops on NDCG@10 of a fifth of their users
    (best weights kept; with ``cross_fitted`` lists, the starting blend's where no epoch beats it, ``best_epoch`` 0).

    Args:
        histories: the lists' users' rated movies (the fitting part's, the ones their candidates exclude).
        model: the ranker to train (default: a new one, :func:`make_list_ranker`).
        cross_fitted: more training lists' features (:class:`~tfrs_pipeline.ranking.cross_fit.CrossFitLists`);
            early stopping stays on the hold-out's lists, the ones made as serving makes them, and
            the starting blend is served where no epoch orders those better.

    Returns:
        The :class:`ListRanker`, its head's per-epoch history, seconds and lists per second.
    """
    tf.keras.utils.set_random_seed(seed)
    train, stop = split_lists(lists, 0.2, seed)
    strategy = strategy or tf.distribute.get_strategy()
    if model is None:
        model = make_list_ranker(rating_model, prepared, embeddings, scale, config, strategy=strategy)
    features, valid = model.list_features(train, histories)
    labels = train.labels.astype(np.float32)
    if cross_fitted is not None and len(cross_fitted):
        more = (cross_fitted.features, cross_fitted.valid, cross_fitted.labels.astype(np.float32))
    else:
        more, cross_fitted = None, None
    result = _train_head(model.head, train, features, valid, labels, stop, model.list_features(stop, histories),
                         config, seed, strategy, more=more, start_candidate=cross_fitted is not None,
                         log_dir=log_dir, verbose=verbose, backup=backup, stage="list ranking")
    return dataclasses.replace(result, model=model)


def train_short_history_head(model: ListRanker, short_lists: CandidateLists, stop_users: np.ndarray,
                             histories: SeenMovies, config: RankerConfig, *, seed: int = 7,
                             log_dir: str | Path | None = None, verbose: int = -1,
                             strategy: tf.distribute.Strategy | None = None) -> TrainingResult:
    """Trains the ranker's short-history head on lists made from a few movies (:func:`short_history_lists`)
    and has it score histories of up to :data:`SHORT_HEAD_REACH` x ``ranker.short_history`` movies.

    The whole-history head is not touched. It trains ``ranker.epochs`` epochs and keeps the one
    whose order of the lists of ``stop_users`` (the users the whole-history head early-stopped on: a
    user's lists share their labels) has the best NDCG@10.

    Returns:
        The head, its per-epoch history, seconds and lists per second.
    """
    tf.keras.utils.set_random_seed(seed)
    strategy = strategy or tf.distribute.get_strategy()
    useful = short_lists.labels.sum(axis=1) > 0
    stopping = np.isin(short_lists.user_ids, stop_users)
    train, stop = short_lists.take(np.flatnonzero(useful & ~stopping)), short_lists.take(np.flatnonzero(useful & stopping))
    features, valid = model.list_features(train, histories)
    # Every epoch, keeping the one that ranks the early-stopping lists best: on them NDCG@10 climbs
    # slowly and unevenly, and on ml-latest-small stopping after 10 epochs without a new best kept
    # epoch 2 or 8 where training on gave epochs 82 and 60 (the visitors' NDCG@10 from 5 movies
    # 0.100 and 0.119 against 0.136 and 0.135, seeds 7 and 9).
    config = dataclasses.replace(config, patience=config.epochs)
    result = _train_head(model.short_head, train, features, valid, train.labels.astype(np.float32), stop,
                         model.list_features(stop, histories), config, seed, strategy, log_dir=log_dir,
                         verbose=verbose, stage="short-history ranking")
    if len(train):
        model.short_limit.assign(float(SHORT_HEAD_REACH * config.short_history))
    return result


def _train_head(head: RelevanceHead, train: CandidateLists, features: np.ndarray, valid: np.ndarray, labels: np.ndarray,
                stop: CandidateLists, stop_features: tuple[np.ndarray, np.ndarray], config: RankerConfig, seed: int,
                strategy: tf.distribute.Strategy, *, more: tuple | None = None, start_candidate: bool = False,
                log_dir=None, verbose: int = -1, backup: StageBackup | None = None, stage: str) -> TrainingResult:
    """Chooses ``head``'s start on ``train``'s lists and trains it on them (and ``more``: features, valid
    slots and labels of other lists), early-stopping on NDCG@10 of ``stop``'s lists."""
    if len(train):  # the start: the best blend of the two sources on the training lists
        weight, head.item_weight_choice = choose_item_weight(features, valid, labels, train.relevant)
        head.item_weight.assign(weight)
        head.base_scale.assign(calibrate_base_scale(base_scores(features, weight), valid, labels))
    if more is not None:
        features, valid, labels = stacked(features, more[0]), stacked(valid, more[1]), stacked(labels, more[2])
    examples = len(labels)
    with strategy.scope():
        if examples:
            head.normalization.adapt(valid_slots(features, valid))
        head.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    if not examples:
        return TrainingResult(head)
    tensors = {"features": tf.constant(features), "valid": tf.constant(valid), "labels": tf.constant(labels)}
    del features, valid, labels  # the tensors hold them now
    dataset = shuffled_row_batches(examples, config.batch_size, seed).map(
        lambda rows: {name: tf.gather(tensor, rows) for name, tensor in tensors.items()})
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    callbacks = [_ListValidation(stop.labels, stop.relevant, *stop_features)] if len(stop) else []
    # Cross-fitted lists come from models trained without their fold, not from the served ones: where
    # learning from them orders the early-stopping lists (made as serving makes them) no better than the
    # starting blend, the start is kept. Without them, the start is not a candidate: on the demo data it
    # won the ~160 early-stopping lists on a seed where the trained epoch ranked the test side better.
    start = None
    if callbacks and start_candidate:
        value = callbacks[0].ndcg(head)  # builds the MLP, so its weights exist
        start = (value, head.get_weights())
    return fit(head, dataset, None, epochs=config.epochs, monitor="val_ndcg_at_10" if callbacks else "loss",
               mode="max" if callbacks else "min", patience=config.patience, examples=examples, log_dir=log_dir,
               verbose=verbose, stage=stage, shown=("loss", "val_ndcg_at_10", "val_recall_at_10"),
               extra_callbacks=callbacks, early_stopping_without_validation=bool(callbacks), backup=backup,
               settings="ranker", initial=start)
