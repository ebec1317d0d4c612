"""Reading delimited rating files with errors that name file, line and value.

Files are read on a fast path (pandas' C parser with typed columns). Only when that
fails is the file read again line by line, so that every bad line can be named and,
under the ``skip`` policy, dropped and counted.
"""

from __future__ import annotations

import csv
import io
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
        with self.open() as handle:
            raw = handle.read()
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            return raw.decode("latin-1")


class RowPolicy:
    """Applies ``on_bad_rows``: raise on the first bad row, or drop bad rows and count them."""

    def __init__(self, on_bad_rows: str, report: ValidationReport) -> None:
        if on_bad_rows not in ("error", "skip"):
            raise DataError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
        self.on_bad_rows = on_bad_rows
        self.report = report

    def reject(
        self, file: FileRef | str, lines: Sequence[int], values: Sequence[object], problem: str, expected: str
    ) -> None:
        """Reports rows at ``lines`` (1-based) whose ``values`` show ``problem``."""
        if len(lines) == 0:
            return
        if self.on_bad_rows == "error":
            raise DataError(
                f"{file}, line {lines[0]}: {problem} {values[0]!r}; expected {expected}"
                + (f" ({len(lines) - 1:,} more such rows; use --on-bad-rows skip to drop them)" if len(lines) > 1 else "")
            )
        examples = [f"{file}, line {line}: {value!r}" for line, value in zip(lines[:5], values[:5])]
        self.report.drop(f"{problem} (expected {expected})", len(lines), examples)


def _split_line(text: str, sep: str) -> list[str]:
    if sep == ",":
        return next(csv.reader([text]))
    return text.split(sep)


def read_table(
    file: FileRef,
    columns: Sequence[str],
    kinds: dict[str, str],
    *,
    sep: str,
    header: bool,
    policy: RowPolicy,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Reads ``columns`` of a delimited file into a frame with an extra ``line`` column.

    Args:
        file: the file to read.
        columns: with ``header``, the header names to keep; without, the name of every field.
        kinds: ``int``, ``float`` or ``str`` for each column.
        sep: field separator (``::`` allowed).
        header: whether the first line names the columns.
        policy: what to do with malformed lines and unparsable values.
        encoding: text encoding (latin-1 is tried when it fails).

    Raises:
        DataError: the file or a column is missing, or (policy ``error``) a line is bad.
    """
    if not file.exists():
        raise DataError(f"{file}: file not found")
    header_names = _read_header(file, sep, encoding) if header else list(columns)
    if header:
        missing = [name for name in columns if name not in header_names]
        if missing:
            raise DataError(
                f"{file}, line 1: missing column {missing[0]!r}; the header has {', '.join(header_names)}"
            )
    try:
        frame = _read_fast(file, columns, kinds, sep=sep, header=header, encoding=encoding)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        frame = _read_slow(file, columns, kinds, header_names, sep=sep, header=header, policy=policy, encoding=encoding)
    return frame


def _read_header(file: FileRef, sep: str, encoding: str) -> list[str]:
    with file.open() as handle:
        first = handle.readline().decode(encoding, errors="replace").rstrip("\r\n")
    if not first:
        raise DataError(f"{file}: the file is empty; expected a header line")
    return [name.strip() for name in _split_line(first, sep)]


def _read_fast(file, columns, kinds, *, sep, header, encoding) -> pd.DataFrame:
    dtypes = {"int": "int64", "float": "float64", "str": str}
    if sep == "::":
        # The C parser takes one-character separators only: split on ':' and keep every other field.
        names = [part for name in columns for part in (name, f"_gap_{name}")][:-1]
        c_sep = ":"
    else:
        names, c_sep = (None if header else list(columns)), sep
    with file.open() as handle:
        frame = pd.read_csv(
            handle,
            sep=c_sep,
            header=0 if header else None,
            names=names,
            index_col=False,  # with usecols or an index column pandas would accept extra fields
            dtype={name: dtypes[kinds[name]] for name in columns},
            skip_blank_lines=False,
            keep_default_na=False,
            na_values={name: [""] for name in columns if kinds[name] != "str"},
            encoding=encoding,
            engine="c",
        )
    frame = frame[list(columns)]
    for name in columns:
        if (frame[name] == "").any() if kinds[name] == "str" else frame[name].isna().any():
            raise ValueError(f"empty value in {name}")  # the slow path names each one
    frame["line"] = np.arange(len(frame), dtype=np.int64) + (2 if header else 1)
    frame.attrs["lines_read"] = len(frame)
    return frame


def _read_slow(file, columns, kinds, header_names, *, sep, header, policy, encoding) -> pd.DataFrame:
    text = file.read_text(encoding)
    positions = [header_names.index(name) for name in columns]
    expected_fields = len(header_names)
    rows, lines, bad_lines, bad_values = [], [], [], []
    all_lines = text.splitlines()
    start = 1 if header else 0
    for number, raw in enumerate(all_lines[start:], start=start + 1):
        fields = _split_line(raw, sep) if raw else []
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
    frame["line"] = np.asarray(lines, dtype=np.int64)
    lines_read = len(all_lines) - start
    for name in columns:
        values = frame[name].astype(str)
        empty = values == ""
        keep = ~empty.to_numpy()
        policy.reject(file, frame["line"][empty].tolist(), values[empty].tolist(), f"missing {name}", "a value")
        if kinds[name] == "str":
            frame = frame[keep]
            continue
        numbers = pd.to_numeric(values.where(~empty), errors="coerce")
        bad = numbers.isna() & ~empty
        if kinds[name] == "int":
            bad |= ~numbers.isna() & (numbers != np.floor(numbers))
            expected = "an integer"
        else:
            expected = "a number"
        policy.reject(file, frame["line"][bad].tolist(), values[bad].tolist(), f"non-numeric {name}", expected)
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
) -> pd.DataFrame:
    """Checks parsed ratings and returns them in the canonical schema.

    Checks, in order: ratings inside ``rating_scale``; movies listed in the movies file
    (when ``known_movies`` is given); one rating per (user, movie). Under the ``skip``
    policy a duplicate pair keeps its latest rating.
    """
    low, high = rating_scale
    ratings = frame["rating"].to_numpy(dtype=np.float64)
    outside = (ratings < low) | (ratings > high) | ~np.isfinite(ratings)
    policy.reject(
        file, frame["line"][outside].tolist(), [f"{value:g}" for value in frame["rating"][outside]],
        "rating outside the scale", f"a rating from {low:g} to {high:g}",
    )
    frame = frame[~outside]

    user_ids = frame["user_id"].astype(str)
    movie_ids = frame["movie_id"].astype(str)
    if known_movies is not None:
        unknown = ~movie_ids.isin(known_movies).to_numpy()
        policy.reject(
            file, frame["line"][unknown].tolist(), movie_ids[unknown].tolist(),
            "rating for a movie not in the movies file:", "a movie id listed in the movies file",
        )
        frame, user_ids, movie_ids = frame[~unknown], user_ids[~unknown], movie_ids[~unknown]

    interactions = canonical_interactions(user_ids, movie_ids, frame["rating"], frame["timestamp"])
    interactions["line"] = frame["line"].to_numpy()
    if policy.on_bad_rows == "error":
        # Name the later line of each pair, and the first.
        repeated = interactions.duplicated(["user_id", "movie_id"], keep="first").to_numpy()
        if repeated.any():
            first_line = interactions.groupby(["user_id", "movie_id"], observed=True)["line"].transform("min")
            dups = interactions[repeated]
            policy.reject(
                file, dups["line"].tolist(),
                [f"user {u}, movie {m}" for u, m in zip(dups["user_id"], dups["movie_id"])],
                f"duplicate rating (first at line {first_line[repeated].iloc[0]}) for", "one rating per (user, movie)",
            )
    # Under ``skip`` keep each pair's latest rating: sort by time so keep="last" keeps it.
    ordered = interactions.sort_values(["timestamp", "line"], kind="stable")
    older = ordered.duplicated(["user_id", "movie_id"], keep="last").to_numpy()
    if older.any():
        dups = ordered[older].sort_values("line")
        policy.reject(
            file, dups["line"].tolist(), [f"user {u}, movie {m}" for u, m in zip(dups["user_id"], dups["movie_id"])],
            "older duplicate rating for", "one rating per (user, movie)",
        )
        interactions = ordered[~older].sort_values("line")
    return interactions.drop(columns="line").reset_index(drop=True)


def read_text_lines(file: FileRef, encoding: str = "utf-8") -> list[tuple[int, str]]:
    """Non-empty lines of a small file with their 1-based line numbers."""
    if not file.exists():
        raise DataError(f"{file}: file not found")
    text = file.read_text(encoding)
    return [(number, line) for number, line in enumerate(io.StringIO(text).read().splitlines(), 1) if line.strip()]
