"""Interaction tables in any shape: ``csv:PATH`` (any delimited text), ``parquet:PATH`` and pandas DataFrames.

Column names are configurable, files without a header line are named with ``columns``,
any separator string is allowed (``::`` included), and ids stay strings exactly as
written (``0068646`` stays ``0068646``). Without a rating column every row is a positive
interaction (implicit feedback: plays, clicks, purchases).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tfrs_pipeline.config import option_hints
from tfrs_pipeline.data.delimited import (
    FileRef,
    check_file,
    header_of_named_columns,
    read_header,
    read_table,
    sniff_text,
)
from tfrs_pipeline.data.schema import RatingsData, ValidationReport, year_from_title
from tfrs_pipeline.data.validation import (
    EARLIEST_SECONDS,
    LATEST_SECONDS,
    LINE,
    TIME_EXPECTED,
    RowPolicy,
    to_seconds,
    validate_ratings,
)
from tfrs_pipeline.errors import DataError, NumericIdsWarning
from tfrs_pipeline.ids import is_utf8

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
            header); empty: the first line names the columns. A first line that names exactly
            these columns is read as a header, with a note.
        encoding: the file's one text encoding (a line that does not decode is an error).
    """

    sep: str = ""
    columns: list[str] = field(default_factory=list)
    encoding: str = "utf-8"

    def separator(self, path: Path) -> str:
        sep = self.sep
        if sep in ("\\t", "tab", "TAB"):
            return "\t"
        if sep:
            return sep
        return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


@dataclass(frozen=True)
class Columns:
    """Which columns hold what, and how the caller names each choice in messages.

    Args:
        user, item, rating, timestamp: the interactions' columns; ``rating`` empty: ``rating``
            when there is one (no rating column is then an error unless ``implicit``).
        title, genres: the items' columns; ``genres`` empty: ``genres`` when present.
        implicit: every row is a positive interaction (plays, clicks, purchases); a rating
            column, if any, is not read.
        options: how the caller spells each option in hints (``--rating-col`` on the command
            line, ``rating_col=`` in Python).
        date_format: how the timestamp column writes dates (``strftime`` codes such as
            ``%d/%m/%Y``); empty: ISO 8601, or numeric dates in the one order the column allows.
    """

    user: str = "user_id"
    item: str = "item_id"
    rating: str = ""
    timestamp: str = "timestamp"
    title: str = "title"
    genres: str = ""
    implicit: bool = False
    options: dict = field(default_factory=lambda: dict(CLI_OPTIONS))
    date_format: str = ""


#: How the command line spells each choice, for hints in messages.
CLI_OPTIONS = option_hints(python=False)
#: How :func:`tfrs_pipeline.train` spells them.
PYTHON_OPTIONS = option_hints(python=True)

#: Reads ``columns`` of a table as :func:`read_table` returns them (coerced by ``kinds``, with ``line``).
Reader = Callable[[list[str], dict[str, str], RowPolicy], pd.DataFrame]


def load_table_ratings(
    path: str | Path,
    *,
    parquet: bool = False,
    columns: Columns | None = None,
    table: TableFormat | None = None,
    items_path: str | Path | None = None,
    items_table: TableFormat | None = None,
    rating_scale: tuple[float, float] | None = None,
    on_bad_rows: str = "error",
) -> RatingsData:
    """Reads interactions from a delimited text file or a Parquet file.

    Args:
        path: the interactions file.
        parquet: read it as Parquet (through ``pyarrow``) rather than delimited text.
        columns: the column names (default: :class:`Columns`'s).
        table: separator and column names of a delimited file.
        items_path: optional items file (delimited or ``.parquet``) with the item and title
            columns and optionally genres (``|``-separated); without it titles are the item ids.
        items_table: separator and column names of the items file.
        rating_scale: lowest and highest allowed rating (default 0.5 to 5).
        on_bad_rows: ``error`` or ``skip`` (drop and count bad rows).

    Raises:
        DataError: a missing file or column, no rating column without ``implicit``, or a bad
            row under the ``error`` policy.
    """
    path = Path(path)
    table = table or TableFormat()
    file = FileRef(path, unit="row" if parquet else "line")
    check_file(path)
    available = _columns_of(file, table, parquet)
    options = (columns or Columns()).options
    separator = header = ""
    if not (parquet or table.columns):
        separator = f" (separator {table.separator(path)!r}; set it with {options['sep']})"
        if any(_is_number(name) for name in available):  # a header of numbers is the first line of data
            header = (f"its first line looks like data, not column names: a file without a header line names its "
                      f"fields with {options['columns']}")

    def read(names: list[str], kinds: dict[str, str], policy: RowPolicy) -> pd.DataFrame:
        return _read_columns(file, table, parquet, names, kinds, policy, columns or Columns())

    def items(columns: Columns, policy: RowPolicy) -> pd.DataFrame:
        return _read_items(Path(items_path), items_table or TableFormat(), columns, policy)

    return _load_ratings(file, available, read, columns or Columns(), items if items_path else None,
                         rating_scale, on_bad_rows, f"{'parquet' if parquet else 'csv'}:{path}", separator, header)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class FrameRef(FileRef):
    """A DataFrame in memory, named the way errors show it; its rows count from 1 (row 1 is ``.iloc[0]``)."""

    def __init__(self, name: str) -> None:
        super().__init__(Path(name), None, "row")

    def __str__(self) -> str:
        return f"the {self.container} DataFrame"


def load_frame_ratings(
    ratings: pd.DataFrame,
    movies: pd.DataFrame | None = None,
    *,
    columns: Columns | None = None,
    rating_scale: tuple[float, float] | None = None,
    on_bad_rows: str = "error",
) -> RatingsData:
    """Reads interactions (and optionally movies) from DataFrames already in memory.

    They are checked exactly as a file's rows are (ids, ratings on the scale, timestamps,
    duplicates, movies listed in ``movies``); a message names the row, counted from 1
    (row 1 is ``.iloc[0]``). Genres may be ``|``-separated strings or lists.

    Args:
        ratings: one row per interaction.
        movies: optional, one row per movie with the item and title columns (default: titles
            are the ids).
        columns: the column names (default: :class:`Columns`'s).
        rating_scale: lowest and highest allowed rating (default 0.5 to 5).
        on_bad_rows: ``error`` or ``skip`` (drop and count bad rows).

    Raises:
        DataError: not a DataFrame, a missing column, or a bad row under the ``error`` policy.
    """
    ratings = _frame(ratings, "ratings")
    file = FrameRef("ratings")
    names_of = columns or Columns(options=dict(PYTHON_OPTIONS))
    _warn_numeric_ids(ratings, "ratings", [names_of.user, names_of.item])
    if isinstance(movies, pd.DataFrame):
        _warn_numeric_ids(movies, "movies", [names_of.item])

    def read(names: list[str], kinds: dict[str, str], policy: RowPolicy) -> pd.DataFrame:
        return _coerce(ratings[names].reset_index(drop=True), file, names, kinds, policy, names_of)

    def items(columns: Columns, policy: RowPolicy) -> pd.DataFrame:
        frame = _frame(movies, "movies")
        genres = columns.genres or ("genres" if "genres" in frame.columns else "")
        if genres in frame.columns:
            frame = frame.assign(**{genres: [_genre_text(value) for value in frame[genres]]})
        return _items(FrameRef("movies"), list(frame.columns), columns, policy,
                      lambda names, kinds, policy: _coerce(frame[names].reset_index(drop=True), FrameRef("movies"),
                                                           names, kinds, policy))

    return _load_ratings(file, list(ratings.columns), read, names_of,
                         items if movies is not None else None, rating_scale, on_bad_rows, "dataframe")


def _frame(value, name: str) -> pd.DataFrame:
    if not isinstance(value, pd.DataFrame):
        raise DataError(f"{name} must be a pandas DataFrame, got {type(value).__name__}")
    twice = value.columns[value.columns.astype(str).duplicated()]
    if len(twice):
        raise DataError(f"the {name} DataFrame has the column {str(twice[0])!r} more than once; give each column "
                        "one name")
    if not all(isinstance(column, str) for column in value.columns):
        value = value.rename(columns=str)
    return value


def _warn_numeric_ids(frame: pd.DataFrame, name: str, columns: list[str]) -> None:
    """Numbers in an id column are read as their decimal text; say so, since a file's leading zeros are gone."""
    numeric = [c for c in columns if c in frame.columns and frame[c].ndim == 1
               and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    if numeric:
        dtypes = ", ".join(f"{c!r} ({frame[c].dtype})" for c in numeric)
        text = ", ".join(f"{c!r}: str" for c in numeric)
        warnings.warn(f"the {name} DataFrame's id column(s) {dtypes} hold numbers: each id is taken as its decimal "
                      "text (68646); an id a file wrote with leading zeros (0068646) lost them when pandas read it. "
                      f"To keep ids as written, read them as text: pd.read_csv(..., dtype={{{text}}})",
                      NumericIdsWarning, stacklevel=4)


def _genre_text(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return "|".join(str(genre) for genre in value)
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _load_ratings(file: FileRef, available: list[str], read: Reader, columns: Columns,
                  items: Callable[[Columns, RowPolicy], pd.DataFrame] | None, rating_scale: tuple[float, float] | None,
                  on_bad_rows: str, source: str, separator: str = "", header: str = "") -> RatingsData:
    """The shared part of every table source: choose columns, read them, validate, join the items.

    ``separator`` and ``header`` say, in a missing-column message, which separator was used and
    (where the column names look like data) how a file without a header line is read.
    """
    scale = tuple(float(v) for v in (rating_scale or DEFAULT_RATING_SCALE))
    report = ValidationReport()
    options = columns.options
    policy = RowPolicy(on_bad_rows, report, skip_option=options["skip"])
    listed = ", ".join(map(repr, available))
    for role in ("user", "item"):
        name = getattr(columns, role)
        if name not in available:
            raise DataError(f"{file}: no {role} column {name!r}; it has {listed}{separator}"
                            + (f": {header}" if header else f" (name it with {options[role]})"))
    if columns.implicit and columns.rating:
        raise DataError(f"{file}: a rating column ({columns.rating!r}) and implicit feedback were both asked for; "
                        f"leave out {options['rating']} to read every row as a positive, or leave out {options['implicit']} "
                        "to read the ratings")
    if columns.rating and columns.rating not in available:
        raise DataError(f"{file}: no rating column {columns.rating!r}; it has {listed}")
    rating_column = "" if columns.implicit else columns.rating or ("rating" if "rating" in available else "")
    if not rating_column and not columns.implicit:
        raise DataError(f"{file}: no rating column; it has {listed}. Name the rating column with "
                        f"{options['rating']} NAME, or pass {options['implicit']} if every row is a positive "
                        "interaction (plays, clicks, purchases) without a rating")
    implicit = columns.implicit
    has_time = columns.timestamp in available
    names = [columns.user, columns.item] + ([rating_column] if rating_column else []) + (
        [columns.timestamp] if has_time else [])
    kinds = {columns.user: "str", columns.item: "str", columns.timestamp: "time"}
    if rating_column:
        kinds[rating_column] = "float"
    raw = read(names, kinds, policy)
    renames = {columns.user: "user_id", columns.item: "movie_id", columns.timestamp: "timestamp"}
    if rating_column:
        renames[rating_column] = "rating"
    raw = raw.rename(columns=renames)
    if not has_time:
        raw["timestamp"] = 0
        report.notes.append(f"{file} has no {columns.timestamp!r} column: timestamps set to 0 "
                            "(a temporal or leave-last-out split needs them)")
    if implicit:
        report.notes.append(f"{file}: implicit feedback, as asked: every row is a positive interaction "
                            "(the ranking stage learns relevance; RMSE is not measured)")
    report.rows_read = int(raw.attrs.get("lines_read", len(raw)))

    known = None
    if items is not None:
        movies = items(columns, policy.of("item-file lines"))
        known = pd.Index(movies["movie_id"])
    hint = "" if rating_scale else f"; set the scale with {options['scale']}"
    interactions = validate_ratings(raw, file, policy, rating_scale=scale, known_movies=known, implicit=implicit,
                                    scale_hint=hint)
    if items is None:
        ids = pd.unique(interactions["movie_id"].astype(str))
        movies = pd.DataFrame({"movie_id": ids, "title": ids, "genres": [()] * len(ids)})
    movies["year"] = year_from_title(movies["title"])
    return RatingsData(interactions, movies, None, source, (1.0, 1.0) if implicit else scale, report,
                       implicit=implicit)


def _columns_of(file: FileRef, table: TableFormat, parquet: bool) -> list[str]:
    """The column names of a Parquet file, or of a delimited file (its header, or ``table.columns``)."""
    if parquet:
        return _parquet_columns(file.container)
    if table.columns:
        # A line 1 of other fields is refused now, before a missing rating column is blamed on the names.
        header_of_named_columns(file, table.separator(file.container), sniff_text(file, table.encoding), table.columns)
        return list(table.columns)
    if not file.exists():
        raise DataError(f"{file}: file not found")
    return read_header(file, table.separator(file.container), sniff_text(file, table.encoding))


def _read_columns(file: FileRef, table: TableFormat, parquet: bool, columns: list[str], kinds: dict[str, str],
                  policy: RowPolicy, roles: Columns | None = None) -> pd.DataFrame:
    """``columns`` of a Parquet or delimited file, with the 1-based ``line`` (row) of each."""
    roles = roles or Columns()
    if parquet:
        return _coerce(_parquet_file(file.container).read(columns=columns).to_pandas(), file, columns, kinds, policy,
                       roles)
    return read_table(file, columns, kinds, sep=table.separator(file.container), header=not table.columns,
                      policy=policy, names=table.columns or None, encoding=table.encoding,
                      date_format=roles.date_format, date_option=roles.options["date_format"])


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


#: The largest whole number a float holds exactly (2**53): a float id past it is not the id that was meant.
_EXACT_FLOAT = 2.0**53


def _id_strings(values: pd.Series) -> tuple[pd.Series, np.ndarray, str]:
    """Ids as strings by one rule: text as stored, whole numbers without a decimal point.

    Returns:
        ``(ids, bad, why)``: the ids ("" where missing or bad), the rows whose value is no id
        (a float with a fraction, one too large to be exact, a float among text, a bool, a list,
        a dict, text that is not valid Unicode), and what was wrong with the first of them.
    """
    bad = np.zeros(len(values), bool)
    why = ""
    if values.dtype == object and values.map(lambda v: isinstance(v, (float, np.floating))).all():
        values = values.astype("float64")  # floats (and NaN) only: a float column stored as objects
    if pd.api.types.is_bool_dtype(values):
        return pd.Series([""] * len(values), dtype=object), ~values.isna().to_numpy(), "a true/false value"
    if pd.api.types.is_float_dtype(values):
        numbers = values.to_numpy(np.float64)
        bad = ~np.isnan(numbers) & ((numbers != np.floor(numbers)) | (np.abs(numbers) >= _EXACT_FLOAT))
        why = "a number with a fraction, or too large to be exact as a float"
        values = values.where(~bad).astype("Int64")
    elif values.dtype == object:
        kinds = values.map(lambda v: "id" if isinstance(v, (str, int, np.integer)) and not isinstance(v, (bool, np.bool_))
                           else "missing" if v is None or (isinstance(v, float) and np.isnan(v))
                           else "true/false value" if isinstance(v, (bool, np.bool_)) else type(v).__name__)
        bad = ~kinds.isin(["id", "missing"]).to_numpy()
        if bad.any():
            first = kinds[bad].iloc[0]
            why = f"a {first}" + (" among text ids (3.0 and '3' would be two movies)" if first == "float" else "")
        unencodable = np.array([isinstance(v, str) and not is_utf8(v) for v in values], dtype=bool)
        if unencodable.any() and not why:
            why = "text that is not valid Unicode (a lone surrogate)"
        bad |= unencodable
        values = values.where(~bad)
    ids = values.astype("string").astype(object).where(values.notna(), "")
    return ids, bad, why


def _real(value) -> float:
    """A number as a float; NaN for text, a complex number, or one too large for a float (10**400)."""
    if isinstance(value, (bool, np.bool_, complex, np.complexfloating)):
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return np.nan


def _coerce(frame: pd.DataFrame, file: FileRef, columns: list[str], kinds: dict[str, str],
            policy: RowPolicy, roles: Columns | None = None) -> pd.DataFrame:
    """Typed columns of a table already in pandas (Parquet, or a DataFrame), as :func:`read_table` returns them
    (the rows numbered from 1 as ``line``)."""
    roles = roles or Columns()
    frame[LINE] = np.arange(len(frame), dtype=np.int64) + 1
    rows_read = len(frame)
    for name in columns:
        values = frame[name]
        kind = kinds[name]
        if kind in ("str", "text"):
            frame[name], wrong, why = _id_strings(values)
            policy.reject(file, frame[LINE][wrong].tolist(), list(values[wrong]),
                          f"{name} is {why}:", "text or a whole number")
            nul = frame[name].str.contains("\x00", regex=False).to_numpy() & ~wrong
            policy.reject(file, frame[LINE][nul].tolist(), frame[name][nul].tolist(), f"a NUL character in {name}",
                          "text without NUL characters")
            blank = (frame[name].str.strip() == "").to_numpy() & (kind == "str") & ~wrong & ~nul
            policy.reject(file, frame[LINE][blank].tolist(), frame[name][blank].tolist(), f"missing {name}",
                          "a value (not blank)")
            bad = wrong | nul | blank
        elif kind == "float":
            numbers = pd.Series([_real(v) for v in values], dtype="float64") if values.dtype == object or \
                pd.api.types.is_complex_dtype(values) else pd.to_numeric(values, errors="coerce").astype("float64")
            bad = numbers.isna().to_numpy()
            policy.reject(file, frame[LINE][bad].tolist(), values[bad].astype(str).tolist(), f"non-numeric {name}",
                          "a number")
            frame[name] = numbers
        else:
            if pd.api.types.is_datetime64_any_dtype(values):
                epoch = pd.Timestamp("1970-01-01", tz="UTC")
                stamps = values.dt.tz_localize("UTC") if values.dt.tz is None else values
                bad = stamps.isna().to_numpy().copy()
                seconds = np.zeros(len(values), np.int64)
                seconds[~bad] = np.asarray((stamps[~bad] - epoch) // pd.Timedelta(seconds=1), dtype=np.int64)
                bad |= (seconds < EARLIEST_SECONDS) | (seconds >= LATEST_SECONDS)
            else:
                seconds, bad = to_seconds(values, roles.date_format, f"{file}, column {name!r}",
                                          roles.options["date_format"])
            policy.reject(file, frame[LINE][bad].tolist(), values[bad].astype(str).tolist(), f"unreadable {name}",
                          TIME_EXPECTED)
            frame[name] = seconds
        frame = frame[~bad]
    frame = frame.reset_index(drop=True)
    frame.attrs["lines_read"] = rows_read
    return frame


def _read_items(path: Path, table: TableFormat, columns: Columns, policy: RowPolicy) -> pd.DataFrame:
    parquet = path.suffix.lower() in _PARQUET_SUFFIXES
    file = FileRef(path, unit="row" if parquet else "line")
    check_file(path, "items file")
    return _items(file, _columns_of(file, table, parquet), columns, policy,
                  lambda names, kinds, policy: _read_columns(file, table, parquet, names, kinds, policy))


def _items(file: FileRef, available: list[str], columns: Columns, policy: RowPolicy, read: Reader) -> pd.DataFrame:
    """The movies of an items table: id, title and genres, one row per item."""
    options = columns.options
    for role in ("item", "title"):
        name = getattr(columns, role)
        if name not in available:
            raise DataError(f"{file}: no {role} column {name!r} in the items; it has {', '.join(map(repr, available))}"
                            f" (name it with {options[role]}{options['items_header']})")
    genres_column = columns.genres
    if genres_column and genres_column not in available:
        raise DataError(f"{file}: no genres column {genres_column!r} in the items; it has "
                        f"{', '.join(map(repr, available))}")
    genres_column = genres_column or ("genres" if "genres" in available else "")
    names = [columns.item, columns.title] + ([genres_column] if genres_column else [])
    kinds = dict.fromkeys(names, "str")
    if genres_column:
        kinds[genres_column] = "text"
    items = read(names, kinds, policy)
    movies = pd.DataFrame({"movie_id": items[columns.item].astype(str).to_numpy(),
                           "title": items[columns.title].astype(str).to_numpy()})
    genres = items[genres_column].astype(str) if genres_column else pd.Series([""] * len(items))
    movies["genres"] = [tuple(g for g in text.split("|") if g and g != "(no genres listed)") for text in genres]
    duplicated = movies["movie_id"].duplicated()
    if duplicated.any():
        line = int(items[LINE].to_numpy()[duplicated.to_numpy()][0])
        raise DataError(f"{file}, {file.unit} {line}: item id {movies['movie_id'][duplicated].iloc[0]!r} is listed "
                        "twice; expected one line per item")
    return movies
