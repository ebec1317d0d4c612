"""Reading delimited rating files with errors that name file, line and value.

Files are read on a fast path (pandas' C parser with typed columns). Only when that
fails is the file read again line by line, so that every bad line can be named and,
under the ``skip`` policy, dropped and counted (:class:`~tfrs_pipeline.data.validation.RowPolicy`).
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

from tfrs_pipeline.data.validation import LINE, TIME_EXPECTED, RowPolicy, to_seconds
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


def read_text_lines(file: FileRef, encoding: str = "utf-8") -> list[tuple[int, str]]:
    """Non-empty lines of a small file with their 1-based line numbers."""
    if not file.exists():
        raise DataError(f"{file}: file not found")
    text = file.read_text(encoding)
    return [(number, line) for number, line in enumerate(io.StringIO(text).read().splitlines(), 1) if line.strip()]
