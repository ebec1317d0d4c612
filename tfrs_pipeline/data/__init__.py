"""Data in: every source in one canonical schema, validated.

A source is named by a string: ``synthetic[:SIZE]`` (the offline default),
``movielens:PATH``, ``tfds:NAME`` or ``csv:PATH``.

Example:
    >>> from tfrs_pipeline.data import load_data
    >>> data = load_data("synthetic:200x100x4000")
    >>> len(data.interactions)
    4000
"""

from __future__ import annotations

from tfrs_pipeline.config import DataConfig
from tfrs_pipeline.data.schema import RatingsData, ValidationReport, require_non_empty
from tfrs_pipeline.errors import DataError

__all__ = ["RatingsData", "ValidationReport", "load_data"]

SOURCE_KINDS = ("synthetic", "movielens", "tfds", "csv")


def load_data(source: str | None = None, config: DataConfig | None = None) -> RatingsData:
    """Reads, validates and returns the ratings named by ``source`` (or ``config.source``).

    Raises:
        DataError: an unknown source kind, a missing or malformed file, or no ratings left.
    """
    config = config or DataConfig()
    source = source or config.source
    kind, _, argument = source.partition(":")
    if kind == "synthetic":
        from tfrs_pipeline.data.synthetic import generate, parse_size

        data = generate(*parse_size(argument))
    elif kind == "movielens":
        from tfrs_pipeline.data.movielens import load_movielens

        data = load_movielens(_required(argument, source), config.on_bad_rows)
    elif kind == "tfds":
        from tfrs_pipeline.data.tfds_source import load_tfds

        data = load_tfds(_required(argument, source), config.tfds_data_dir or None, config.on_bad_rows)
    elif kind == "csv":
        from tfrs_pipeline.data.csv_source import load_csv

        data = load_csv(
            _required(argument, source),
            user_column=config.csv_user_column,
            item_column=config.csv_item_column,
            rating_column=config.csv_rating_column,
            timestamp_column=config.csv_timestamp_column,
            items_path=config.csv_items_path or None,
            title_column=config.csv_title_column,
            rating_scale=tuple(config.rating_scale),
            on_bad_rows=config.on_bad_rows,
        )
    else:
        raise DataError(
            f"unknown data source {source!r}; expected one of synthetic[:SIZE], movielens:PATH, tfds:NAME, csv:PATH"
        )
    return require_non_empty(data)


def _required(argument: str, source: str) -> str:
    if not argument:
        raise DataError(f"data source {source!r} needs a path or name after the colon")
    return argument
