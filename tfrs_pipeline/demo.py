"""``tfrs-pipeline demo``: the README's main command.

Trains both stages on the embedded synthetic data (about a minute on 2 CPU cores),
exports to ``saved_models/demo/VERSION``, prints the metrics beside most-popular, and
shows one user's recommendations beside the movies they rated highest.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.evaluation.summary import format_metrics
from tfrs_pipeline.pipeline import run_training
from tfrs_pipeline.recommender import Recommender


def demo_config(data: str, quick: bool) -> PipelineConfig:
    """The demo's configuration: the defaults with epochs sized for about a minute on 2 cores."""
    overrides = {"data.source": data, "retrieval.epochs": 8, "rating.epochs": 20}
    if quick:
        overrides.update({"data.source": data if data != "synthetic:100k" else "synthetic:300x200x8000",
                          "retrieval.epochs": 2, "rating.epochs": 2, "ranker.epochs": 3, "retrieval.batch_size": 512})
    return apply_overrides(PipelineConfig(), overrides).validate()


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def run_demo(out: str | Path = "saved_models/demo", data: str = "synthetic:100k", quick: bool = False) -> Path:
    """Trains, exports and shows what the model does; returns the exported version folder."""
    result = run_training(demo_config(data, quick), out)
    print("\ntest metrics (seen movies excluded unless noted), beside most-popular:")
    print(format_metrics(result.metrics))

    # One user with a typical number of ratings: their favourites beside their recommendations.
    ratings, split = result.data, result.split
    counts = split.train.groupby("user_id", observed=True).size().sort_values()
    user = str(counts.index[len(counts) // 2])
    titles = ratings.movies.set_index(ratings.movies["movie_id"].astype(str))["title"]
    favourites = split.train[split.train["user_id"] == user].sort_values(["rating", "timestamp"], ascending=False).head(10)
    model = Recommender.load(result.model_dir)
    served = model.recommend([user], k=10, arrays=True)
    recommended = [(title, float(rating)) for title, rating in zip(served["titles"][0], served["predicted_ratings"][0])]
    print(f"\nuser {user} ({counts[user]} training ratings): rated highest | recommended (predicted rating)")
    for (_, row), (title, rating) in zip(favourites.iterrows(), recommended):
        left = f"{row['rating']:.1f}  {_cut(titles.get(str(row['movie_id']), str(row['movie_id'])), 34)}"
        print(f"  {left:<40} | {rating:.2f}  {_cut(title, 40)}")
    first = str(favourites.iloc[0]["movie_id"])
    similar = model.similar_items([first], k=5, arrays=True)
    print(f"\nmovies similar to {titles.get(first, first)}:")
    for title in similar["titles"][0]:
        print(f"  {title}")
    print(textwrap.dedent(f"""
        next:
          tfrs-pipeline recommend --model {out} --user {user}
          tfrs-pipeline similar --model {out} --movie "{titles.get(first, first)}"
          tfrs-pipeline evaluate --model {out} --report reports/demo
          tfrs-pipeline serve --model {out}"""))
    return result.path
