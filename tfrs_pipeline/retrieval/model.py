"""The retrieval stage: a two-tower ``tfrs.Model`` trained with ``tfrs.tasks.Retrieval``.

Factorized top-K metrics over the whole catalog are computed in evaluation only; the
TFRS tutorial computes them on every training batch, which is most of its training time.

Examples:
    >>> result = train_retrieval(prepared, RetrievalConfig(epochs=2))  # doctest: +SKIP
    >>> result.model.evaluate(make_dataset(split.test, 4096), return_dict=True)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_pipeline.config import RetrievalConfig
from tfrs_pipeline.features.dataset import Prepared, make_dataset
from tfrs_pipeline.ids import id_positions, rows_per_block, users_of
from tfrs_pipeline.metrics import TOP_KS, hit_ranks, hit_rate_at_k
from tfrs_pipeline.retrieval.index import SeenAwareBruteForce, SeenMovies
from tfrs_pipeline.retrieval.towers import CandidateTower, QueryTower
from tfrs_pipeline.training.backup import StageBackup
from tfrs_pipeline.training.loop import (
    TrainingResult,
    build_optimizer,
    fit,
    in_float32,
    steps_per_call,
    trace_step_once,
)
from tfrs_pipeline.training.optimizers import make_optimizer
from tfrs_pipeline.training.step import ScaledLossModel


class Retrieval(tfrs.tasks.Retrieval):
    """``tfrs.tasks.Retrieval`` with an in-batch loss that scores each distinct movie of a batch once.

    A batch of B ratings names far fewer distinct movies (at batch 2048 about 920 of
    1,682 on 100K ratings, 1,380 of 9,742 on ml-latest-small), and the parent's in-batch
    softmax has one column per example: the columns of a movie rated twice in a batch are
    equal. :meth:`in_batch_loss` keeps one column per distinct movie and adds the log of its
    count to the column, which gives the parent's loss, and its gradients, with B x D
    scores instead of B x B. As in the parent, the temperature divides the scores (here the
    queries, before the product), the log sampling probability of each candidate is
    subtracted (logQ correction, probabilities clipped to [1e-6, 1]) and, with accidental-hit
    removal, a query's positive column counts once (the parent masks the other copies).
    Evaluation and metrics are the parent's ``call``.
    """

    def in_batch_loss(self, query: tf.Tensor, candidates: tf.Tensor, positive: tf.Tensor,
                      sampling_probability: tf.Tensor | None = None) -> tf.Tensor:
        """The summed in-batch softmax loss, from the batch's distinct candidates.

        Args:
            query: [B, d] query embeddings, one per example.
            candidates: [D, d] embeddings of the batch's distinct movies.
            positive: [B] the column of each example's own movie among ``candidates`` (as ``tf.unique`` gives it).
            sampling_probability: [D] each distinct movie's sampling probability (logQ correction).
        """
        if self._temperature is not None:
            query = query / self._temperature
        positive = tf.cast(positive, tf.int32)
        scores = tf.linalg.matmul(query, candidates, transpose_b=True)
        # Each query's own score, from the embeddings: reading it out of the B x D scores would
        # scatter its gradient back over all of them.
        positive_scores = tf.reduce_sum(query * tf.gather(candidates, positive), axis=1)
        # How many examples of the batch rated each distinct movie: a column stands for that many
        # equal columns of the parent's B x B scores.
        counts = tf.math.unsorted_segment_sum(tf.ones_like(positive), positive, tf.shape(candidates)[0])
        log_counts = tf.math.log(tf.cast(counts, scores.dtype))
        shift = log_counts
        if sampling_probability is not None:
            log_q = tf.math.log(tf.clip_by_value(sampling_probability, 1e-6, 1.0))
            shift -= log_q
            positive_scores -= tf.gather(log_q, positive)
        scores += shift[None, :]
        if self._remove_accidental_hits:
            # The other examples of a query's own movie are not negatives: its column counts once.
            own = tf.stack([tf.range(tf.shape(positive)[0]), positive], axis=1)
            scores = tf.tensor_scatter_nd_sub(scores, own, tf.gather(log_counts, positive))
        # Cross-entropy as log-sum-exp minus the positive's score (one copy of its column, with or
        # without the others): the parent's loss. ``sparse_softmax_cross_entropy_with_logits`` gives the
        # same, but its one kernel took 4.4 of a 26 ms step at 100K ratings.
        loss = tf.reduce_sum(tf.reduce_logsumexp(scores, axis=1)) - tf.reduce_sum(positive_scores)
        update_ops = [metric.update_state(loss) for metric in self._loss_metrics]
        with tf.control_dependencies(update_ops):
            return tf.identity(loss)


class RetrievalModel(ScaledLossModel):
    """Query tower + candidate tower, joined by ``tfrs.tasks.Retrieval`` in ``compute_loss``.

    Args:
        prepared: vocabularies and feature tables.
        config: dimensions, features, temperature and loss corrections.
    """

    def __init__(self, prepared: Prepared, config: RetrievalConfig) -> None:
        super().__init__()
        self.config = config
        self.query_tower = QueryTower(prepared.vocab, prepared.users, config.embedding_dim,
                                      user_features=config.user_features, history_features=config.history_features,
                                      normalize=config.normalize, hidden_units=tuple(config.query_hidden_units),
                                      bias_column=config.movie_bias, l2=config.l2,
                                      history_dropout=config.history_dropout, history_sample=config.history_sample,
                                      short_history=config.short_history, user_embedding=config.user_embedding, name="query_tower")
        self.candidate_tower = CandidateTower(prepared.vocab, prepared.movies, config.embedding_dim,
                                              movie_features=config.movie_features, normalize=config.normalize,
                                              movie_bias=config.movie_bias, l2=config.l2, name="candidate_tower")
        self.catalog_ids = tf.constant(prepared.movies.movie_ids.astype(str))
        self.index = in_float32(lambda: SeenAwareBruteForce(k=max(TOP_KS), name="index"))
        positions = id_positions(pd.Index(prepared.vocab.movie_ids), prepared.fitting["movie_id"])
        counts = np.bincount(positions[positions >= 0], minlength=len(prepared.vocab.movie_ids))
        probability = counts.astype(np.float64) / len(prepared.fitting)
        # Row 0 (unknown movie) gets the smallest probability seen, never 0 (log 0).
        self.sampling_probability = tf.constant(
            np.concatenate([[probability[probability > 0].min()], probability]).astype(np.float32)
        )
        self.remove_accidental_hits = config.remove_accidental_hits or config.negatives == "catalog"
        self.task = in_float32(lambda: Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(candidates=self.index, ks=TOP_KS),
            temperature=config.temperature if config.normalize else None,
            # Catalog negatives repeat the positive movie; accidental-hit removal masks that copy.
            remove_accidental_hits=self.remove_accidental_hits,
        ))

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        movie_id = features["movie_id"]
        if training and self.config.negatives == "in-batch":
            return self._in_batch_loss(features["user_id"], movie_id)
        query, candidate = self._towers(features["user_id"], movie_id, training)
        if training:
            loss = self._full_softmax_loss(query, candidate, movie_id)
            cut = self._cut_query(features["user_id"], movie_id)
            if cut is not None:
                loss += self.config.short_history_weight * self._full_softmax_loss(cut, candidate, movie_id)
            return loss
        extra = {}
        if self.config.logq_correction:
            extra["candidate_sampling_probability"] = tf.gather(
                self.sampling_probability, self.candidate_tower.rows(movie_id))
        extra["candidate_ids"] = movie_id  # id-based factorized metrics match these against the index
        # TFRS builds its loss-correction layers inside the call: keep them in float32 too.
        return in_float32(lambda: self.task(query, candidate, **extra))

    # Our towers and loss need no AutoGraph (TFRS's task call does); converting their code took 0.8 s of the
    # first training epoch on 100K ratings, more than the rest of the trace.
    @tf.autograph.experimental.do_not_convert
    def _in_batch_loss(self, user_id: tf.Tensor, movie_id: tf.Tensor) -> tf.Tensor:
        """The training loss with in-batch negatives: each distinct movie of the batch goes through the
        candidate tower and the softmax once."""
        query = self.query_tower(user_id, leave_out_movie_id=movie_id, training=True)
        distinct, positive = tf.unique(movie_id)
        probability = (tf.gather(self.sampling_probability, self.candidate_tower.rows(distinct))
                       if self.config.logq_correction else None)
        cut = self._cut_query(user_id, movie_id)

        def loss() -> tf.Tensor:
            candidates = self.candidate_tower(distinct)
            total = self.task.in_batch_loss(query, candidates, positive, probability)
            if cut is not None:
                total += self.config.short_history_weight * self.task.in_batch_loss(cut, candidates, positive,
                                                                                    probability)
            return total

        return in_float32(loss)

    def _cut_query(self, user_id: tf.Tensor, movie_id: tf.Tensor) -> tf.Tensor | None:
        """The same examples' queries again, each from its user's history cut to 1..``short_history``
        movies: the short-history query's training, beside the whole-history query's (which keeps every
        example). None when ``retrieval.short_history`` is off."""
        if not self.query_tower.short_history:
            return None
        return self.query_tower(user_id, leave_out_movie_id=movie_id, training=True, cut=True)

    @tf.autograph.experimental.do_not_convert
    def _towers(self, user_id: tf.Tensor, movie_id: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """Each example's query (its movie left out of the history) and candidate embeddings, without
        AutoGraph (converting them took 0.7 s of the first validation at 100K ratings)."""
        return (self.query_tower(user_id, leave_out_movie_id=movie_id, training=training),
                self.candidate_tower(movie_id))

    def _full_softmax_loss(self, query: tf.Tensor, candidate: tf.Tensor, movie_id: tf.Tensor) -> tf.Tensor:
        """Softmax over the whole catalog: each query's positive against every movie, no sampling bias.

        The batch's own candidates are kept only on the diagonal (the positives); the
        catalog supplies every negative exactly once.
        """
        catalog = self.candidate_tower(self.catalog_ids)
        batch = tf.shape(query)[0]
        mask = tf.concat([tf.cast(tf.eye(batch), tf.bool), tf.ones([batch, tf.shape(catalog)[0]], tf.bool)], axis=1)
        return in_float32(lambda: self.task(query, tf.concat([candidate, catalog], axis=0),
                                            candidate_ids=tf.concat([movie_id, self.catalog_ids], axis=0),
                                            score_mask=mask, compute_metrics=False))

    def candidate_embeddings(self, batch_size: int = 8192) -> tf.Tensor:
        """Embeddings of every catalog movie, in catalog order."""
        return tf.concat([self.candidate_tower(self.catalog_ids[i : i + batch_size])
                          for i in range(0, int(self.catalog_ids.shape[0]), batch_size)], axis=0)

    def without_bias(self, vectors: tf.Tensor) -> tf.Tensor:
        """``vectors`` of :meth:`candidate_embeddings` without their movie-bias column (``retrieval.movie_bias``):
        each movie's embedding proper [movies, embedding_dim], whose direction the list ranker's cosines read."""
        return vectors[:, : self.config.embedding_dim]

    def refresh_index(self) -> SeenAwareBruteForce:
        """Re-embeds the catalog into the index (after weights change)."""
        return self.index.reindex(self.candidate_embeddings(), self.catalog_ids)


class _RefreshIndex(tf.keras.callbacks.Callback):
    """Re-embeds the catalog before each evaluation, so metrics see the current towers."""

    def on_test_begin(self, logs=None):
        self.model.refresh_index()


class ValidationRecall(tf.keras.callbacks.Callback):
    """Logs ``val_hit_rate_at_K``: the share of validation ratings in their user's top K, the user's
    fitting-part movies excluded.

    This is what recommendations are judged by; top-K accuracy with seen movies kept
    falls as the model learns each user's training movies, so early stopping on it
    stops too soon.
    """

    def __init__(self, prepared: Prepared, k: int) -> None:
        super().__init__()
        self.k = k
        self.validation = prepared.validation
        self.seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, prepared.fitting)

    def on_epoch_end(self, epoch, logs=None):
        # The index already holds this epoch's embeddings: _RefreshIndex re-embedded them for validation.
        users = users_of(self.validation)
        lists = []
        block = rows_per_block(self.model.index.num_candidates, 2048)
        for start in range(0, len(users), block):
            batch = tf.constant(users[start : start + block].astype(str))
            lists.append(self.model.index.query_excluding(self.model.query_tower(batch), self.seen(batch), self.k)[1].numpy())
        lists = np.concatenate(lists)
        if logs is not None:
            logs[f"val_hit_rate_at_{self.k}"] = hit_rate_at_k(hit_ranks(users, lists, self.validation), self.k)


def train_retrieval(prepared: Prepared, config: RetrievalConfig, *, seed: int = 7, log_dir: str | Path | None = None,
                    verbose: int = -1, strategy: tf.distribute.Strategy | None = None,
                    backup: StageBackup | None = None, stage: str = "retrieval") -> TrainingResult:
    """Trains the two-tower model; early-stops on the validation hit rate@``monitor_k`` (seen movies excluded).

    Args:
        stage: the name its progress lines and errors give it.

    Returns:
        The model (index refreshed with the final embeddings), its per-epoch history,
        seconds spent and training examples per second.
    """
    tf.keras.utils.set_random_seed(seed)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = RetrievalModel(prepared, config)
        model.candidate_embeddings()  # creates the towers' variables under the strategy
        model.query_tower(tf.constant(prepared.vocab.user_ids[:1]))
    # The index is re-embedded, never trained: plain variables outside the strategy hold it, the
    # same on every replica (MultiWorkerMirroredStrategy cannot broadcast its string movie ids).
    model.refresh_index()
    steps = steps_per_call(config.steps_per_execution, strategy, len(prepared.fitting), config.batch_size, config.epochs)
    with strategy.scope():
        model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate), steps_per_execution=steps)
        build_optimizer(model)
    if steps > 1:
        trace_step_once(model, strategy)
    train = make_dataset(prepared.fitting, config.batch_size, shuffle=True, seed=seed)
    # Validation's factorized top-K scores each batch against the whole catalog. 2,048 rows at a time
    # (27,278 movies: 0.2 GB of scores) evaluated 20M's hold-out 2.2x faster than 8,192 did, and
    # TensorFlow's oneDNN allocator keeps the largest batch's memory for the rest of the run.
    validation = (make_dataset(prepared.validation, rows_per_block(len(prepared.movies.movie_ids), 2048))
                  if len(prepared.validation) else None)
    monitor = f"val_hit_rate_at_{config.monitor_k}"
    callbacks = [_RefreshIndex()] + ([ValidationRecall(prepared, config.monitor_k)] if validation is not None else [])
    result = fit(model, train, validation, epochs=config.epochs, monitor=monitor, mode="max", patience=config.patience,
                 examples=len(prepared.fitting), log_dir=log_dir, verbose=verbose, extra_callbacks=callbacks,
                 stage=stage, shown=("loss", monitor, "val_factorized_top_k/top_100_categorical_accuracy"),
                 backup=backup, settings="retrieval")
    model.refresh_index()
    model.query_tower.set_fallback()
    return result


def refit_retrieval(prepared: Prepared, train: pd.DataFrame, config: RetrievalConfig, epochs: int, **kwargs) -> TrainingResult:
    """Trains the two-tower model again on the whole training side ``train`` (the fitting part and
    its validation hold-out) for ``epochs`` epochs, the early-stopped run's best, with the whole
    side's histories and tables.

    Once validation has chosen the epoch count, the hold-out's ratings are training data like the
    others (the rating model's matrix factorization and the ranker's item-item model are refitted
    the same way). Nothing is validated: the model after the last epoch is kept.

    Args:
        kwargs: :func:`train_retrieval`'s ``seed``, ``verbose``, ``strategy``, ``log_dir`` and ``backup``.
    """
    whole = dataclasses.replace(prepared, fitting=train, validation=train.iloc[:0],
                                movies=prepared.whole_movies, users=prepared.whole_users)
    return train_retrieval(whole, dataclasses.replace(config, epochs=max(1, int(epochs))), stage="retrieval refit",
                           **kwargs)
