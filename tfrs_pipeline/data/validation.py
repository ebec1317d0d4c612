"""Checking what was read: each bad row named by its file, line and value, and dropped or refused.

* :class:`RowPolicy`: ``on_bad_rows``, refuse the first bad row or drop and count them.
* :func:`validate_ratings`: ids, ratings and timestamps of rows read from any source, against the
  common schema (:mod:`~tfrs_pipeline.data.schema`).
* :func:`to_seconds`: timestamps written as seconds or dates, read in one order per column.

The files themselves are read by :mod:`~tfrs_pipeline.data.delimited` (delimited text) and
:mod:`~tfrs_pipeline.data.table_source` (Parquet, DataFrames).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tfrs_pipeline.data.schema import ValidationReport, canonical_interactions
from tfrs_pipeline.errors import DataError


class RowPolicy:
    """Applies ``on_bad_rows``: raise on the first bad row, or drop bad rows and count them.

    Args:
        on_bad_rows: ``error`` or ``skip``.
        report: where dropped rows are counted.
        kind: what the rows are, counted apart in the report (``rating rows``, ``movie-file lines``, ...).
        skip_option: how the caller spells the choice that drops bad rows, for the error's hint
            (``--on-bad-rows skip`` on the command line, ``on_bad_rows="skip"`` in Python).
    """

    def __init__(self, on_bad_rows: str, report: ValidationReport, kind: str = "rating rows",
                 skip_option: str = "--on-bad-rows skip") -> None:
        if on_bad_rows not in ("error", "skip"):
            raise DataError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
        self.on_bad_rows = on_bad_rows
        self.report = report
        self.kind = kind
        self.skip_option = skip_option

    def of(self, kind: str) -> RowPolicy:
        """The same policy and report, counting rows of another file kind."""
        return RowPolicy(self.on_bad_rows, self.report, kind, self.skip_option)

    def reject(
        self, file: object, lines: Sequence[int], values: Sequence[object], problem: str, expected: str
    ) -> None:
        """Reports rows at ``lines`` (1-based) whose ``values`` show ``problem``."""
        if len(lines) == 0:
            return
        unit = getattr(file, "unit", "line")
        if self.on_bad_rows == "error":
            raise DataError(
                f"{file}, {unit} {lines[0]}: {problem} {_shown(values[0])}; expected {expected}"
                + (f" ({len(lines) - 1:,} more such rows; use {self.skip_option} to drop them)" if len(lines) > 1 else "")
            )
        examples = [f"{file}, {unit} {line}: {_shown(value)}" for line, value in zip(lines[:5], values[:5])]
        self.report.drop(f"{problem} (expected {expected})", len(lines), examples, kind=self.kind)


def _shown(value: object) -> str:
    """A value as messages show it: quoted, control characters escaped, long values cut."""
    if isinstance(value, (int, float)):
        text = str(value)
    elif isinstance(value, (str, np.str_)):
        text = repr(str(value))
    else:  # a list, a dict, bytes: as Python writes it, quoted once
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


#: The column a read table keeps each row's line (or row) number in, for messages: a name no column of
#: a file or DataFrame has (a file with a NUL byte is refused), so a column called "line" stays the user's.
LINE = "\x00line"

#: The longest id accepted (a longer one is a damaged line or a field run together with others).
MAX_ID_CHARACTERS = 1024

def to_seconds(values: pd.Series, date_format: str = "", where: str = "",
               option: str = "--date-format") -> tuple[np.ndarray, np.ndarray]:
    """Timestamps as int64 seconds since 1970 and a mask of values that are neither numbers nor dates.

    Dates are read with ``date_format`` (``strftime`` codes, such as ``%d/%m/%Y``) where given.
    Without it: ISO 8601 (``2019-03-01 12:00:00``); numeric dates such as ``03/12/2005`` in the one
    order the column's values allow (a day above 12 in the first place makes every value of the
    column day-first); other spellings (``March 1, 2019``) as pandas reads them. A column whose
    numeric dates fit both orders, or neither one order, raises a :class:`DataError` naming
    ``where`` (the file and column) and ``option``. A value over :data:`MAX_TIME_CHARACTERS` is bad.
    """
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    seconds = np.array(numbers.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)  # writable
    bad = np.isnan(seconds) | (seconds != np.floor(seconds))
    todo = bad & (text.str.len() <= MAX_TIME_CHARACTERS).to_numpy()
    if todo.any():
        rows = np.flatnonzero(todo)
        dates = _dates(text[todo].reset_index(drop=True), date_format, where, option)
        parsed = dates.notna().to_numpy()
        if parsed.any():
            epoch = pd.Timestamp("1970-01-01", tz="UTC")
            seconds[rows[parsed]] = ((dates[parsed] - epoch) // pd.Timedelta(seconds=1)).to_numpy()
        bad[rows[parsed]] = False
    bad |= ~((seconds >= EARLIEST_SECONDS) & (seconds < LATEST_SECONDS))  # NaN too
    return np.where(bad, 0, seconds).astype(np.int64), bad


#: The longest timestamp text read (a longer one is a bad value: no date and time is written so long).
MAX_TIME_CHARACTERS = 64

_NUMERIC_DATE = r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(.*)$"


def _dates(text: pd.Series, date_format: str, where: str, option: str) -> pd.Series:
    """The dates of ``text`` (UTC; NaT where unreadable), each column read in one order (see :func:`to_seconds`)."""
    if date_format:
        return pd.to_datetime(text, format=date_format, errors="coerce", utc=True)
    dates = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    rest = dates.isna()
    parts = text[rest].str.extract(_NUMERIC_DATE)
    numeric = parts[0].notna()
    if numeric.any():
        parts = parts[numeric]
        first, second = parts[0].astype(int), parts[2].astype(int)
        day_first, month_first = first > 12, second > 12
        hint = (f"name the column's one format with {option} (such as %d/%m/%Y or %m/%d/%Y), or write the dates "
                "as 2005-12-03")
        if day_first.any() and month_first.any():
            raise DataError(f"{where}: dates written day first ({text[day_first.idxmax()]!r}) and month first "
                            f"({text[month_first.idxmax()]!r}) in one column; {hint}")
        if not (day_first.any() or month_first.any()) and (first != second).any():
            raise DataError(f"{where}: {text[(first != second).idxmax()]!r} reads as day/month or month/day, and no "
                            f"date of the column tells which; {hint}")
        day, month = (first, second) if day_first.any() else (second, first)
        year = parts[3].astype(int)
        year = year.where(parts[3].str.len() == 4, np.where(year < 69, 2000 + year, 1900 + year))  # as %y reads it
        iso = (year.astype(str).str.zfill(4) + "-" + month.astype(str).str.zfill(2) + "-"
               + day.astype(str).str.zfill(2) + parts[4])
        dates[iso.index] = pd.to_datetime(iso, format="ISO8601", errors="coerce", utc=True)
    others = dates.isna() & ~text.str.match(_NUMERIC_DATE)
    if others.any():  # words and other spellings: "March 1, 2019", "1 Mar 2019 12:00"
        dates[others] = pd.to_datetime(text[others], format="mixed", errors="coerce", utc=True)
    return dates


#: Timestamps from 1900-01-01 up to 2200-01-01 (seconds since 1970); outside: a bad row.
EARLIEST_SECONDS, LATEST_SECONDS = -2_208_988_800, 7_258_118_400
#: How the range is written in messages.
TIME_EXPECTED = "seconds since 1970 or a date and time, from 1900 to 2200"


def validate_ratings(
    frame: pd.DataFrame,
    file: object,
    policy: RowPolicy,
    *,
    rating_scale: tuple[float, float],
    known_movies: pd.Index | None,
    implicit: bool = False,
    scale_hint: str = "",
) -> pd.DataFrame:
    """Checks parsed ratings and returns them in the canonical schema.

    Checks, in order: ratings inside ``rating_scale``; movies listed in the movies file
    (when ``known_movies`` is given); one rating per (user, movie). Under the ``skip``
    policy a duplicate pair keeps its latest rating.

    With ``implicit`` (interactions without ratings) every row is a positive with rating 1,
    and repeated (user, item) rows are one interaction at its latest time (a note says how many).
    """
    if implicit:
        frame = frame.assign(rating=np.float32(1.0))
    else:
        low, high = rating_scale
        ratings = frame["rating"].to_numpy(dtype=np.float64)
        outside = (ratings < low) | (ratings > high) | ~np.isfinite(ratings)
        policy.reject(
            file, frame[LINE][outside].tolist(), [f"{value:g}" for value in frame["rating"][outside]],
            "rating outside the scale", f"a rating from {low:g} to {high:g}{scale_hint}",
        )
        frame = frame[~outside]

    user_ids = frame["user_id"].astype(str)
    movie_ids = frame["movie_id"].astype(str)
    for name in ("user id", "movie id"):
        ids = user_ids if name == "user id" else movie_ids
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        long = lengths > MAX_ID_CHARACTERS
        if long.any():
            policy.reject(file, frame[LINE][long].tolist(), [f"{ids.iloc[i][:40]}... ({lengths[i]:,} characters)"
                                                              for i in np.flatnonzero(long)],
                          f"{name} too long:", f"an id of at most {MAX_ID_CHARACTERS:,} characters")
            frame, user_ids, movie_ids = frame[~long], user_ids[~long], movie_ids[~long]
        # Lists of ids on the command line and in HTTP queries are comma-separated and trimmed: an id
        # with a comma, or with spaces at either end, would be another id (or two) there.
        ids = user_ids if name == "user id" else movie_ids
        codes, distinct = pd.factorize(ids)
        distinct = pd.Series(distinct, dtype=object).astype(str)
        comma = distinct.str.contains(",", regex=False).to_numpy()[codes]
        policy.reject(file, frame[LINE][comma].tolist(), ids[comma].tolist(), f"{name} with a comma",
                      "an id without commas (lists of ids are comma-separated on the command line and in HTTP "
                      "queries)")
        padded = (distinct != distinct.str.strip()).to_numpy()[codes] & ~comma
        policy.reject(file, frame[LINE][padded].tolist(), ids[padded].tolist(),
                      f"{name} that is blank or begins or ends with spaces", "an id without surrounding spaces")
        keep = ~(comma | padded)
        frame, user_ids, movie_ids = frame[keep], user_ids[keep], movie_ids[keep]
    if known_movies is not None:
        unknown = ~movie_ids.isin(known_movies).to_numpy()
        policy.reject(
            file, frame[LINE][unknown].tolist(), movie_ids[unknown].tolist(),
            "rating for a movie not in the movies file:", "a movie id listed in the movies file",
        )
        frame, user_ids, movie_ids = frame[~unknown], user_ids[~unknown], movie_ids[~unknown]

    interactions = canonical_interactions(user_ids, movie_ids, frame["rating"], frame["timestamp"])
    interactions[LINE] = frame[LINE].to_numpy()
    if policy.on_bad_rows == "error" and not implicit:
        # Name the later line of each pair, and the first.
        repeated = interactions.duplicated(["user_id", "movie_id"], keep="first").to_numpy()
        if repeated.any():
            first_line = interactions.groupby(["user_id", "movie_id"], observed=True)[LINE].transform("min")
            dups = interactions[repeated]
            policy.reject(
                file, dups[LINE].tolist(),
                [f"user {u}, movie {m}" for u, m in zip(dups["user_id"], dups["movie_id"])],
                f"duplicate rating (first at line {first_line[repeated].iloc[0]}) for", "one rating per (user, movie)",
            )
    # Keep each pair's latest row (under ``skip``, or merged on implicit data): sort by time so keep="last" keeps it.
    ordered = interactions.sort_values(["timestamp", LINE], kind="stable")
    older = ordered.duplicated(["user_id", "movie_id"], keep="last").to_numpy()
    if older.any():
        if implicit:
            policy.report.notes.append(f"{int(older.sum()):,} repeated (user, item) interactions merged: each pair "
                                       "counts once, at its latest time")
        else:
            dups = ordered[older].sort_values(LINE)
            policy.reject(
                file, dups[LINE].tolist(), [f"user {u}, movie {m}" for u, m in zip(dups["user_id"], dups["movie_id"])],
                "older duplicate rating for", "one rating per (user, movie)",
            )
        interactions = ordered[~older].sort_values(LINE)
    return interactions.drop(columns=LINE).reset_index(drop=True)


