"""Metric functions on small cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tfrs_pipeline.ids import as_str, catalog_positions, users_of
from tfrs_pipeline.metrics import hit_ranks, hit_rate_at_k, ndcg, recall_and_ndcg, rmse, top_k_columns, top_k_report

USERS = np.array(["u1", "u2"], dtype=object)
LISTS = np.array([[b"a", b"b", b"c"], [b"c", b"a", b"d"]], dtype=object)  # bytes, as TensorFlow returns them
TEST = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u2"], "movie_id": ["b", "d", "d", "a", "z"]})


def test_hit_ranks_are_zero_based_positions_and_inf_for_misses():
    assert hit_ranks(USERS, LISTS, TEST).tolist() == [1.0, math.inf, 2.0, 1.0, math.inf]


def test_a_movie_listed_twice_counts_at_its_first_position():
    ranks = hit_ranks(np.array(["u"]), np.array([["x", "y", "x"]]), pd.DataFrame({"user_id": ["u"], "movie_id": ["x"]}))
    assert ranks.tolist() == [0.0]


def test_hit_rate_is_the_share_of_test_ratings_in_the_top_k():
    ranks = hit_ranks(USERS, LISTS, TEST)
    assert hit_rate_at_k(ranks, 1) == 0.0
    assert hit_rate_at_k(ranks, 2) == pytest.approx(2 / 5)  # u1-b at 1, u2-a at 1
    assert hit_rate_at_k(ranks, 3) == pytest.approx(3 / 5)  # and u2-d at 2
    assert hit_rate_at_k(np.array([]), 3) == 0.0


def test_ndcg_averages_users_and_caps_the_ideal_at_k():
    ranks = hit_ranks(USERS, LISTS, TEST)
    # u1: hit at rank 1 of 2 relevant; u2: hits at ranks 2 and 1 of 3 relevant (ideal: 3 hits at 0, 1, 2).
    u1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    u2 = (1 / math.log2(4) + 1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert ndcg(TEST, ranks, 3) == pytest.approx((u1 + u2) / 2)
    # At k = 2, u2's rank-2 hit no longer counts and its ideal has two slots.
    u2_at_2 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg(TEST, ranks, 2) == pytest.approx((u1 + u2_at_2) / 2)


def test_a_perfect_list_has_ndcg_one():
    test = pd.DataFrame({"user_id": ["u", "u"], "movie_id": ["a", "b"]})
    assert ndcg(test, hit_ranks(np.array(["u"]), np.array([["b", "a", "c"]]), test), 10) == pytest.approx(1.0)


def test_recall_and_ndcg_names_each_number():
    result = recall_and_ndcg(USERS, LISTS, TEST, ks=(2, 3))
    assert set(result) == {f"{name}_at_{k}" for name in ("hit_rate", "recall", "capped_recall") for k in (2, 3)} | {
        "ndcg_at_10"}
    assert result["hit_rate_at_3"] == pytest.approx(3 / 5)  # per rating
    # Per user: u1 finds b of {b, d}; u2 finds d and a of {d, a, z}.
    assert result["recall_at_3"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result["capped_recall_at_3"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # At 2: u2 finds only a; capping divides by min(2, 3) = 2 instead of 3.
    assert result["recall_at_2"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert result["capped_recall_at_2"] == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_top_k_report_asks_the_recommender_for_both_lists():
    calls = []

    def recommend(users, k, exclude_seen):
        calls.append((tuple(users), k, exclude_seen))
        return np.array([["b", "a", "d"] + ["-"] * (k - 3)] * len(users))

    report = top_k_report(recommend, TEST)
    assert calls == [(("u1", "u2"), 100, False), (("u1", "u2"), 100, True)]
    assert report["factorized_top_k"]["top_1"] == pytest.approx(1 / 5)  # u1-b
    assert report["factorized_top_k"]["top_5"] == pytest.approx(4 / 5)  # all but u2-z
    assert report["excluding_seen"]["hit_rate_at_10"] == pytest.approx(4 / 5)
    assert report["excluding_seen"]["recall_at_10"] == pytest.approx((2 / 2 + 2 / 3) / 2)


def test_rmse_and_string_helpers():
    assert rmse([1.0, 2.0], [1.0, 4.0]) == pytest.approx(math.sqrt(2.0))
    assert rmse(np.array([3.0], np.float32), [3.0]) == 0.0
    assert as_str(np.array([[b"a", "b"]], dtype=object)).tolist() == [["a", "b"]]
    assert users_of(TEST).tolist() == ["u1", "u2"]


def test_lists_kept_as_catalog_positions_score_as_the_ids_do():
    catalog = pd.Index(["z", "d", "c", "b", "a"])
    positions = catalog_positions(np.vstack([LISTS, [[b"a", b"q", b""]]]), catalog)  # q and "" are not movies
    assert positions.dtype == np.int32 and positions[2].tolist() == [4, -1, -1]
    users = np.append(USERS, "u3")
    assert hit_ranks(users, positions, TEST, catalog).tolist() == hit_ranks(USERS, LISTS, TEST).tolist()
    assert recall_and_ndcg(USERS, positions[:2], TEST, ks=(2, 3), catalog=catalog) == recall_and_ndcg(
        USERS, LISTS, TEST, ks=(2, 3))

    def recommend(users, k, exclude_seen):
        return np.array([["b", "a", "d"] + ["-"] * (k - 3)] * len(users))

    assert top_k_report(recommend, TEST, catalog=catalog) == top_k_report(recommend, TEST)


def test_categorical_id_columns_give_the_same_users_and_figures_as_strings():
    categorical = TEST.assign(user_id=pd.Categorical(TEST["user_id"], categories=["u0", "u2", "u1"]),
                              movie_id=TEST["movie_id"].astype("category"))
    assert users_of(categorical).tolist() == ["u1", "u2"]  # u0 is a category no rating uses
    assert recall_and_ndcg(USERS, LISTS, categorical, ks=(2, 3)) == recall_and_ndcg(USERS, LISTS, TEST, ks=(2, 3))
    integers = pd.DataFrame({"user_id": [10, 9, 10], "movie_id": [1, 2, 3]})
    assert users_of(integers).tolist() == ["10", "9"]  # sorted as strings, as the ids are compared


def test_ids_that_read_the_same_as_strings_are_one_id():
    from tfrs_pipeline.baselines import movie_mean

    mixed = pd.DataFrame({"user_id": [1, "1", 2], "movie_id": [5, "5", 6], "rating": [4.0, 2.0, 3.0]})
    assert users_of(mixed).tolist() == ["1", "2"]
    assert movie_mean(mixed, ["5"], shrinkage=0.0).tolist() == [3.0]


def test_top_k_columns_are_best_first_with_ties_in_column_order_even_across_the_cut():
    scores = np.array([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0],
                       [-np.inf, 0.5, -np.inf, -np.inf, 0.2, -np.inf]], np.float32)
    # Three 2.0s compete for the last two places: the two earlier columns win; unseen (-inf) ones likewise.
    assert top_k_columns(scores, 4).tolist() == [[1, 3, 2, 4], [1, 4, 0, 2]]
    assert top_k_columns(scores, 10).tolist() == np.argsort(-scores, axis=1, kind="stable").tolist()
