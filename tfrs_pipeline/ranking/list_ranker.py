"""The second stage's list ranker: a model that scores retrieval's candidates for a user from their history.

:class:`ListRanker` is a ``tfrs.Model`` whose every input is a movie or the user's history
(the catalog rows of the movies they rated), never a user id: a visitor who brings a known
user's history is scored exactly as that user, and a rating made after training counts
as soon as a request brings it. Its features (:data:`FEATURES`): the retrieval logit (absolute,
relative to the list's best, and as a z-score within the list), the movie's popularity and shrunk
mean rating, the history's length, the match of the movie's genres with the history's, the mean
cosine between the movie and the history's movies in the candidate-embedding space, and the
movie's item-item score from the history (EASE or ItemKNN weights, computed per request by
:class:`~tfrs_pipeline.ranking.item_scores.ItemItemScores`), absolute, per rated movie and as a
z-score. A :class:`RelevanceHead` (linear, or an MLP) adds to a base score, the retrieval logit
plus a weight times the item-item z-score, times a scale; the head starts at zero.

Where the rest lives: the lists it learns from in :mod:`~tfrs_pipeline.ranking.candidate_lists`,
the item-item model in :mod:`~tfrs_pipeline.ranking.neighbours`, the start (weight and scale) in
:mod:`~tfrs_pipeline.ranking.calibration`, its training in
:mod:`~tfrs_pipeline.ranking.ranker_training`, and the stage that runs them in order in
:mod:`~tfrs_pipeline.ranking.ranker_stage`. Predicted ratings come from the rating model beside it
(:class:`~tfrs_pipeline.ranking.rating.RatingModel`), not from the ranker.

Examples:
    >>> ranker = make_list_ranker(rating_model, prepared, retrieval_model, scale=5.0,
    ...                           config=RankerConfig())  # doctest: +SKIP
    >>> scores = ranker.score(history_rows, movie_ids, retrieval_scores)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_pipeline.config import RankerConfig
from tfrs_pipeline.features.dataset import Prepared
from tfrs_pipeline.features.tables import MovieTable
from tfrs_pipeline.features.vocabulary import id_lookup
from tfrs_pipeline.ranking.item_scores import item_item_scores
from tfrs_pipeline.ranking.neighbours import ItemNeighbours, Sessions, build_item_table, item_table_settings
from tfrs_pipeline.ranking.rating import RatingModel
from tfrs_pipeline.training.loop import in_float32
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


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """``rows`` scaled to unit length (a zero row stays zero)."""
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def with_empty_row(rows: np.ndarray) -> np.ndarray:
    """``rows`` [n, d] in float32 below a row of zeros: row 0 stands for the unknown id."""
    return np.vstack([np.zeros((1, rows.shape[1])), rows]).astype(np.float32)


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
        item_table: the item-item model, fitted on the same ``prepared`` and ``config``
            (:func:`~tfrs_pipeline.ranking.neighbours.build_item_table`; :func:`make_list_ranker` fits
            it where none is given). The constructor learns nothing: it stores the tables it is given.
    """

    def __init__(self, rating_model: RatingModel, prepared: Prepared, embeddings: np.ndarray, scale: float,
                 config: RankerConfig, candidate_vectors: np.ndarray | None = None, *,
                 item_table: ItemNeighbours) -> None:
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
        table = self._item_table = item_table
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


def make_list_ranker(rating_model: RatingModel, prepared: Prepared, retrieval_model, scale: float,
                     config: RankerConfig, *, strategy: tf.distribute.Strategy | None = None,
                     item_table: ItemNeighbours | None = None) -> ListRanker:
    """A :class:`ListRanker` over the fitting part's tables and ``retrieval_model``'s catalog
    embeddings, in float32, in ``strategy``'s scope.

    Args:
        retrieval_model: the trained :class:`~tfrs_pipeline.retrieval.model.RetrievalModel` whose
            candidates the ranker orders (its embeddings' directions and its index's vectors).
        item_table: the item-item model fitted on ``prepared`` (default: fitted here, with
            :func:`~tfrs_pipeline.ranking.neighbours.build_item_table`).
    """
    if item_table is None:
        item_table = build_item_table(prepared, config)
    candidates = retrieval_model.candidate_embeddings()
    embeddings = retrieval_model.without_bias(candidates).numpy()
    with (strategy or tf.distribute.get_strategy()).scope():
        # In float32 whatever the precision policy: its few features are scores and counts, not embeddings.
        return in_float32(lambda: ListRanker(rating_model, prepared, embeddings, scale, config, candidates.numpy(),
                                             item_table=item_table))
