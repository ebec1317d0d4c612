"""Evaluation of an exported model: our metric code against an independent implementation, and the ablation."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_pipeline.client import Recommender
from tfrs_pipeline.metrics import recall_and_ndcg, users_of


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
    assert set(ablation) == {"retrieval alone", "two-stage, rating blend", "two-stage, as served", "most popular", "EASE"}
    for numbers in ablation.values():
        assert {"hit_rate_at_10", "recall_at_10", "capped_recall_at_10", "ndcg_at_10"} <= set(numbers)
        assert all(0.0 <= value <= 1.0 for value in numbers.values())
    served = trained.metrics["pipeline"]
    assert ablation["two-stage, as served"]["ndcg_at_10"] == served["ndcg_at_10"]
    assert np.isclose(ablation["retrieval alone"]["hit_rate_at_10"], trained.metrics["excluding_seen"]["hit_rate_at_10"])
