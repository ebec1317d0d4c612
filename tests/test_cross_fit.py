"""Cross-fitted candidate lists: every fitting rating a label once, features from models that never saw it."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_pipeline.config import PipelineConfig, SplitConfig, apply_overrides
from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.split import split_ratings
from tfrs_pipeline.features.dataset import prepare
from tfrs_pipeline.ranking.cross_fit import cross_fit_lists, without_fold
from tfrs_pipeline.ranking.list_ranker import FEATURES


@pytest.fixture(scope="module")
def small():
    data = load_data("synthetic:120x60x2500")
    prepared = prepare(data, split_ratings(data, SplitConfig(seed=5)).train, 0.1, 5)
    config = apply_overrides(PipelineConfig(), {
        "retrieval.epochs": 1, "rating.epochs": 1, "ranker.cross_fit_folds": 2, "ranker.item_candidates": 10,
        "serving.num_candidates": 20, "runtime.verbose": 0}).validate()
    return data, prepared, config


def test_a_fold_is_left_out_of_every_table_the_features_are_counted_on(small):
    data, prepared, _ = small
    kept = np.arange(len(prepared.fitting)) % 3 != 0
    part = without_fold(prepared, data, kept)
    assert len(part.fitting) == kept.sum() and int(part.movies.train_count.sum()) == kept.sum()
    assert int(np.diff(part.users.history_splits).sum()) == kept.sum()
    assert part.whole_movies is prepared.whole_movies and part.validation is prepared.validation
    assert part.global_mean == pytest.approx(prepared.fitting["rating"][kept].mean())


@pytest.mark.slow
def test_every_fitting_rating_labels_one_fold_and_the_lists_have_the_served_shape(small):
    data, prepared, config = small
    lines = []
    fitted = cross_fit_lists(prepared, data, config, scale=5.0, log=lines.append)
    assert fitted.found["relevant"] == len(prepared.fitting)  # each rating is in exactly one fold's labels
    users = prepared.fitting["user_id"].nunique()
    assert users < fitted.found["lists"] <= 2 * users  # a list per user per fold the user has ratings in
    assert fitted.features.shape == (len(fitted), 20 + 10, len(FEATURES))
    assert (fitted.labels.sum(axis=1) > 0).all() and not (fitted.labels * ~fitted.valid).any()
    assert fitted.found["merged"] == fitted.found["retrieval"] + fitted.found["item_item_added"] == fitted.labels.sum()
    assert len(lines) == 2 and "cross-fit fold 2 of 2" in lines[1]


def test_no_cross_fitting_above_the_user_limit(small):
    data, prepared, config = small
    lines = []
    limited = apply_overrides(config, {"ranker.cross_fit_max_users": 10}).validate()
    assert cross_fit_lists(prepared, data, limited, scale=5.0, log=lines.append) is None
    assert "above ranker.cross_fit_max_users 10" in lines[0]
