"""Cross-fitted candidate lists: training lists for the list ranker from every training user.

The ranker's own lists come from the validation hold-out (5% of the training ratings): a few
hundred lists on ml-latest-small. Cross-fitting adds lists shaped like serving for every user:
the fitting part's ratings are dealt into ``K`` folds; for each fold, retrieval and the rating
model are trained again without it, the item-item weights and every table are counted without
it, and the retrieval model proposes candidates for each user of the fold (their other
ratings excluded), labelled 1 where the user rated the movie in the fold. No model or table
behind a fold's features saw that fold's ratings, so the features look as they will at
serving time; the ranker then learns from ``K`` lists per user besides the hold-out's.

Each fold costs a retrieval and a rating-model training on ``(K - 1) / K`` of the fitting
part, so it is done while the training side has at most ``ranker.cross_fit_max_users``
users (where the hold-out alone already gives that many lists).

Examples:
    >>> fitted = cross_fit_lists(prepared, data, config, scale)  # doctest: +SKIP
    >>> fitted.features.shape  # [lists, candidates, len(FEATURES)]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import gc
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfrs_pipeline.config import PipelineConfig
from tfrs_pipeline.data.schema import RatingsData
from tfrs_pipeline.features.dataset import Prepared
from tfrs_pipeline.features.tables import MovieTable, UserTable
from tfrs_pipeline.ranking.candidate_lists import pad_slots, serving_lists
from tfrs_pipeline.ranking.ranker_training import list_features
from tfrs_pipeline.ranking.rating import stack_matrix_factorization, train_rating_model
from tfrs_pipeline.retrieval.model import train_retrieval


@dataclass
class CrossFitLists:
    """The ranker's features of every cross-fitted list that holds a relevant candidate.

    Args:
        features: [lists, N, len(FEATURES)]; valid: the non-empty slots [lists, N];
        labels: 1.0 where the user rated the candidate in the fold [lists, N].
        found: fold ratings among the candidates, by source (as :meth:`CandidateLists.found`), all folds.
        seconds: wall time of the folds.
    """

    features: np.ndarray
    valid: np.ndarray
    labels: np.ndarray
    found: dict
    seconds: float

    def __len__(self) -> int:
        return len(self.labels)


def without_fold(prepared: Prepared, data: RatingsData, kept) -> Prepared:
    """``prepared`` with the fitting part cut to ``kept`` and every fitting-part table counted on it
    (vocabularies, hold-out and the whole training side's tables unchanged)."""
    train = prepared.fitting[kept].reset_index(drop=True)
    return dataclasses.replace(
        prepared, fitting=train, movies=MovieTable.build(data, train, prepared.vocab),
        users=UserTable.build(data, train, prepared.vocab),
        global_mean=prepared.global_mean if prepared.implicit else float(train["rating"].mean()))


def cross_fit_lists(prepared: Prepared, data: RatingsData, config: PipelineConfig, scale: float, *,
                    strategy: tf.distribute.Strategy | None = None, log=print) -> CrossFitLists | None:
    """Trains retrieval and the rating model once per fold and returns the ranker's features of the folds' lists.

    Returns None where cross-fitting is off (``ranker.cross_fit_folds`` 0, or more training
    users than ``ranker.cross_fit_max_users``).
    """
    folds, users = config.ranker.cross_fit_folds, len(prepared.vocab.user_ids)
    if folds < 2 or not len(prepared.fitting):
        return None
    if users > config.ranker.cross_fit_max_users:
        log(f"list ranker: no cross-fitted lists ({users:,} training users, above ranker.cross_fit_max_users "
            f"{config.ranker.cross_fit_max_users:,}: the hold-out gives lists enough)")
        return None
    start = time.perf_counter()
    seed = config.runtime.seed
    fold_of = np.random.default_rng(seed + 3).integers(0, folds, len(prepared.fitting))
    features, valid, labels = [], [], []
    found = {"lists": 0, "retrieval": 0, "item_item_added": 0, "merged": 0, "relevant": 0}
    for fold in range(folds):
        began = time.perf_counter()
        part = without_fold(prepared, data, fold_of != fold)
        held = prepared.fitting[fold_of == fold].reset_index(drop=True)
        retrieval = train_retrieval(part, config.retrieval, seed=seed + 1 + fold, verbose=config.runtime.verbose,
                                    strategy=strategy)
        rating = train_rating_model(part, config.rating, seed=seed + 1 + fold, verbose=config.runtime.verbose,
                                    strategy=strategy)
        stack_matrix_factorization(rating.model, part, config.rating)
        made = serving_lists(retrieval.model, rating.model, part, held, config, scale, strategy=strategy)
        lists = made.lists
        for key, value in {"lists": len(lists), **lists.found()}.items():
            found[key] += value
        lists = lists.take(np.flatnonzero(lists.labels.sum(axis=1) > 0))
        computed, mask = list_features(made.ranker, lists, made.histories)
        features.append(computed)
        valid.append(mask)
        labels.append(lists.labels)
        log(f"list ranker: cross-fit fold {fold + 1} of {folds}: models trained on {len(part.fitting):,} ratings, "
            f"{len(lists):,} lists with a fold rating among their candidates ({time.perf_counter() - began:.0f} s)")
        del retrieval, rating, made, part
        gc.collect()
    width = max(f.shape[1] for f in features)  # a fold without item-item candidates has empty slots appended
    return CrossFitLists(np.concatenate([pad_slots(f, width) for f in features]),
                         np.concatenate([pad_slots(v, width) for v in valid]),
                         np.concatenate([pad_slots(x, width) for x in labels]), found, time.perf_counter() - start)
