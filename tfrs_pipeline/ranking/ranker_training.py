"""Training the list ranker's two heads on candidate lists.

:func:`train_list_ranker` trains the whole-history head on the hold-out's lists (and cross-fitted
ones), :func:`train_short_history_head` the head for a visitor's few movies; both start from the
blend :mod:`~tfrs_pipeline.ranking.calibration` chooses, train with a softmax cross-entropy over
each list (``tfrs.tasks.Ranking``) and early-stop on NDCG@10 of held-out users' lists.

Examples:
    >>> result = train_list_ranker(ranker, lists, histories, config=RankerConfig())  # doctest: +SKIP
    >>> result.model is ranker, result.best_epoch  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_pipeline.config import RankerConfig
from tfrs_pipeline.features.dataset import shuffled_row_batches
from tfrs_pipeline.metrics import ndcg_of_lists, recall_of_lists
from tfrs_pipeline.ranking.calibration import calibrate_base_scale, choose_item_weight, top_hits
from tfrs_pipeline.ranking.candidate_lists import CandidateLists, split_lists, stacked
from tfrs_pipeline.ranking.list_ranker import FEATURES, SHORT_HEAD_REACH, ListRanker, RelevanceHead, base_scores
from tfrs_pipeline.retrieval.index import SeenMovies
from tfrs_pipeline.training.backup import StageBackup
from tfrs_pipeline.training.loop import TrainingResult, fit


def list_features(model: ListRanker, lists: CandidateLists, histories: SeenMovies,
                  batch_lists: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``model``'s :meth:`~tfrs_pipeline.ranking.list_ranker.ListRanker.features` and the valid-slot mask of
    every list, the users' histories read from ``histories``, computed in batches (NumPy).

    Written into arrays made once: at 20M ratings the lists' features are hundreds of MB, and
    joining per-batch parts would hold them twice.
    """
    slots = lists.movie_ids.shape[1] if len(lists) else 0
    features = np.zeros((len(lists), slots, len(FEATURES)), np.float32)
    valid = np.zeros((len(lists), slots), bool)
    for start in range(0, len(lists), batch_lists):
        part = lists.take(np.arange(start, min(start + batch_lists, len(lists))))
        computed, mask = model.features(part.history_rows(histories), tf.constant(part.movie_ids),
                                        tf.constant(part.retrieval_scores), tf.constant(part.retrieved_mask))
        features[start : start + len(part)] = computed.numpy()
        valid[start : start + len(part)] = mask.numpy()
    return features, valid

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


def valid_slots(features: np.ndarray, valid: np.ndarray, lists_per_batch: int = 1024) -> tf.data.Dataset:
    """The feature rows of the valid slots, a batch of lists at a time (for ``Normalization.adapt``,
    which merges the batches' statistics): not one copy of every valid row at once."""
    def batches():
        for start in range(0, len(features), lists_per_batch):
            rows = features[start : start + lists_per_batch][valid[start : start + lists_per_batch]]
            if len(rows):  # an empty batch's mean is NaN, and adapt would merge it
                yield rows

    return tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec([None, features.shape[-1]], tf.float32))


def train_list_ranker(model: ListRanker, lists: CandidateLists, histories: SeenMovies, config: RankerConfig, *,
                      seed: int = 7, log_dir: str | Path | None = None, verbose: int = -1,
                      strategy: tf.distribute.Strategy | None = None, backup: StageBackup | None = None,
                      cross_fitted=None) -> TrainingResult:
    """Trains ``model``'s whole-history head on ``lists``; early-stops on NDCG@10 of a fifth of their users
    (best weights kept; with ``cross_fitted`` lists, the starting blend's where no epoch beats it, ``best_epoch`` 0).

    Args:
        model: the ranker to train (:func:`~tfrs_pipeline.ranking.list_ranker.make_list_ranker`).
        histories: the lists' users' rated movies (the fitting part's, the ones their candidates exclude).
        cross_fitted: more training lists' features (:class:`~tfrs_pipeline.ranking.cross_fit.CrossFitLists`);
            early stopping stays on the hold-out's lists, the ones made as serving makes them, and
            the starting blend is served where no epoch orders those better.

    Returns:
        The :class:`ListRanker`, its head's per-epoch history, seconds and lists per second.
    """
    tf.keras.utils.set_random_seed(seed)
    train, stop = split_lists(lists, 0.2, seed)
    strategy = strategy or tf.distribute.get_strategy()
    features, valid = list_features(model, train, histories)
    labels = train.labels.astype(np.float32)
    if cross_fitted is not None and len(cross_fitted):
        more = (cross_fitted.features, cross_fitted.valid, cross_fitted.labels.astype(np.float32))
    else:
        more, cross_fitted = None, None
    result = _train_head(model.head, train, features, valid, labels, stop, list_features(model, stop, histories),
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
    features, valid = list_features(model, train, histories)
    # Every epoch, keeping the one that ranks the early-stopping lists best: on them NDCG@10 climbs
    # slowly and unevenly, and on ml-latest-small stopping after 10 epochs without a new best kept
    # epoch 2 or 8 where training on gave epochs 82 and 60 (the visitors' NDCG@10 from 5 movies
    # 0.100 and 0.119 against 0.136 and 0.135, seeds 7 and 9).
    config = dataclasses.replace(config, patience=config.epochs)
    result = _train_head(model.short_head, train, features, valid, train.labels.astype(np.float32), stop,
                         list_features(model, stop, histories), config, seed, strategy, log_dir=log_dir,
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
