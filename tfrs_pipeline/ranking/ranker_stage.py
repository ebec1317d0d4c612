"""The list ranker's stage, in order: its training lists, its cross-fitted lists, its two heads.

:func:`fit_ranker_stage` is what a training run calls once retrieval and the rating model are
trained (the item-item model fitted before them, :func:`~tfrs_pipeline.ranking.neighbours.build_item_table`):

1. the validation hold-out's candidate lists, made as serving makes them
   (:func:`~tfrs_pipeline.ranking.candidate_lists.serving_lists`, which cross-fitting calls per fold too);
2. lists from a few of each hold-out user's movies, as a visitor brings them (``ranker.short_history``);
3. cross-fitted lists from every training user (``ranker.cross_fit_folds``);
4. the whole-history head, then the short-history head
   (:mod:`~tfrs_pipeline.ranking.ranker_training`, each starting from the blend
   :mod:`~tfrs_pipeline.ranking.calibration` chooses).

Examples:
    >>> stage = fit_ranker_stage(prepared, data, config, retrieval_model, rating_model, scale=5.0,
    ...                          item_table=table)  # doctest: +SKIP
    >>> stage.ranker.model.score(history_rows, movie_ids, retrieval_scores)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from tfrs_pipeline.config import PipelineConfig
from tfrs_pipeline.data.schema import RatingsData
from tfrs_pipeline.features.dataset import Prepared
from tfrs_pipeline.ranking.candidate_lists import serving_lists, short_history_lists, split_lists
from tfrs_pipeline.ranking.cross_fit import cross_fit_lists
from tfrs_pipeline.ranking.neighbours import ItemNeighbours
from tfrs_pipeline.ranking.ranker_training import train_list_ranker, train_short_history_head
from tfrs_pipeline.retrieval.candidates import CandidateRetriever
from tfrs_pipeline.training.backup import StageBackup
from tfrs_pipeline.training.loop import TrainingResult


@dataclass
class RankerStage:
    """The trained list ranker and what it learned from.

    Args:
        ranker: the whole-history head's training; ``ranker.model`` is the :class:`~tfrs_pipeline.ranking.list_ranker.ListRanker`.
        short_history: the short-history head's training (None: ``ranker.short_history`` 0).
        candidates: how many lists, and the validation ratings among their candidates by source
            (``training.list_ranker_candidates`` of ``metrics.json``).
    """

    ranker: TrainingResult
    short_history: TrainingResult | None
    candidates: dict


def fit_ranker_stage(prepared: Prepared, data: RatingsData, config: PipelineConfig, retrieval_model, rating_model,
                     scale: float, *, item_table: ItemNeighbours, retriever: CandidateRetriever | None = None,
                     strategy: tf.distribute.Strategy | None = None, log: Callable[[str], None] = print,
                     step: Callable[[str], str] = str, logs: Callable[[str], Path | None] = lambda stage: None,
                     backup: Callable[[str], StageBackup | None] = lambda stage: None) -> RankerStage:
    """Makes the list ranker's training lists and trains its heads on them (the module's steps 1-4).

    Args:
        prepared, data: the run's model inputs and ratings (cross-fitting re-counts tables without each fold).
        retrieval_model, rating_model: the trained first-stage and rating models, fitted on ``prepared.fitting``.
        scale: retrieval score -> logit factor.
        item_table: the item-item model fitted on ``prepared.fitting``.
        retriever: retrieval over the fitting part, if made already
            (:func:`~tfrs_pipeline.ranking.candidate_lists.fitting_part_retriever`).
        step: formats the log line that starts the stage (the run's ``[i/n]`` counter).
        logs, backup: a stage name's TensorBoard folder and backup (default: none).
    """
    seed, verbose, ranker_config = config.runtime.seed, config.runtime.verbose, config.ranker
    made = serving_lists(retrieval_model, rating_model, prepared, prepared.validation, config, scale,
                         strategy=strategy, item_table=item_table, retriever=retriever)
    ranker, lists, histories = made.ranker, made.lists, made.histories
    found = {"lists": len(lists), **lists.found()}
    log(step(f"list ranker: {len(lists):,} candidate lists of {lists.movie_ids.shape[1]} movies "
        + (f"({config.serving.num_candidates} retrieved, up to {ranker.item_candidates} added by the item-item "
           "model)" if ranker.item_candidates else "(retrieved)")
        + f"; of {found['relevant']:,} validation ratings, {found['retrieval']:,} are among the retrieved"
        + (f", {found['item_item_added']:,} more among the added" if ranker.item_candidates else "")))
    short = None
    if ranker_config.short_history:
        short = short_history_lists(ranker, made.retriever, prepared, ranker_config.short_history,
                                    config.serving.num_candidates)
        found["short_history"] = {"lists": len(short), **short.found()}
        log(f"list ranker: {len(short):,} more lists, each from {ranker_config.short_history} of a hold-out user's "
            "movies alone (their most recent, and sets drawn at random), as a visitor brings a few; "
            f"{found['short_history']['merged']:,} validation ratings among their candidates")
    cross_fitted = cross_fit_lists(prepared, data, config, scale, strategy=strategy, log=log)
    if cross_fitted is not None:
        found["cross_fit"] = {**cross_fitted.found, "kept": len(cross_fitted), "seconds": cross_fitted.seconds}
        log(f"list ranker: {len(cross_fitted):,} cross-fitted lists besides the hold-out's "
            f"({cross_fitted.seconds:.0f} s for {ranker_config.cross_fit_folds} folds)")
    trained = train_list_ranker(ranker, lists, histories, ranker_config, seed=seed, verbose=verbose, strategy=strategy,
                                log_dir=logs("list_ranking"), backup=backup("list_ranking"),
                                cross_fitted=cross_fitted)
    head = ranker.head
    if head.item_weight_choice:
        log(f"list ranker: starts from {float(head.base_scale.numpy()):.3g} x (retrieval logit + "
            f"{float(head.item_weight.numpy()):g} x item-item z-score) (training lists' NDCG@10 by weight: "
            + ", ".join(f"{w:g}: {v:.4f}" for w, v in head.item_weight_choice.items()) + ")")
    best = trained.best_epoch or "0 (no epoch ordered the early-stopping lists better than the start)"
    log(f"list ranker: {trained.seconds:.1f} s, best epoch {best}; item-item feature: {ranker.item_model_description}")
    short_trained = None
    if short is not None:
        short_trained = train_short_history_head(
            ranker, short, split_lists(lists, 0.2, seed)[1].user_ids, histories, ranker_config, seed=seed,
            verbose=verbose, strategy=strategy, log_dir=logs("short_history_ranking"))
        log(f"list ranker: short-history head {short_trained.seconds:.1f} s, best epoch {short_trained.best_epoch}; "
            f"it scores histories of up to {float(ranker.short_limit.numpy()):g} movies, starting from "
            f"{float(ranker.short_head.base_scale.numpy()):.3g} x (retrieval logit + "
            f"{float(ranker.short_head.item_weight.numpy()):g} x item-item z-score)")
    return RankerStage(trained, short_trained, found)
