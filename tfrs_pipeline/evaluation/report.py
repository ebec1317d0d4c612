"""Results people would rather look at than read: plots of an exported model's evaluation.

``write_report`` (behind ``tfrs-pipeline evaluate --report DIR``) writes ``metrics.json``
and four PNGs; the notebooks call the same plotting functions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tfrs_pipeline import signatures as named
from tfrs_pipeline.baselines import BiasedMatrixFactorization, most_popular_from_training, movie_mean
from tfrs_pipeline.ids import as_str, rows_per_block, users_of
from tfrs_pipeline.metrics import rmse
from tfrs_pipeline.model_dir import METRICS, ModelDir
from tfrs_pipeline.recommender import Recommender

ACTIVITY_BUCKETS = (0, 20, 50, 100, 200, 500, np.inf)
ACTIVITY_LABELS = ("0-20", "21-50", "51-100", "101-200", "201-500", "over 500")


def plot_top_k(metrics: dict) -> plt.Figure:
    """Factorized top-K accuracy (seen kept) and recall@K (seen excluded) against K, model vs most-popular."""
    popular = metrics["baselines"]["most_popular"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ks = [int(key.split("_")[1]) for key in metrics["factorized_top_k"]]
    left.plot(ks, list(metrics["factorized_top_k"].values()), "o-", label="two-tower model")
    left.plot(ks, list(popular["factorized_top_k"].values()), "s--", label="most popular")
    left.set(xscale="log", xlabel="K", ylabel="top-K accuracy", title="Factorized top-K accuracy (TFRS; seen kept)")
    recall_keys = [key for key in metrics["excluding_seen"] if key.startswith("recall_at_")]
    recall_ks = [int(key.rsplit("_", 1)[1]) for key in recall_keys]
    right.plot(recall_ks, [metrics["excluding_seen"][key] for key in recall_keys], "o-", label="two-tower model")
    right.plot(recall_ks, [popular["excluding_seen"][key] for key in recall_keys], "s--", label="most popular")
    right.set(xscale="log", xlabel="K", ylabel="recall@K", title="Recall@K (each user's seen movies excluded)")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def plot_training_curves(history: dict) -> plt.Figure:
    """Per-epoch validation curves recorded at training (``history.json``): retrieval, rating model, list ranker."""
    lists = history.get("list_ranking", {})
    figure, axes = plt.subplots(1, 3 if lists else 2, figsize=(16 if lists else 11, 4))
    left, right = axes[0], axes[1]
    # "ranking" and "ranking_best_epoch": the rating model's entries in models exported before they were renamed.
    retrieval, rating = history.get("retrieval", {}), history.get("rating", history.get("ranking", {}))
    for key, value in retrieval.items():
        if key.startswith("val_hit_rate_at_"):
            left.plot(range(1, len(value) + 1), value, "o-", label=key)
    left.axvline(history.get("retrieval_best_epoch", 0), color="grey", linestyle=":", label="kept epoch")
    left.set(xlabel="epoch", ylabel="hit rate", title="Retrieval: validation hit rate (seen excluded)")
    for key in ("root_mean_squared_error", "val_root_mean_squared_error"):
        if key in rating:
            right.plot(range(1, len(rating[key]) + 1), rating[key], "o-", label=key.replace("root_mean_squared_error", "RMSE"))
    right.axvline(history.get("rating_best_epoch", history.get("ranking_best_epoch", 0)), color="grey", linestyle=":", label="kept epoch")
    right.set(xlabel="epoch", ylabel="RMSE", title="Rating model: RMSE")
    if lists:
        for key in ("val_ndcg_at_10", "val_recall_at_10"):
            if key in lists:
                axes[2].plot(range(1, len(lists[key]) + 1), lists[key], "o-", label=key)
        axes[2].axvline(history.get("list_ranking_best_epoch", 0), color="grey", linestyle=":", label="kept epoch")
        axes[2].set(xlabel="epoch", ylabel="on held-out users' lists", title="List ranker: validation NDCG@10")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def rmse_by_activity(model: Recommender, train: pd.DataFrame, test: pd.DataFrame, rating_scale) -> pd.DataFrame:
    """Test RMSE of the ranking model, biased MF and movie means, by the user's number of training ratings."""
    users = test["user_id"].astype(str).to_numpy()
    movies = test["movie_id"].astype(str).to_numpy()
    predicted = model.call(model.ratings_signature, 16384, user_id=users, movie_ids=movies[:, None])
    mf = BiasedMatrixFactorization(factors=32, regularization=15.0, rating_scale=tuple(rating_scale)).fit(train)
    activity = train.groupby(train["user_id"].astype(str), observed=True).size().reindex(users).fillna(0).to_numpy()
    frame = pd.DataFrame({
        "bucket": pd.cut(activity, ACTIVITY_BUCKETS, labels=ACTIVITY_LABELS, right=True, include_lowest=True),
        "rating": test["rating"].to_numpy(),
        "ranking model": predicted["predicted_ratings"][:, 0],
        "matrix factorization": mf.predict(users, movies),
        "movie mean": movie_mean(train, movies),
    })
    rows = []
    for bucket, group in frame.groupby("bucket", observed=True):
        rows.append({"training ratings per user": str(bucket), "test ratings": len(group),
                     **{name: rmse(group[name], group["rating"]) for name in ("ranking model", "matrix factorization", "movie mean")}})
    return pd.DataFrame(rows)


def plot_rmse_by_activity(table: pd.DataFrame) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(9, 4))
    names = ["ranking model", "matrix factorization", "movie mean"]
    x = np.arange(len(table))
    for offset, name in enumerate(names):
        axis.bar(x + (offset - 1) * 0.27, table[name], width=0.27, label=name)
    axis.set_xticks(x, [f"{b}\n({n:,} ratings)" for b, n in zip(table["training ratings per user"], table["test ratings"])])
    axis.set(ylabel="test RMSE", title="Rating error by user activity (training ratings per user)")
    low = float(np.nanmin(table[names].to_numpy()))
    axis.set_ylim(max(0.0, low - 0.15), None)
    axis.legend()
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def coverage_and_popularity(model: Recommender, train: pd.DataFrame, test: pd.DataFrame, k: int = 10) -> dict:
    """Catalog coverage of every test user's top-k, and the popularity of what is recommended."""
    catalog = model.catalog["movie_id"].to_numpy()
    counts = train["movie_id"].astype(str).value_counts().reindex(catalog).fillna(0)
    users = users_of(test)
    served = model.call(named.SERVING_DEFAULT, rows_per_block(len(catalog), 1024), user_id=users, k=k)
    recommended = as_str(served["movie_ids"]).ravel()
    popular = as_str(most_popular_from_training(train, catalog)(users, k, True)).ravel()
    return {
        "k": k,
        "catalog_size": len(catalog),
        "model_coverage": len(set(recommended)) / len(catalog),
        "most_popular_coverage": len(set(popular)) / len(catalog),
        "model_recommended_popularity": counts.reindex(recommended).to_numpy(),
        "catalog_popularity": counts.to_numpy(),
        "most_popular_recommended_popularity": counts.reindex(popular).to_numpy(),
    }


def plot_coverage_and_popularity(stats: dict) -> plt.Figure:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 2]})
    left.bar(["two-stage model", "most popular"], [stats["model_coverage"], stats["most_popular_coverage"]],
             color=["C0", "C1"])
    left.set(ylabel=f"share of catalog in some user's top {stats['k']}", title="Catalog coverage", ylim=(0, 1))
    bins = np.logspace(0, np.log10(max(2.0, stats["catalog_popularity"].max() + 1)), 30)
    right.hist(stats["catalog_popularity"] + 1, bins=bins, alpha=0.5, density=True, label="catalog")
    right.hist(stats["model_recommended_popularity"] + 1, bins=bins, alpha=0.6, density=True, label="recommended (model)")
    right.hist(stats["most_popular_recommended_popularity"] + 1, bins=bins, alpha=0.6, density=True,
               label="recommended (most popular)")
    right.set(xscale="log", xlabel="training ratings of the movie + 1", ylabel="density",
              title="Popularity of recommended movies")
    right.legend()
    figure.tight_layout()
    return figure


def plot_ablation(ablation: dict[str, dict[str, float]]) -> plt.Figure:
    """Hit rate@10, recall@10 and NDCG@10 of every system of the ablation, side by side."""
    names = list(ablation)
    metrics = [("hit_rate_at_10", "hit rate@10 (per rating)"), ("recall_at_10", "recall@10 (per user)"),
               ("ndcg_at_10", "NDCG@10")]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    for axis, (key, label) in zip(axes, metrics):
        values = [ablation[name][key] for name in names]
        bars = axis.barh(range(len(names)), values, color=[f"C{i}" for i in range(len(names))])
        axis.set_yticks(range(len(names)), names if axis is axes[0] else [""] * len(names))
        axis.invert_yaxis()
        axis.bar_label(bars, fmt="%.4f", fontsize=8, padding=2)
        axis.set(title=label, xlim=(0, max(values) * 1.25 if max(values) > 0 else 1))
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle("Top 10 with seen movies excluded: each stage beside the baselines (same test split)")
    figure.tight_layout()
    return figure


def write_report(model: Recommender | ModelDir | str, split, metrics: dict, out_dir: str | Path,
                 rating_scale: tuple[float, float]) -> list[Path]:
    """Writes ``metrics.json`` and the PNG plots to ``out_dir``; returns the files written."""
    model = model if isinstance(model, Recommender) else Recommender.load(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / METRICS]
    written[0].write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    figures = {"top_k_accuracy.png": plot_top_k(metrics)}
    if not model.implicit:  # implicit feedback has no ratings to measure RMSE on
        figures["rmse_by_user_activity.png"] = plot_rmse_by_activity(
            rmse_by_activity(model, split.train, split.test, rating_scale))
    figures["coverage_and_popularity.png"] = plot_coverage_and_popularity(
        coverage_and_popularity(model, split.train, split.test))
    if "ablation" in metrics:
        figures["ablation.png"] = plot_ablation(metrics["ablation"])
    history_path = model.model_dir.history_path
    if history_path.is_file():
        figures["training_curves.png"] = plot_training_curves(model.model_dir.read_history())
        shutil.copy(history_path, out_dir / history_path.name)
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        written.append(out_dir / name)
    return written

