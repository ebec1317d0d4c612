"""The two-stage benchmark: the top-10 ablation of one training run, and ranking RMSE beside baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfrs_pipeline.benchmarks.output import write_results
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.metrics import rmse
from tfrs_pipeline.pipeline import load_and_prepare


def benchmark_two_stage(source: str, *, config: PipelineConfig | None = None, out: str | Path | None = None) -> dict:
    """Trains both stages on ``source`` (into a temporary model folder) and prints the top-10 ablation.

    Retrieval alone, the two stages with the rating blend, the two stages as
    served (the list ranker), EASE and most-popular, all on the same split, with RMSE and
    the seconds of each stage.
    """
    import tempfile

    from tfrs_pipeline.evaluation.summary import format_ablation
    from tfrs_pipeline.pipeline import run_training

    config = apply_overrides(config or PipelineConfig(), {"data.source": source}).validate()
    with tempfile.TemporaryDirectory() as folder:
        trained = run_training(config, Path(folder) / "two-stage")
    metrics = trained.metrics
    ablation = metrics["ablation"]
    served, retrieval = ablation["two-stage, as served"], ablation["retrieval alone"]
    print(format_ablation(ablation))
    print(f"  two-stage / retrieval alone: NDCG@10 {served['ndcg_at_10'] / retrieval['ndcg_at_10']:.3f}x, "
          f"hit rate@10 {served['hit_rate_at_10'] / retrieval['hit_rate_at_10']:.3f}x")
    if "rmse" in metrics["ranking"]:
        print(f"  ranking RMSE {metrics['ranking']['rmse']:.4f} (biased MF "
              f"{metrics['baselines']['matrix_factorization']['ranking']['rmse']:.4f})")
    else:
        print(f"  ranking: {metrics['ranking']['note']}")
    training = metrics["training"]
    print(f"  seconds: retrieval {training['retrieval_seconds']:.1f}, rating model {training['ranking_seconds']:.1f}, "
          f"list ranker {training.get('list_ranker_seconds', 0.0):.1f}; whole run {trained.seconds:.0f}")
    results = {"data": source, "ablation": ablation, "ranking_rmse": metrics["ranking"].get("rmse"), "training": training,
               "seconds": trained.seconds}
    write_results(results, out)
    return results


def compare_rating_model(source: str, *, epochs: int = 30, config: PipelineConfig | None = None):
    """Test RMSE of the ranking model beside global mean, movie mean and biased matrix factorization."""
    import pandas as pd

    from tfrs_pipeline.baselines import BiasedMatrixFactorization, movie_mean
    from tfrs_pipeline.ranking.rating import predict_ratings, train_rating_model

    config = apply_overrides(config or PipelineConfig(), {"data.source": source, "rating.epochs": epochs}).validate()
    run = load_and_prepare(config)
    data, split, prepared = run.data, run.split, run.prepared
    test = split.test
    model = train_rating_model(prepared, config.rating, seed=config.runtime.seed, verbose=0).model
    mf = BiasedMatrixFactorization(factors=32, regularization=15.0, rating_scale=data.rating_scale).fit(split.train)
    predictions = {
        "global mean": np.full(len(test), split.train["rating"].mean()),
        "movie mean": movie_mean(split.train, test["movie_id"]),
        "biased matrix factorization (ALS, 32 factors)": mf.predict(test["user_id"], test["movie_id"]),
        "ranking model": predict_ratings(model, test["user_id"], test["movie_id"]),
    }
    return pd.DataFrame({"rmse": {name: rmse(p, test["rating"]) for name, p in predictions.items()}})
