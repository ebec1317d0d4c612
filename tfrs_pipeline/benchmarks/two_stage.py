"""The two-stage benchmark: the top-10 ablation of one or more training runs (seeds), and the rating model's RMSE beside baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfrs_pipeline.benchmarks.output import write_results
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.metrics import rmse
from tfrs_pipeline.pipeline import load_and_prepare


def benchmark_two_stage(source: str, *, config: PipelineConfig | None = None, seeds: int = 1,
                        out: str | Path | None = None, log=print) -> dict:
    """Trains both stages on ``source`` ``seeds`` times and prints the top-10 ablation of each run.

    Retrieval alone, the two stages with the rating blend, the two stages as served (the list
    ranker), EASE and most-popular, all on the same split, with RMSE beside biased matrix
    factorization and the seconds of each stage. The training seed runs from
    ``runtime.seed`` up (the split's seed stays put); with more than one seed, each figure's
    mean, standard deviation and range over the seeds follow.
    """
    import tempfile

    from tfrs_pipeline.evaluation.summary import format_ablation
    from tfrs_pipeline.pipeline import run_training

    config = apply_overrides(config or PipelineConfig(), {"data.source": source}).validate()
    runs = []
    for offset in range(seeds):
        seed = config.runtime.seed + offset
        log(f"== {source}: training seed {seed} ({offset + 1} of {seeds})")
        seeded = apply_overrides(config, {"runtime.seed": seed}).validate()
        with tempfile.TemporaryDirectory() as folder:
            trained = run_training(seeded, Path(folder) / "two-stage", log=log)
        metrics = trained.metrics
        ablation = {**metrics["ablation"], **visitor_rows(metrics.get("cold_start", {}))}
        served, retrieval = ablation["two-stage, as served"], ablation["retrieval alone"]
        log(format_ablation(ablation))
        log(f"  two-stage / retrieval alone: NDCG@10 {served['ndcg_at_10'] / retrieval['ndcg_at_10']:.3f}x, "
            f"hit rate@10 {served['hit_rate_at_10'] / retrieval['hit_rate_at_10']:.3f}x")
        mf = metrics["baselines"]["matrix_factorization"]["rating"]
        if "rmse" in metrics["rating"]:
            log(f"  rating model RMSE {metrics['rating']['rmse']:.4f} (biased MF {mf['rmse']:.4f})")
        else:
            log(f"  rating model: {metrics['rating']['note']}")
        training = metrics["training"]
        peak = max(phase["peak_rss_mib"] for phase in training["phases"].values()) / 1024
        refit = training.get("retrieval_refit") or {}
        log(f"  seconds: retrieval {training['retrieval_seconds']:.1f}"
            + (f" (+ {refit['seconds']:.1f} refitted)" if refit else "") + f", rating model {training['rating_seconds']:.1f}, "
            f"list ranker {training.get('list_ranker_seconds', 0.0):.1f}; whole run {trained.seconds:.0f}, "
            f"peak {peak:.1f} GiB")
        runs.append({"seed": seed, "ablation": ablation, "rating_rmse": metrics["rating"].get("rmse"),
                     "mf_rmse": mf.get("rmse"), "training": training, "seconds": trained.seconds, "peak_gib": peak})
    results = {"data": source, "seeds": [run["seed"] for run in runs], "runs": runs}
    if seeds > 1:
        results["summary"] = summarize_runs(runs)
        log(format_summary(source, results["seeds"], results["summary"]))
    if seeds == 1:  # the single run's figures where they always were
        results.update({key: runs[0][key] for key in ("ablation", "rating_rmse", "training", "seconds")})
    write_results(results, out, log)
    return results


#: The cold-start figures as the benchmark's rows: the test users served as visitors.
VISITOR_ROWS = {"history_all": "visitors, from all their training movies",
                "history_5": "visitors, from their 5 most recent movies",
                "most_popular_history_5": "most popular, minus those 5"}


def visitor_rows(cold_start: dict) -> dict:
    """``metrics.json``'s ``cold_start`` figures under the benchmark's row names."""
    return {name: cold_start[key] for key, name in VISITOR_ROWS.items() if key in cold_start}


def _spread(values) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max())}


def summarize_runs(runs: list[dict]) -> dict:
    """Mean, sample standard deviation, min and max over the runs of every ablation figure, the RMSEs,
    two-stage / EASE, wall seconds and peak memory."""
    summary = {"ablation": {name: {metric: _spread([run["ablation"][name][metric] for run in runs])
                                   for metric in ("hit_rate_at_10", "recall_at_10", "ndcg_at_10")}
                            for name in runs[0]["ablation"] if all(name in run["ablation"] for run in runs)}}
    def ratio(numerator: str, denominator: str) -> dict | None:
        if not all(numerator in run["ablation"] and denominator in run["ablation"] for run in runs):
            return None
        return _spread([run["ablation"][numerator]["ndcg_at_10"] / run["ablation"][denominator]["ndcg_at_10"]
                        for run in runs])

    for key, numerator, denominator in (
            ("two_stage_over_ease_ndcg", "two-stage, as served", "EASE"),
            ("visitors_all_over_known_ndcg", VISITOR_ROWS["history_all"], "two-stage, as served"),
            ("visitors_5_over_most_popular_ndcg", VISITOR_ROWS["history_5"], VISITOR_ROWS["most_popular_history_5"])):
        found = ratio(numerator, denominator)
        if found is not None:
            summary[key] = found
    if runs[0]["rating_rmse"] is not None:
        summary["rating_rmse"] = _spread([run["rating_rmse"] for run in runs])
        summary["mf_rmse"] = _spread([run["mf_rmse"] for run in runs])
    summary["seconds"] = _spread([run["seconds"] for run in runs])
    summary["peak_gib"] = _spread([run["peak_gib"] for run in runs])
    return summary


def format_summary(source: str, seeds: list[int], summary: dict) -> str:
    """The summary as a table: mean +- standard deviation [min, max] of each figure."""
    def cell(spread, digits=4):
        return f"{spread['mean']:.{digits}f} +- {spread['std']:.{digits}f}"

    width = max(len(name) for name in summary["ablation"])
    lines = ["", f"{source}, training seeds {', '.join(map(str, seeds))}: mean +- standard deviation over the seeds",
             f"  {'top 10, seen excluded':<{width}}  {'hit rate@10':>17}  {'NDCG@10':>17}  NDCG@10 range"]
    for name, figures in summary["ablation"].items():
        ndcg = figures["ndcg_at_10"]
        lines.append(f"  {name:<{width}}  {cell(figures['hit_rate_at_10']):>17}  {cell(ndcg):>17}  "
                     f"[{ndcg['min']:.4f}, {ndcg['max']:.4f}]")
    for key, text in (("two_stage_over_ease_ndcg", "two-stage / EASE"),
                      ("visitors_all_over_known_ndcg", "visitors from all their movies / known users"),
                      ("visitors_5_over_most_popular_ndcg", "visitors from 5 movies / most popular minus those 5")):
        if key in summary:
            ratio = summary[key]
            lines.append(f"  {text} NDCG@10: {cell(ratio, 3)}x [{ratio['min']:.3f}, {ratio['max']:.3f}]")
    if "rating_rmse" in summary:
        lines.append(f"  RMSE: rating model {cell(summary['rating_rmse'])} "
                     f"[{summary['rating_rmse']['min']:.4f}, {summary['rating_rmse']['max']:.4f}], "
                     f"biased MF {cell(summary['mf_rmse'])}")
    lines.append(f"  whole run: {cell(summary['seconds'], 0)} s, peak {summary['peak_gib']['max']:.1f} GiB")
    return "\n".join(lines)


def compare_rating_model(source: str, *, epochs: int = 30, config: PipelineConfig | None = None):
    """Test RMSE of the rating model, as exported (stacked with matrix factorization) and its network
    alone, beside global mean, movie mean and biased matrix factorization."""
    import pandas as pd

    from tfrs_pipeline.baselines import BiasedMatrixFactorization, movie_mean
    from tfrs_pipeline.ranking.rating import (
        predict_ratings,
        refit_matrix_factorization,
        stack_matrix_factorization,
        train_rating_model,
    )

    config = apply_overrides(config or PipelineConfig(), {"data.source": source, "rating.epochs": epochs}).validate()
    run = load_and_prepare(config)
    data, split, prepared = run.data, run.split, run.prepared
    test = split.test
    model = train_rating_model(prepared, config.rating, seed=config.runtime.seed, verbose=0).model
    stack = stack_matrix_factorization(model, prepared, config.rating)  # on the hold-out, before it becomes history
    model.use_history(prepared.whole_users)  # as exported: every training rating is history
    if stack is not None and stack["stacked"]:
        refit_matrix_factorization(model, prepared, config.rating, split.train)
    weights = model.stack_weights.numpy()
    model.stack_weights.assign([1.0, 0.0, 0.0])
    network = predict_ratings(model, test["user_id"], test["movie_id"])
    model.stack_weights.assign(weights)
    mf = BiasedMatrixFactorization(factors=32, regularization=15.0, rating_scale=data.rating_scale).fit(split.train)
    predictions = {
        "global mean": np.full(len(test), split.train["rating"].mean()),
        "movie mean": movie_mean(split.train, test["movie_id"]),
        "biased matrix factorization (ALS, 32 factors)": mf.predict(test["user_id"], test["movie_id"]),
        "rating network alone": network,
        "rating model (stacked with MF, as exported)": predict_ratings(model, test["user_id"], test["movie_id"]),
    }
    return pd.DataFrame({"rmse": {name: rmse(p, test["rating"]) for name, p in predictions.items()}})
