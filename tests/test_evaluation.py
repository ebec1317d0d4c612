"""Evaluation of an exported model: our metric code against an independent implementation, and the ablation."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_pipeline.evaluation.evaluate import SESSION_EASE
from tfrs_pipeline.ids import users_of
from tfrs_pipeline.metrics import recall_and_ndcg
from tfrs_pipeline.recommender import Recommender


def test_recall_and_ndcg_match_trec_eval_through_ir_measures_on_an_exported_model(trained):
    ir_measures = pytest.importorskip("ir_measures", reason="the test extra installs ir-measures")
    model = Recommender.load(trained.path)
    test = trained.split.test
    users = users_of(test)
    lists = model.call("serving_default", user_id=users, k=10)["movie_ids"]
    ours = recall_and_ndcg(users, lists, test, ks=(10,))

    qrels = [ir_measures.Qrel(str(u), str(m), 1) for u, m in set(zip(test["user_id"].astype(str), test["movie_id"].astype(str)))]
    # Distinct descending scores: trec_eval breaks score ties by document id, not by list position.
    run = [ir_measures.ScoredDoc(str(user), str(movie), float(10 - rank))
           for user, row in zip(users, lists) for rank, movie in enumerate(row)]
    theirs = ir_measures.calc_aggregate([ir_measures.R @ 10, ir_measures.nDCG @ 10], qrels, run)
    assert ours["recall_at_10"] == pytest.approx(theirs[ir_measures.R @ 10], abs=1e-9)
    assert ours["ndcg_at_10"] == pytest.approx(theirs[ir_measures.nDCG @ 10], abs=1e-9)
    assert 0 < ours["hit_rate_at_10"] <= 1 and ours["capped_recall_at_10"] >= ours["recall_at_10"]


def test_metrics_json_has_the_ablation_of_every_system(trained):
    ablation = trained.metrics["ablation"]
    choice = trained.metrics["training"]["item_item"]["session_choice"]  # plain and session-aware EASE on the hold-out
    with_sessions = {SESSION_EASE} if choice["sessions"] > choice["plain"] else set()
    assert set(ablation) == {"retrieval alone", "two-stage, rating blend", "two-stage, as served", "most popular",
                             "EASE"} | with_sessions
    for numbers in ablation.values():
        assert {"hit_rate_at_10", "recall_at_10", "capped_recall_at_10", "ndcg_at_10"} <= set(numbers)
        assert all(0.0 <= value <= 1.0 for value in numbers.values())
    served = trained.metrics["pipeline"]
    assert ablation["two-stage, as served"]["ndcg_at_10"] == served["ndcg_at_10"]
    assert np.isclose(ablation["retrieval alone"]["hit_rate_at_10"], trained.metrics["excluding_seen"]["hit_rate_at_10"])


def test_a_catalog_too_big_for_the_score_budget_is_scored_in_smaller_blocks_with_the_same_figures(trained, monkeypatch):
    from tfrs_pipeline import ids
    from tfrs_pipeline.evaluation.evaluate import factorized_top_k_of_export

    model = Recommender.load(trained.path)
    catalog_ids = model.catalog["movie_id"].to_numpy()
    whole = factorized_top_k_of_export(model.model_dir, trained.split.test, catalog_ids)
    # A budget of 7 queries against this catalog stands in for a million-movie catalog's 268.
    monkeypatch.setattr(ids, "SCORES_PER_BLOCK", 7 * len(catalog_ids))
    assert ids.rows_per_block(len(catalog_ids), 4096) == 7
    blocked = factorized_top_k_of_export(model.model_dir, trained.split.test, catalog_ids)
    assert blocked == pytest.approx(whole, abs=1e-6)
    assert whole["top_100"] > whole["top_10"] > 0


def test_rows_per_block_keeps_the_preferred_block_until_the_scores_pass_the_budget():
    from tfrs_pipeline.ids import SCORES_PER_BLOCK, rows_per_block

    assert rows_per_block(27_278, 8192) == 8192  # MovieLens 20M's catalog: unchanged
    assert rows_per_block(1_000_000, 8192) * 1_000_000 <= SCORES_PER_BLOCK
    assert rows_per_block(10 * SCORES_PER_BLOCK, 64) == 1


def test_the_ease_baseline_lists_the_whole_catalog_closed_form_top_k_with_seen_movies_excluded():
    import pandas as pd

    from tfrs_pipeline.baselines import ease_recommender
    from tfrs_pipeline.data import load_data
    from tfrs_pipeline.features.vocabulary import Vocabularies
    from tfrs_pipeline.retrieval.index import SeenMovies

    data = load_data("synthetic:80x50x1500")
    train = data.interactions[data.interactions["movie_id"] != "7"]  # a catalog movie nobody rated
    catalog = np.array(sorted(data.movies["movie_id"].astype(str)))
    users = users_of(train)
    seen = SeenMovies(Vocabularies(list(users), [], [], [], [], []), catalog, train)
    lists = ease_recommender(train, catalog, seen)(np.append(users[:5], "stranger"), 10, True)
    x = np.zeros((len(users), len(catalog)))
    x[pd.Index(users).get_indexer(train["user_id"]), pd.Index(catalog).get_indexer(train["movie_id"])] = 1.0
    p = np.linalg.inv(x.T @ x + 200.0 * np.eye(len(catalog)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    scores = np.where(x[:5] > 0, -np.inf, x[:5] @ b)
    for row, expected in zip(lists[:5], scores):  # a seen movie listed would score -inf here
        assert [expected[np.flatnonzero(catalog == m)[0]] for m in row] == pytest.approx(np.sort(expected)[::-1][:10], rel=1e-3)
    assert lists.shape == (6, 10) and lists[5].tolist() == catalog[:10].tolist()  # an unknown user: every score 0


def test_ease_with_the_session_kernel_is_closed_form_ease_of_the_mixed_co_rating_counts():
    import pandas as pd

    from tfrs_pipeline.baselines import ease_recommender
    from tfrs_pipeline.data import load_data
    from tfrs_pipeline.features.vocabulary import Vocabularies
    from tfrs_pipeline.ranking.neighbours import Sessions
    from tfrs_pipeline.retrieval.index import SeenMovies

    data = load_data("synthetic:80x50x1500")
    train = data.interactions.drop_duplicates(["user_id", "movie_id"]).copy()
    # Each user rates a movie every two minutes, in a random order: many pairs within the kernel's reach.
    train["timestamp"] = train.groupby("user_id", observed=True).cumcount() * 120 + 10**9
    catalog = np.array(sorted(data.movies["movie_id"].astype(str)))
    users = users_of(train)
    seen = SeenMovies(Vocabularies(list(users), [], [], [], [], []), catalog, train)
    kernel = Sessions(weight=0.6, minutes=5.0, regularization=100.0)
    lists = ease_recommender(train, catalog, seen, sessions=kernel)(users[:5], 10, True)
    u, m = pd.Index(users).get_indexer(train["user_id"]), pd.Index(catalog).get_indexer(train["movie_id"])
    x = np.zeros((len(users), len(catalog)))
    x[u, m] = 1.0
    pairs = np.zeros((len(catalog), len(catalog)))
    t = train["timestamp"].to_numpy()
    for user in range(len(users)):  # every pair of one user's ratings up to 8 time scales (40 minutes) apart
        mine = np.flatnonzero(u == user)
        for a in mine:
            for b in mine:
                if a != b and abs(t[a] - t[b]) <= 2400:
                    pairs[m[a], m[b]] += np.exp(-abs(t[a] - t[b]) / 300.0)
    gram = 0.4 * (x.T @ x) + 0.6 * pairs
    np.fill_diagonal(gram, x.sum(axis=0))
    rated = x.sum(axis=0) > 0
    p = np.linalg.inv(gram[np.ix_(rated, rated)] + 100.0 * np.eye(rated.sum()))
    b = np.zeros((len(catalog), len(catalog)))
    b[np.ix_(rated, rated)] = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    scores = np.where(x[:5] > 0, -np.inf, x[:5] @ b)
    for row, expected in zip(lists[:5], scores):
        assert [expected[np.flatnonzero(catalog == m)[0]] for m in row] == pytest.approx(np.sort(expected)[::-1][:10], rel=1e-3)
    plain = ease_recommender(train, catalog, seen)(users[:5], 10, True)
    assert (lists != plain).any()  # the kernel changes what EASE lists


def test_the_figures_do_not_depend_on_how_many_users_each_ranking_call_holds(trained, monkeypatch):
    from tfrs_pipeline.evaluation import evaluate

    # The run's own figures were measured 256 users a call; 16 a call must give the same.
    monkeypatch.setattr(evaluate, "USERS_PER_RANKING_CALL", 16)
    metrics = evaluate.evaluate_export(trained.path, trained.split.train, trained.split.test, (0.5, 5.0),
                                       with_ease=False, log=lambda *_: None)
    for row in ("two-stage, as served", "two-stage, rating blend"):
        assert metrics["ablation"][row] == pytest.approx(trained.metrics["ablation"][row], abs=1e-9)
    for row in ("history_5", "history_all"):
        assert metrics["cold_start"][row] == pytest.approx(trained.metrics["cold_start"][row], abs=1e-9)
    assert metrics["cold_start"]["history_all"]["ndcg_at_10"] > 0
