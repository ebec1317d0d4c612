"""MovieLens through TensorFlow Datasets (``tfds:movielens/100k-ratings`` and friends)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfrs_pipeline.data.schema import RatingsData, ValidationReport, year_from_title
from tfrs_pipeline.data.validation import LINE, RowPolicy, validate_ratings
from tfrs_pipeline.errors import DataError


def _rating_scale(name: str) -> tuple[float, float]:
    return (1.0, 5.0) if any(tag in name for tag in ("100k", "1m")) else (0.5, 5.0)


def _decode(values: np.ndarray) -> np.ndarray:
    return np.asarray([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def load_tfds(name: str, data_dir: str | None = None, on_bad_rows: str = "error") -> RatingsData:
    """Loads a TFDS MovieLens ratings dataset (``movielens/*-ratings``) into the canonical schema.

    Args:
        name: TFDS name such as ``movielens/100k-ratings``.
        data_dir: folder with the prepared dataset; TFDS's default when empty.
        on_bad_rows: ``error`` or ``skip``.

    Raises:
        DataError: the dataset is unknown, or cannot be downloaded (offline) and is not prepared.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if not name.endswith("-ratings"):
        raise DataError(f"tfds:{name}: expected a ratings dataset such as movielens/100k-ratings")
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as error:  # TFDS raises several unrelated types for unknown names
        raise DataError(f"tfds:{name}: not a TFDS dataset ({error})") from None
    try:
        dataset = builder.as_dataset(split="train") if _is_prepared(builder) else tfds.load(
            name, split="train", data_dir=data_dir or None
        )
    except Exception as error:  # download failures surface as many types
        raise DataError(
            f"tfds:{name}: could not load or download it ({type(error).__name__}). Offline, prepare it "
            "elsewhere and pass --tfds-data-dir FOLDER, or point --data movielens:PATH at the MovieLens "
            "folder or .zip from grouplens.org"
        ) from None

    features = builder.info.features
    genre_names = list(features["movie_genres"].feature.names) if "movie_genres" in features else []
    wanted = [key for key in ("user_id", "movie_id", "movie_title", "user_rating", "timestamp", "movie_genres",
                              "bucketized_user_age", "raw_user_age", "user_gender", "user_occupation_text",
                              "user_zip_code") if key in features]
    dataset = dataset.map(lambda example: {key: example[key] for key in wanted})
    columns: dict[str, list] = {key: [] for key in wanted}
    for batch in tfds.as_numpy(dataset.ragged_batch(65_536)):
        for key in wanted:
            value = batch[key]
            if isinstance(value, tf.RaggedTensor) or hasattr(value, "to_list"):
                columns[key].extend(value.to_list())
            else:
                columns[key].extend(list(value))

    report = ValidationReport(rows_read=len(columns["user_id"]))
    policy = RowPolicy(on_bad_rows, report)
    raw = pd.DataFrame(
        {
            "user_id": _decode(np.asarray(columns["user_id"], dtype=object)),
            "movie_id": _decode(np.asarray(columns["movie_id"], dtype=object)),
            "rating": np.asarray(columns["user_rating"], dtype=np.float64),
            "timestamp": np.asarray(columns.get("timestamp") or np.zeros(report.rows_read), dtype=np.int64),
            LINE: np.arange(report.rows_read, dtype=np.int64) + 1,
        }
    )
    source = f"tfds:{name} example"
    titles = _decode(np.asarray(columns["movie_title"], dtype=object))
    movies = pd.DataFrame({"movie_id": raw["movie_id"], "title": titles})
    movies["genres"] = [
        tuple(genre_names[g] if g < len(genre_names) else str(g) for g in genres)
        for genres in columns.get("movie_genres", [[]] * report.rows_read)
    ]
    movies = movies.drop_duplicates("movie_id").reset_index(drop=True)
    movies["year"] = year_from_title(movies["title"])
    interactions = validate_ratings(raw, source, policy, rating_scale=_rating_scale(name), known_movies=None)

    users = None
    if "user_gender" in columns:
        age = columns.get("raw_user_age") or columns.get("bucketized_user_age")
        users = pd.DataFrame(
            {
                "user_id": raw["user_id"],
                "age": np.asarray(age, dtype=np.float64).astype(np.int32),
                "gender": np.where(np.asarray(columns["user_gender"], dtype=bool), "M", "F"),
                "occupation": _decode(np.asarray(columns.get("user_occupation_text", [b""] * len(raw)), dtype=object)),
                "zip": _decode(np.asarray(columns.get("user_zip_code", [b""] * len(raw)), dtype=object)),
            }
        ).drop_duplicates("user_id").reset_index(drop=True)
    report.notes.append(f"TFDS dataset {name}")
    return RatingsData(interactions, movies, users, f"tfds:{name}", _rating_scale(name), report)


def _is_prepared(builder) -> bool:
    try:
        return bool(builder.is_prepared())
    except Exception:
        return False
