"""A generic interactions CSV (``csv:PATH``) with configurable column names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tfrs_pipeline.data.schema import RatingsData, ValidationReport, year_from_title
from tfrs_pipeline.data.validation import FileRef, RowPolicy, read_table, validate_ratings
from tfrs_pipeline.errors import DataError


def load_csv(
    path: str | Path,
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
    rating_column: str = "rating",
    timestamp_column: str = "timestamp",
    items_path: str | Path | None = None,
    title_column: str = "title",
    rating_scale: tuple[float, float] = (0.5, 5.0),
    on_bad_rows: str = "error",
) -> RatingsData:
    """Reads interactions from any delimited file with a header line.

    Ids may be any strings. Without ``timestamp_column`` in the header every rating gets
    timestamp 0 (a temporal split then refuses to run). Without ``items_path`` movie
    titles are the item ids.

    Raises:
        DataError: a missing file or column, or a bad row under the ``error`` policy.
    """
    path = Path(path)
    file = FileRef(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    sep = "\t" if path.suffix in (".tsv", ".tab") else ","
    report = ValidationReport()
    policy = RowPolicy(on_bad_rows, report)
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", "replace").strip().split(sep)
    has_time = timestamp_column in header
    columns = [user_column, item_column, rating_column] + ([timestamp_column] if has_time else [])
    kinds = dict(zip(columns, ["str", "str", "float", "int"]))
    raw = read_table(file, columns, kinds, sep=sep, header=True, policy=policy)
    raw = raw.rename(columns={user_column: "user_id", item_column: "movie_id", rating_column: "rating",
                              timestamp_column: "timestamp"})
    if not has_time:
        raw["timestamp"] = 0
        report.notes.append(f"{path} has no {timestamp_column!r} column: timestamps set to 0")
    report.rows_read = int(raw.attrs.get("lines_read", len(raw)))

    known = None
    if items_path:
        items_file = FileRef(Path(items_path))
        items_sep = "\t" if Path(items_path).suffix in (".tsv", ".tab") else ","
        items = read_table(items_file, [item_column, title_column], {item_column: "str", title_column: "str"},
                           sep=items_sep, header=True, policy=policy)
        movies = pd.DataFrame({"movie_id": items[item_column].astype(str), "title": items[title_column].astype(str)})
        if movies["movie_id"].duplicated().any():
            raise DataError(f"{items_path}: item id {movies['movie_id'][movies['movie_id'].duplicated()].iloc[0]!r} is listed twice")
        known = pd.Index(movies["movie_id"])
    interactions = validate_ratings(raw, file, policy, rating_scale=tuple(rating_scale), known_movies=known)
    if not items_path:
        ids = pd.unique(interactions["movie_id"].astype(str))
        movies = pd.DataFrame({"movie_id": ids, "title": ids})
    movies["genres"] = [()] * len(movies)
    movies["year"] = year_from_title(movies["title"])
    return RatingsData(interactions, movies, None, f"csv:{path}", tuple(rating_scale), report)
