"""Implicit feedback (interactions without ratings) trains, evaluates and serves end to end."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY

from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.data import load_data
from tfrs_pipeline.evaluation.summary import format_metrics
from tfrs_pipeline.pipeline import run_training
from tfrs_pipeline.recommender import Recommender


@pytest.mark.slow
def test_plays_without_ratings_train_a_relevance_ranker_and_serve(tmp_path):
    ratings = load_data(TINY["data.source"]).interactions
    plays = ratings[ratings["rating"] >= 3].rename(columns={"movie_id": "item_id"})
    path = tmp_path / "plays.csv"
    plays[["user_id", "item_id", "timestamp"]].to_csv(path, index=False)
    config = apply_overrides(PipelineConfig(), {**TINY, "data.source": f"csv:{path}", "data.implicit": True})
    trained = run_training(config, tmp_path / "plays", log=lambda *_: None)

    metrics = trained.metrics
    assert metrics["ranking"] == {"note": "implicit feedback: there are no ratings, so RMSE is not measured"}
    assert "two-stage, relevance blend" in metrics["ablation"]
    assert metrics["ablation"]["two-stage, as served"]["hit_rate_at_10"] > metrics["ablation"]["most popular"][
        "hit_rate_at_10"] * 0.5
    assert "RMSE is not measured" in format_metrics(metrics) and "ranking RMSE" not in format_metrics(metrics)

    model = Recommender.load(trained.path)
    assert model.implicit
    train = trained.split.train
    user = str(train["user_id"].iloc[0])
    out = model.recommend([user], k=10, arrays=True)
    relevance = out["predicted_ratings"][0]
    assert out["movie_ids"].shape == (1, 10) and np.all((relevance >= 0) & (relevance <= 1))
    assert not set(train.loc[train["user_id"] == user, "movie_id"]) & set(out["movie_ids"][0])
