"""Data in: every source in one canonical schema, validated.

A source is named by a string: ``synthetic[:SIZE]`` (the offline default),
``movielens:PATH``, ``tfds:NAME``, ``csv:PATH`` (any delimited text) or ``parquet:PATH``.

Examples:
    >>> from tfrs_pipeline.data import load_data
    >>> data = load_data("synthetic:200x100x4000")
    >>> len(data.interactions)
    4000
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tfrs_pipeline.config import DataConfig
from tfrs_pipeline.data.schema import RatingsData, ValidationReport, require_non_empty
from tfrs_pipeline.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RatingsData", "ValidationReport", "load_data"]

SOURCE_KINDS = ("synthetic", "movielens", "tfds", "csv", "parquet")


def load_data(source: str | pd.DataFrame | None = None, config: DataConfig | None = None, *,
              movies: pd.DataFrame | None = None, python_names: bool = False) -> RatingsData:
    """Reads, validates and returns the ratings named by ``source`` (or ``config.source``).

    Args:
        source: ``synthetic[:SIZE]``, ``movielens:PATH``, ``tfds:NAME``, ``csv:PATH`` or
            ``parquet:PATH``, or a DataFrame of interactions already in memory (its columns
            named as a ``csv:`` file's) (default: ``config.source``).
        config: column names, separators, rating scale and what to do with bad rows (default:
            :class:`~tfrs_pipeline.config.DataConfig`'s defaults).
        movies: with a DataFrame ``source``: the movies, with the item and title columns.
        python_names: messages name options as :func:`tfrs_pipeline.train`'s keywords
            (``user_col=``), not as command-line flags (``--user-col``); always so for a DataFrame.

    Returns:
        The interactions, movies and users in the common schema, with the validation report.

    Examples:
        >>> data = load_data("synthetic:50x40x600")
        >>> len(data.interactions), list(data.interactions.columns)
        (600, ['user_id', 'movie_id', 'rating', 'timestamp'])

    Raises:
        DataError: an unknown source kind, a missing or malformed file, or no ratings left.
    """
    config = config or DataConfig()
    if source is not None and not isinstance(source, str):  # a DataFrame: checked as one where it is read
        from tfrs_pipeline.data.table_source import PYTHON_OPTIONS, load_frame_ratings

        data = load_frame_ratings(source, movies, columns=_columns(config, PYTHON_OPTIONS),
                                  rating_scale=tuple(config.rating_scale) or None, on_bad_rows=config.on_bad_rows)
        return require_non_empty(data)
    if movies is not None:
        raise DataError("movies= goes with ratings in a DataFrame; a file source names its items file with "
                        "data.csv_items_path (--items)")
    source = source or config.source
    kind, _, argument = source.partition(":")
    if kind == "dataframe":
        raise DataError("this model was trained from a DataFrame in memory: give the data again (--data csv:PATH, "
                        "or the DataFrame in Python)")
    if kind in ("csv", "parquet"):
        from tfrs_pipeline.data.table_source import CLI_OPTIONS, PYTHON_OPTIONS, TableFormat, load_table_ratings

        data = load_table_ratings(
            _required(argument, source),
            parquet=kind == "parquet",
            columns=_columns(config, PYTHON_OPTIONS if python_names else CLI_OPTIONS),
            table=TableFormat(config.sep, list(config.columns), config.encoding or "utf-8"),
            items_path=config.csv_items_path or None,
            items_table=TableFormat(config.items_sep or config.sep, list(config.items_columns), config.encoding or "utf-8"),
            rating_scale=tuple(config.rating_scale) or None,
            on_bad_rows=config.on_bad_rows,
        )
        return require_non_empty(data)
    if kind == "synthetic":
        from tfrs_pipeline.data.synthetic import generate, parse_size

        data = generate(*parse_size(argument))
    elif kind == "movielens":
        from tfrs_pipeline.data.movielens import load_movielens

        data = load_movielens(_required(argument, source), config.on_bad_rows, config.encoding or None)
    elif kind == "tfds":
        from tfrs_pipeline.data.tfds_source import load_tfds

        data = load_tfds(_required(argument, source), config.tfds_data_dir or None, config.on_bad_rows)
    else:
        raise DataError(f"unknown data source {source!r}; expected one of synthetic[:SIZE], movielens:PATH, "
                        "tfds:NAME, csv:PATH, parquet:PATH")
    _keep_own_scale(data, config)
    return require_non_empty(data)


def recorded_paths(config: DataConfig) -> dict[str, str]:
    """The data's relative file paths made absolute (``data.source``, ``data.csv_items_path``), for
    the configuration saved beside a model: ``evaluate`` then finds the data from any folder.
    Names that are not paths here (``movielens:ml-latest-small`` from the download cache) stay as given.
    """
    from pathlib import Path

    changed = {}
    kind, _, argument = config.source.partition(":")
    if kind in ("movielens", "csv", "parquet") and argument and Path(argument).exists():
        changed["data.source"] = f"{kind}:{Path(argument).resolve()}"
    if config.csv_items_path and Path(config.csv_items_path).exists():
        changed["data.csv_items_path"] = str(Path(config.csv_items_path).resolve())
    return changed


def _columns(config: DataConfig, options: dict):
    from tfrs_pipeline.data.table_source import Columns

    return Columns(config.csv_user_column, config.csv_item_column, config.csv_rating_column,
                   config.csv_timestamp_column, config.csv_title_column, config.genres_column, config.implicit,
                   dict(options), config.date_format)


def _keep_own_scale(data: RatingsData, config: DataConfig) -> None:
    """MovieLens, TFDS and synthetic data keep their published scale; a different one given is noted."""
    if config.rating_scale and tuple(config.rating_scale) != tuple(data.rating_scale):
        low, high = data.rating_scale
        data.report.notes.append(f"data.rating_scale {config.rating_scale[0]:g}-{config.rating_scale[1]:g} is for "
                                 f"csv: and parquet: sources; {data.source} keeps its own {low:g}-{high:g}")


def _required(argument: str, source: str) -> str:
    if not argument:
        raise DataError(f"data source {source!r} needs a path or name after the colon")
    return argument
