"""Interaction files in any shape: ``csv:PATH`` (any delimited text) and ``parquet:PATH``.

Column names are configurable, files without a header line are named with ``columns``,
any separator string is allowed (``::`` included), and ids stay strings exactly as
written (``0068646`` stays ``0068646``). Without a rating column every row is a positive
interaction (implicit feedback: plays, clicks, purchases).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tfrs_pipeline.data.schema import RatingsData, ValidationReport, year_from_title
from tfrs_pipeline.data.validation import (
    FileRef,
    RowPolicy,
    read_header,
    read_table,
    sniff_text,
    to_seconds,
    validate_ratings,
)
from tfrs_pipeline.errors import DataError

#: The scale of a rating file whose scale is not given.
DEFAULT_RATING_SCALE = (0.5, 5.0)

_PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass
class TableFormat:
    """How to read one delimited or Parquet file.

    Args:
        sep: field separator, any string; empty: tab for ``.tsv``/``.tab`` files, else ``,``.
            ``\\t`` and ``tab`` mean a tab.
        columns: the name of every field of a file without a header line (implies no
            header); empty: the first line names the columns.
    """

    sep: str = ""
    columns: list[str] = field(default_factory=list)

    def separator(self, path: Path) -> str:
        sep = self.sep
        if sep in ("\\t", "tab", "TAB"):
            return "\t"
        if sep:
            return sep
        return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def load_table_ratings(
    path: str | Path,
    *,
    parquet: bool = False,
    user_column: str = "user_id",
    item_column: str = "item_id",
    rating_column: str = "",
    timestamp_column: str = "timestamp",
    table: TableFormat | None = None,
    items_path: str | Path | None = None,
    items_table: TableFormat | None = None,
    title_column: str = "title",
    genres_column: str = "",
    rating_scale: tuple[float, float] | None = None,
    on_bad_rows: str = "error",
) -> RatingsData:
    """Reads interactions from a delimited text file or a Parquet file.

    Args:
        path: the interactions file.
        parquet: read it as Parquet (through ``pyarrow``) rather than delimited text.
        user_column, item_column, timestamp_column: the columns holding each.
        rating_column: the rating column; empty: ``rating`` when the file has one, otherwise
            implicit feedback (every row a positive). Named and missing, it is an error.
        table: separator and column names of a delimited file.
        items_path: optional items file (delimited or ``.parquet``) with ``item_column``,
            ``title_column`` and optionally ``genres_column`` (``|``-separated); without it
            titles are the item ids.
        items_table: separator and column names of the items file.
        genres_column: genres column of the items file; empty: ``genres`` when present.
        rating_scale: lowest and highest allowed rating (default 0.5 to 5).
        on_bad_rows: ``error`` or ``skip`` (drop and count bad rows).

    Raises:
        DataError: a missing file or column, or a bad row under the ``error`` policy.
    """
    path = Path(path)
    table = table or TableFormat()
    scale = tuple(float(v) for v in (rating_scale or DEFAULT_RATING_SCALE))
    file = FileRef(path, unit="row" if parquet else "line")
    if not path.is_file():
        raise DataError(f"{path}: file not found" + (" (it is a folder; expected a file)" if path.is_dir() else ""))
    report = ValidationReport()
    policy = RowPolicy(on_bad_rows, report)

    available = _columns_of(file, table, parquet)
    missing = [name for name in (user_column, item_column) if name not in available]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; the file has {', '.join(map(repr, available))}"
                        + ("" if parquet or table.columns else f" (separator {table.separator(path)!r}; set it with --sep)"))
    if rating_column and rating_column not in available:
        raise DataError(f"{path}: no rating column {rating_column!r}; the file has {', '.join(map(repr, available))}")
    rating_column = rating_column or ("rating" if "rating" in available else "")
    implicit = not rating_column
    has_time = timestamp_column in available
    columns = [user_column, item_column] + ([rating_column] if rating_column else []) + (
        [timestamp_column] if has_time else [])
    kinds = {user_column: "str", item_column: "str", timestamp_column: "time"}
    if rating_column:
        kinds[rating_column] = "float"
    raw = _read_columns(file, table, parquet, columns, kinds, policy)
    renames = {user_column: "user_id", item_column: "movie_id", timestamp_column: "timestamp"}
    if rating_column:
        renames[rating_column] = "rating"
    raw = raw.rename(columns=renames)
    if not has_time:
        raw["timestamp"] = 0
        report.notes.append(f"{path} has no {timestamp_column!r} column: timestamps set to 0 "
                            "(a temporal or leave-last-out split needs them)")
    if implicit:
        report.notes.append(f"{path} has no rating column: implicit feedback, every row is a positive interaction "
                            "(the ranking stage learns relevance; RMSE is not measured)")
    report.rows_read = int(raw.attrs.get("lines_read", len(raw)))

    known = None
    if items_path:
        movies = _read_items(Path(items_path), items_table or TableFormat(), item_column, title_column, genres_column,
                             policy.of("item-file lines"))
        known = pd.Index(movies["movie_id"])
    hint = "" if rating_scale else "; set the scale with --rating-scale LOW-HIGH (e.g. 0-10)"
    interactions = validate_ratings(raw, file, policy, rating_scale=scale, known_movies=known, implicit=implicit,
                                    scale_hint=hint)
    if not items_path:
        ids = pd.unique(interactions["movie_id"].astype(str))
        movies = pd.DataFrame({"movie_id": ids, "title": ids, "genres": [()] * len(ids)})
    movies["year"] = year_from_title(movies["title"])
    kind = "parquet" if parquet else "csv"
    return RatingsData(interactions, movies, None, f"{kind}:{path}", (1.0, 1.0) if implicit else scale, report,
                       implicit=implicit)


def _columns_of(file: FileRef, table: TableFormat, parquet: bool) -> list[str]:
    """The column names of a Parquet file, or of a delimited file (its header, or ``table.columns``)."""
    if parquet:
        return _parquet_columns(file.container)
    if table.columns:
        return list(table.columns)
    if not file.exists():
        raise DataError(f"{file}: file not found")
    return read_header(file, table.separator(file.container), sniff_text(file))


def _read_columns(file: FileRef, table: TableFormat, parquet: bool, columns: list[str], kinds: dict[str, str],
                  policy: RowPolicy) -> pd.DataFrame:
    """``columns`` of a Parquet or delimited file, with the 1-based ``line`` (row) of each."""
    if parquet:
        return _read_parquet(file, columns, kinds, policy)
    return read_table(file, columns, kinds, sep=table.separator(file.container), header=not table.columns,
                      policy=policy, names=table.columns or None)


def _parquet_file(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise DataError("reading Parquet files needs pyarrow: pip install pyarrow") from None
    try:
        return pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not Parquet
        raise DataError(f"{path}: not a readable Parquet file ({type(error).__name__}: {error})") from None


def _parquet_columns(path: Path) -> list[str]:
    return list(_parquet_file(path).schema_arrow.names)


def _id_strings(values: pd.Series) -> pd.Series:
    """Ids as strings: integers without a decimal point, strings exactly as stored."""
    if pd.api.types.is_float_dtype(values) and values.dropna().eq(np.floor(values.dropna())).all():
        values = values.astype("Int64")
    return values.astype("string").astype(object).where(values.notna(), "")


def _read_parquet(file: FileRef, columns: list[str], kinds: dict[str, str], policy: RowPolicy) -> pd.DataFrame:
    """The columns of a Parquet file as :func:`read_table` returns them (``line`` = 1-based row number)."""
    frame = _parquet_file(file.container).read(columns=columns).to_pandas()
    frame["line"] = np.arange(len(frame), dtype=np.int64) + 1
    rows_read = len(frame)
    for name in columns:
        values = frame[name]
        kind = kinds[name]
        if kind in ("str", "text"):
            frame[name] = _id_strings(values)
            bad = (frame[name] == "").to_numpy() & (kind == "str")
            policy.reject(file, frame["line"][bad].tolist(), [""] * int(bad.sum()), f"missing {name}", "a value")
        elif kind == "float":
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            bad = numbers.isna().to_numpy()
            policy.reject(file, frame["line"][bad].tolist(), values[bad].astype(str).tolist(), f"non-numeric {name}",
                          "a number")
            frame[name] = numbers
        else:
            if pd.api.types.is_datetime64_any_dtype(values):
                epoch = pd.Timestamp("1970-01-01", tz="UTC")
                stamps = values.dt.tz_localize("UTC") if values.dt.tz is None else values
                bad = stamps.isna().to_numpy()
                seconds = np.zeros(len(values), np.int64)
                seconds[~bad] = ((stamps[~bad] - epoch) // pd.Timedelta(seconds=1)).to_numpy()
            else:
                seconds, bad = to_seconds(values)
            policy.reject(file, frame["line"][bad].tolist(), values[bad].astype(str).tolist(), f"unreadable {name}",
                          "seconds since 1970 or a date and time")
            frame[name] = seconds
        frame = frame[~bad]
    frame = frame.reset_index(drop=True)
    frame.attrs["lines_read"] = rows_read
    return frame


def _read_items(path: Path, table: TableFormat, item_column: str, title_column: str, genres_column: str,
                policy: RowPolicy) -> pd.DataFrame:
    parquet = path.suffix.lower() in _PARQUET_SUFFIXES
    file = FileRef(path, unit="row" if parquet else "line")
    if not path.is_file():
        raise DataError(f"{path}: items file not found")
    available = _columns_of(file, table, parquet)
    for name in (item_column, title_column):
        if name not in available:
            raise DataError(f"{path}: no column {name!r} in the items file; it has {', '.join(map(repr, available))}"
                            " (name them with --item-col/--title-col, or --items-columns for a file without a header)")
    if genres_column and genres_column not in available:
        raise DataError(f"{path}: no genres column {genres_column!r} in the items file; it has "
                        f"{', '.join(map(repr, available))}")
    genres_column = genres_column or ("genres" if "genres" in available else "")
    columns = [item_column, title_column] + ([genres_column] if genres_column else [])
    kinds = dict.fromkeys(columns, "str")
    if genres_column:
        kinds[genres_column] = "text"
    items = _read_columns(file, table, parquet, columns, kinds, policy)
    movies = pd.DataFrame({"movie_id": items[item_column].astype(str).to_numpy(),
                           "title": items[title_column].astype(str).to_numpy()})
    genres = items[genres_column].astype(str) if genres_column else pd.Series([""] * len(items))
    movies["genres"] = [tuple(g for g in text.split("|") if g and g != "(no genres listed)") for text in genres]
    duplicated = movies["movie_id"].duplicated()
    if duplicated.any():
        line = int(items["line"].to_numpy()[duplicated.to_numpy()][0])
        raise DataError(f"{path}, {file.unit} {line}: item id {movies['movie_id'][duplicated].iloc[0]!r} is listed "
                        "twice; expected one line per item")
    return movies
