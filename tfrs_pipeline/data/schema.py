"""The canonical schema every data source yields, and the report of what validation dropped."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tfrs_pipeline.errors import DataError

INTERACTION_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")
MOVIE_COLUMNS = ("movie_id", "title", "genres", "year")
USER_COLUMNS = ("user_id", "age", "gender", "occupation", "zip")

#: The genres MovieLens uses, in the order of the 100K ``u.item`` flags.
MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


@dataclass
class DroppedRows:
    """Rows dropped for one reason: how many, and the first few as ``file, line: value``."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    kind: str = "rating rows"


@dataclass
class ValidationReport:
    """What validation read and what it dropped, by reason; printed at the end of a run."""

    rows_read: int = 0
    dropped: dict[str, DroppedRows] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def drop(self, reason: str, count: int, examples: list[str], kind: str = "rating rows") -> None:
        """Records ``count`` rows of ``kind`` (rating rows, movie-file lines, ...) dropped for ``reason``."""
        if count <= 0:
            return
        entry = self.dropped.setdefault(f"{kind}: {reason}", DroppedRows(kind=kind))
        entry.count += int(count)
        entry.examples.extend(examples[: max(0, 5 - len(entry.examples))])

    def dropped_of(self, kind: str) -> int:
        """How many rows of one kind were dropped."""
        return sum(entry.count for entry in self.dropped.values() if entry.kind == kind)

    @property
    def rows_dropped(self) -> int:
        """Rating rows dropped (lines of movie and user files are counted apart: :meth:`dropped_of`)."""
        return self.dropped_of("rating rows")

    def format(self) -> str:
        """A few human-readable lines: rows read, rows dropped by file kind and reason, notes."""
        lines = [f"validation: {self.rows_read:,} rating rows read, {self.rows_dropped:,} dropped"]
        other = sorted({entry.kind for entry in self.dropped.values()} - {"rating rows"})
        lines.extend(f"validation: {self.dropped_of(kind):,} {kind} dropped" for kind in other)
        for reason, entry in self.dropped.items():
            lines.append(f"  dropped {entry.count:,} {reason}")
            lines.extend(f"    e.g. {example}" for example in entry.examples)
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        kinds = sorted({entry.kind for entry in self.dropped.values()} | {"rating rows"})
        return {
            "rows_read": self.rows_read,
            "rows_dropped": self.rows_dropped,
            "dropped_by_kind": {kind: self.dropped_of(kind) for kind in kinds},
            "dropped": {reason: vars(entry) for reason, entry in self.dropped.items()},
            "notes": list(self.notes),
        }


@dataclass
class RatingsData:
    """Ratings, movies and (optionally) users in the canonical schema.

    Args:
        interactions: ``user_id`` (str), ``movie_id`` (str), ``rating`` (float32),
            ``timestamp`` (int64, seconds since 1970).
        movies: ``movie_id`` (str), ``title`` (str), ``genres`` (tuple of str),
            ``year`` (nullable Int64).
        users: ``user_id`` and optional ``age``, ``gender``, ``occupation``, ``zip``; None
            when the source has no user file.
        source: the source string it was read from.
        rating_scale: lowest and highest allowed rating ((1, 1) for implicit feedback).
        report: what validation read and dropped.
        implicit: interactions without ratings (plays, clicks, purchases): every row is a
            positive with rating 1; the ranking stage then learns relevance, not ratings.
    """

    interactions: pd.DataFrame
    movies: pd.DataFrame
    users: pd.DataFrame | None
    source: str
    rating_scale: tuple[float, float]
    report: ValidationReport = field(default_factory=ValidationReport)
    implicit: bool = False

    def fingerprint(self) -> str:
        """A short hash of the interactions, so a recorded split can be checked against its data."""
        hashed = pd.util.hash_pandas_object(
            self.interactions[list(INTERACTION_COLUMNS)], index=False
        ).to_numpy()
        return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def year_from_title(titles: pd.Series) -> pd.Series:
    """The ``(YYYY)`` at the end of MovieLens titles as nullable Int64 (missing where absent)."""
    years = titles.str.extract(r"\((\d{4})\)\s*$", expand=False)
    return pd.to_numeric(years, errors="coerce").astype("Int64")


def canonical_interactions(
    user_id: np.ndarray | pd.Series,
    movie_id: np.ndarray | pd.Series,
    rating: np.ndarray | pd.Series,
    timestamp: np.ndarray | pd.Series,
) -> pd.DataFrame:
    """Builds an interactions frame with the canonical column types."""
    return pd.DataFrame(
        {
            "user_id": _as_str(user_id),
            "movie_id": _as_str(movie_id),
            "rating": np.asarray(rating, dtype=np.float32),
            "timestamp": np.asarray(timestamp, dtype=np.int64),
        }
    )


def _as_str(values: np.ndarray | pd.Series) -> pd.Series:
    series = pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.rename_categories([str(c) for c in series.cat.categories])
    return series.astype(str)


def require_non_empty(data: RatingsData) -> RatingsData:
    """Raises a DataError when validation left no ratings."""
    if len(data.interactions) == 0:
        detail = f" ({data.report.rows_dropped:,} rows dropped)" if data.report.rows_dropped else ""
        raise DataError(f"{data.source}: no ratings left after validation{detail}")
    return data
