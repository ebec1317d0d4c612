"""Reading delimited rating files with errors that name file, line and value.

Files are read on a fast path (pandas' C parser with typed columns). Only when that
fails is the file read again line by line, so that every bad line can be named and,
under the ``skip`` policy, dropped and counted.
"""

from __future__ import annotations

import csv
import io
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from tfrs_pipeline.data.schema import ValidationReport, canonical_interactions
from tfrs_pipeline.errors import DataError


@dataclass(frozen=True)
class FileRef:
    """A file in a folder or inside a ``.zip`` archive, named the way errors show it."""

    container: Path
    member: str | None = None
    #: What a position in it is called in messages: ``line`` (text files) or ``row`` (Parquet).
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.container}:{self.member}" if self.member else str(self.container)

    def exists(self) -> bool:
        if self.member is None:
            return self.container.is_file()
        with zipfile.ZipFile(self.container) as archive:
            return self.member in archive.namelist()

    def open(self) -> IO[bytes]:
        """Opens the file for binary reading (the caller closes it)."""
        if self.member is None:
            return open(self.container, "rb")
        archive = zipfile.ZipFile(self.container)
        return archive.open(self.member)

    def read_text(self, encoding: str = "utf-8") -> str:
        """The whole file decoded with ``encoding``: one encoding for the file, never a guess.

        Raises:
            DataError: a byte that does not decode, named by line and byte offset.
        """
        with self.open() as handle:
            raw = handle.read()
        return decode(raw, encoding, self)


def decode(raw: bytes, encoding: str, file: FileRef | str, first_line: int = 1, first_byte: int = 0) -> str:
    """``raw`` decoded; a byte that does not decode is a DataError naming file, line and byte offset."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = first_line + raw.count(b"\n", 0, error.start)
        shown = raw[error.start : error.start + 4]
        named = encoding.replace("-sig", "").upper()
        raise DataError(f"{file}, line {line}: the bytes {shown!r} at byte offset {first_byte + error.start:,} are not "
                        f"valid {named}; expected {named} text throughout (name the file's encoding with --encoding, "
                        "such as --encoding latin-1)") from None


def check_file(path: Path, what: str = "file") -> None:
    """A clear one-line DataError for a path that is not a readable regular file.

    Told apart: missing, a folder, a symbolic link loop, a FIFO or other special file, and
    a file this user may not read.
    """
    import os
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(f"{path}: a symbolic link to a missing {what} ({os.readlink(path)})") from None
        raise DataError(f"{path}: {what} not found") from None
    except OSError as error:
        if error.errno == 40:  # ELOOP
            raise DataError(f"{path}: a symbolic link loop; expected a {what}") from None
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: {what} not found (it is a folder; expected a file)")
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise DataError(f"{path}: {kind}, not a regular file; expected a {what} on disk")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: permission denied; this user may not read the {what}")


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
        self, file: FileRef | str, lines: Sequence[int], values: Sequence[object], problem: str, expected: str
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
    text = str(value) if isinstance(value, (int, float)) else repr(str(value))
    return text if len(text) <= 120 else text[:117] + "..."


#: The column a read table keeps each row's line (or row) number in, for messages: a name no column of
#: a file or DataFrame has (a file with a NUL byte is refused), so a column called "line" stays the user's.
LINE = "\x00line"

#: The longest id accepted (a longer one is a damaged line or a field run together with others).
MAX_ID_CHARACTERS = 1024

#: The longest header line read (a field longer than csv's own limit is an error on its line).
_MAX_FIELD_BYTES = 131072

#: How many bytes :func:`sniff_text` looks at.
_SNIFF_BYTES = 65536


def sniff_text(file: FileRef, encoding: str = "utf-8") -> str:
    """The codec to read a delimited text file in ``encoding`` with; a UTF-16 or binary file is a DataError saying so.

    A UTF-8 byte-order mark is accepted (and dropped by the ``utf-8-sig`` codec). Only the
    head is looked at; :func:`read_table` scans the whole file for NUL bytes once.
    """
    with file.open() as handle:
        head = handle.read(_SNIFF_BYTES)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{file}: the file is UTF-16 encoded; expected UTF-8 text (convert it, e.g. "
                        f"iconv -f UTF-16 -t UTF-8 {file.container.name} > converted.csv)")
    if b"\x00" in head:
        offset = head.index(b"\x00")
        raise DataError(f"{file}: binary data (a NUL byte at byte {offset}, starting "
                        f"{head[:24]!r}); expected delimited text such as a CSV file")
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _refuse_nul_bytes(file: FileRef) -> None:
    """A NUL byte anywhere in the file (it would end up inside an id) is a DataError naming its line; read a megabyte at a time."""
    with file.open() as handle:
        lines, offset, chunk = 0, 0, handle.read(1 << 20)
        while chunk:
            if b"\x00" in chunk:
                at = chunk.index(b"\x00")
                line = lines + chunk.count(b"\n", 0, at) + 1
                raise DataError(f"{file}, line {line}: a NUL byte at byte offset "
                                f"{offset + at:,}; expected text (the file may be damaged)")
            lines, offset, chunk = lines + chunk.count(b"\n"), offset + len(chunk), handle.read(1 << 20)


def header_of_named_columns(file: FileRef, sep: str, encoding: str, names: Sequence[str]) -> list[str] | None:
    """Line 1 of a file read with ``names`` (no header): its names when it names exactly those columns, else None.

    Raises:
        DataError: line 1 has another number of fields than ``names``.
    """
    first = read_header(file, sep, encoding, required=False)
    if first and [name.lower() for name in first] == [name.lower() for name in names]:
        return first
    if first and len(first) != len(names):
        raise DataError(f"{file}, line 1: {len(first)} fields separated by {sep!r}, but the column names given "
                        f"({', '.join(names)}) are {len(names)}; name every field of the line")
    return None


def _split_line(text: str, sep: str) -> list[str]:
    """The fields of one line: quoted fields as CSV reads them for one-character separators."""
    if len(sep) == 1:
        return next(csv.reader([text], delimiter=sep), [])
    return [field.strip('"') for field in text.split(sep)]


class _Reseparated(io.RawIOBase):
    """A binary file with a multi-character separator replaced by one the C parser takes (``\\x1f``).

    Whole lines are read and rewritten, so a separator is never cut between two reads.
    """

    def __init__(self, handle: IO[bytes], sep: bytes) -> None:
        self.handle, self.sep, self.pending = handle, sep, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self.pending) < len(buffer):
            lines = self.handle.readlines(1 << 20)
            if not lines:
                break
            self.pending += b"".join(lines).replace(self.sep, _UNIT_SEPARATOR)
        size = min(len(buffer), len(self.pending))
        buffer[:size], self.pending = self.pending[:size], self.pending[size:]
        return size


_UNIT_SEPARATOR = b"\x1f"


def read_table(
    file: FileRef,
    columns: Sequence[str],
    kinds: dict[str, str],
    *,
    sep: str,
    header: bool,
    policy: RowPolicy,
    names: Sequence[str] | None = None,
    encoding: str | None = None,
    date_format: str = "",
    date_option: str = "--date-format",
) -> pd.DataFrame:
    """Reads ``columns`` of a delimited file into a frame with an extra ``line`` column.

    Args:
        file: the file to read.
        columns: the columns to keep (header names, or names from ``names``).
        kinds: ``int``, ``float``, ``str`` (not empty), ``text`` (may be empty) or ``time`` (seconds since 1970, or a date and time
            pandas can parse, such as ``2019-03-01 12:00:00``) for each kept column.
        sep: field separator, any string (``::`` and ``\\t`` included).
        header: whether the first line names the columns (quoted names allowed).
        policy: what to do with malformed lines and unparsable values.
        names: without ``header``, the name of every field (default: ``columns``).
        encoding: text encoding; by default UTF-8 (a byte-order mark is dropped), and a
            UTF-16 or binary file is an error that says so. latin-1 is tried when it fails.
        date_format: how ``time`` columns write dates (``strftime`` codes); empty: as
            :func:`to_seconds` reads them, and ``date_option`` is how a message names this choice.

    Raises:
        DataError: the file or a column is missing, or (policy ``error``) a line is bad.
    """
    if not file.exists():
        raise DataError(f"{file}: file not found")
    requested = list(columns)
    if not sep:
        raise DataError(f"{file}: the field separator is empty; expected a character or string such as ',' or '::'")
    encoding = sniff_text(file, encoding or "utf-8")
    _refuse_nul_bytes(file)
    if header:
        header_names = read_header(file, sep, encoding)
        missing = [name for name in columns if name not in header_names]
        if missing:
            raise DataError(f"{file}, line 1: missing column {missing[0]!r}; the header has "
                            f"{', '.join(map(repr, header_names))} (separator {sep!r})")
    else:
        header_names = list(names or columns)
        missing = [name for name in columns if name not in header_names]
        if missing:
            raise DataError(f"{file}: column {missing[0]!r} is not among the named columns {', '.join(header_names)}")
        first = header_of_named_columns(file, sep, encoding, header_names)
        if first:
            header = True  # the file has a header after all, naming the same columns: read it as one
            policy.report.notes.append(f"{file}: line 1 names the columns given ({', '.join(first)}): read as a header")
            lowered = [name.lower() for name in first]
            columns = [first[lowered.index(name.lower())] for name in columns]
            header_names = first
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a line with other fields: the slow path names it
            frame = _read_fast(file, columns, kinds, header_names, sep=sep, header=header, encoding=encoding,
                               dates=(date_format, date_option))
    except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError):
        frame = _read_slow(file, columns, kinds, header_names, sep=sep, header=header, policy=policy, encoding=encoding,
                           dates=(date_format, date_option))
    if list(frame.columns[: len(requested)]) != requested:
        frame = frame.rename(columns=dict(zip(columns, requested)))
    return frame


def read_header(file: FileRef, sep: str, encoding: str, required: bool = True) -> list[str]:
    """The column names on the first line (quotes and surrounding spaces removed); ``[]`` for an empty file when not ``required``."""
    with file.open() as handle:
        raw = handle.readline(_MAX_FIELD_BYTES * 8)
    if not required and not raw.strip():
        return []
    first = decode(raw, encoding, file).rstrip("\r\n")
    if not first.strip():
        raise DataError(f"{file}: the first line is empty; expected a header line naming the columns "
                        "(or name them with --columns for a file without one)")
    return [name.strip().strip('"').strip() for name in _split_line(first, sep)]


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


def _read_fast(file, columns, kinds, names, *, sep, header, encoding, dates=("", "--date-format")) -> pd.DataFrame:
    dtypes = {"int": "int64", "float": "float64", "str": str, "text": str, "time": str}
    with file.open() as raw:
        if len(sep) > 1:
            handle, c_sep = io.BufferedReader(_Reseparated(raw, sep.encode(encoding.replace("-sig", ""))), 1 << 20), "\x1f"
        else:
            handle, c_sep = raw, sep
        frame = pd.read_csv(
            handle,
            sep=c_sep,
            header=0 if header else None,
            names=None if header else list(names),
            index_col=False,  # with usecols or an index column pandas would accept extra fields
            dtype={name: (dtypes[kinds[name]] if name in kinds else str) for name in names},
            skip_blank_lines=False,
            keep_default_na=False,
            na_values={name: [""] for name in columns if kinds[name] in ("int", "float")},
            encoding=encoding,
            engine="c",
        )
    frame = frame[list(columns)]
    for name in columns:
        if (frame[name].str.strip() == "").any() if kinds[name] in ("str", "time") else frame[name].isna().any():
            raise ValueError(f"empty value in {name}")  # the slow path names each one
        if kinds[name] == "time":
            seconds, bad = to_seconds(frame[name], dates[0], f"{file}, column {name!r}", dates[1])
            if bad.any():
                raise ValueError(f"bad time in {name}")
            frame[name] = seconds
    frame[LINE] = np.arange(len(frame), dtype=np.int64) + (2 if header else 1)
    frame.attrs["lines_read"] = len(frame)
    return frame


def _read_slow(file, columns, kinds, header_names, *, sep, header, policy, encoding,
               dates=("", "--date-format")) -> pd.DataFrame:
    text = file.read_text(encoding)
    positions = [header_names.index(name) for name in columns]
    expected_fields = len(header_names)
    rows, lines, bad_lines, bad_values = [], [], [], []
    all_lines = text.splitlines()
    start = 1 if header else 0
    for number, raw in enumerate(all_lines[start:], start=start + 1):
        try:
            fields = _split_line(raw, sep) if raw else []
        except csv.Error as error:  # a field over csv's limit, an unclosed quote, ...
            raise DataError(f"{file}, line {number}: {error} ({len(raw):,} characters on the line); expected "
                            "fields of at most 128 KiB") from None
        if len(fields) != expected_fields:
            bad_lines.append(number)
            bad_values.append(raw)
            continue
        rows.append([fields[p].strip() for p in positions])
        lines.append(number)
    policy.reject(
        file, bad_lines, bad_values, "malformed line", f"{expected_fields} fields separated by {sep!r}"
    )
    frame = pd.DataFrame(rows, columns=list(columns), dtype=object)
    frame[LINE] = np.asarray(lines, dtype=np.int64)
    lines_read = len(all_lines) - start
    for name in columns:
        values = frame[name].astype(str)
        if kinds[name] == "text":
            continue
        empty = values.str.strip() == "" if kinds[name] == "str" else values == ""  # a blank id or title is missing
        keep = ~empty.to_numpy()
        policy.reject(file, frame[LINE][empty].tolist(), values[empty].tolist(), f"missing {name}", "a value")
        if kinds[name] == "str":
            frame = frame[keep]
            continue
        if kinds[name] == "time":
            seconds, bad = to_seconds(values.where(~empty, "0"), dates[0], f"{file}, column {name!r}", dates[1])
            bad &= ~empty.to_numpy()
            policy.reject(file, frame[LINE][bad].tolist(), values[bad].tolist(), f"unreadable {name}",
                          TIME_EXPECTED)
            keep &= ~bad
            frame = frame[keep].copy()
            frame[name] = seconds[keep]
            continue
        numbers = pd.to_numeric(values.where(~empty), errors="coerce")
        bad = numbers.isna() & ~empty
        if kinds[name] == "int":
            bad |= ~numbers.isna() & (numbers != np.floor(numbers))
            expected = "an integer"
        else:
            expected = "a number"
        policy.reject(file, frame[LINE][bad].tolist(), values[bad].tolist(), f"non-numeric {name}", expected)
        keep &= ~bad.to_numpy()
        frame = frame[keep].copy()
        frame[name] = numbers[keep].astype("int64" if kinds[name] == "int" else "float64")
    frame = frame.reset_index(drop=True)
    frame.attrs["lines_read"] = lines_read
    return frame


def validate_ratings(
    frame: pd.DataFrame,
    file: FileRef | str,
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


def read_text_lines(file: FileRef, encoding: str = "utf-8") -> list[tuple[int, str]]:
    """Non-empty lines of a small file with their 1-based line numbers."""
    if not file.exists():
        raise DataError(f"{file}: file not found")
    text = file.read_text(encoding)
    return [(number, line) for number, line in enumerate(io.StringIO(text).read().splitlines(), 1) if line.strip()]
