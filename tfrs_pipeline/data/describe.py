"""``tfrs-pipeline data describe``: what is in a data source, in a few lines."""

from __future__ import annotations

import numpy as np

from tfrs_pipeline.data.schema import RatingsData


def describe(data: RatingsData, top: int = 10) -> str:
    """Counts, sparsity, rating histogram, most-rated movies and the validation report."""
    ratings = data.interactions
    users = ratings["user_id"].nunique()
    rated = ratings["movie_id"].nunique()
    density = len(ratings) / max(1, users * rated)
    noun = "interactions" if data.implicit else "ratings"
    scale = ("implicit feedback (no ratings: every row a positive)" if data.implicit
             else f"rating scale: {data.rating_scale[0]:g}..{data.rating_scale[1]:g}")
    lines = [
        f"source: {data.source}",
        f"{noun}: {len(ratings):,}   users: {users:,}   movies listed: {len(data.movies):,}   movies rated: {rated:,}",
        f"density: {density:.4%} (sparsity {1 - density:.4%})   {scale}",
        f"{noun} per user: median {ratings.groupby('user_id', observed=True).size().median():.0f}, "
        f"min {ratings.groupby('user_id', observed=True).size().min()}, max {ratings.groupby('user_id', observed=True).size().max()}",
        f"users with demographics: {0 if data.users is None else len(data.users):,}",
    ]
    if not data.implicit:  # every implicit interaction is a 1
        lines.append("rating histogram:")
        counts = ratings["rating"].value_counts().sort_index()
        for value, count in counts.items():
            bar = "#" * int(np.ceil(40 * count / counts.max()))
            lines.append(f"  {value:>4g} {count:>10,} {count / len(ratings):6.1%} {bar}")
    titles = data.movies.set_index(data.movies["movie_id"].astype(str))["title"]
    most = ratings.groupby(ratings["movie_id"].astype(str), observed=True)["rating"].agg(["size", "mean"])
    most = most.sort_values("size", ascending=False).head(top)
    lines.append(f"most-{'played' if data.implicit else 'rated'} movies (top {top}):")
    for movie_id, row in most.iterrows():
        mean = "" if data.implicit else f"  mean {row['mean']:.2f}"
        lines.append(f"  {int(row['size']):>7,} {noun}{mean}  {titles.get(movie_id, movie_id)}")
    lines.append(data.report.format())
    return "\n".join(lines)
