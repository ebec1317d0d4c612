"""MovieLens in its published layouts, from a folder or the published ``.zip``.

Layouts (from the GroupLens READMEs):

* 100K: ``u.data`` (tab: user, item, rating, timestamp), ``u.item`` (``|``, latin-1:
  id, title, release date, video date, URL, 19 genre flags), ``u.user`` (``|``: id, age,
  gender, occupation, zip). Ratings 1..5.
* 1M: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated, latin-1; users: id,
  gender, age, occupation code, zip). Ratings 1..5.
* 10M: ``ratings.dat``, ``movies.dat`` (no users; UTF-8). Ratings 0.5..5.
* latest, latest-small, 20M, 25M, 32M: ``ratings.csv`` (userId, movieId, rating,
  timestamp) and ``movies.csv`` (movieId, title, genres ``|``-separated; UTF-8). Ratings 0.5..5.

Each file is decoded with its layout's one encoding (``encoding`` overrides it); a line that
does not decode is an error naming it, never a silent second guess.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from tfrs_pipeline.data.delimited import FileRef, read_table, read_text_lines
from tfrs_pipeline.data.download import cached_movielens, not_found_hint
from tfrs_pipeline.data.schema import MOVIELENS_GENRES, RatingsData, ValidationReport, year_from_title
from tfrs_pipeline.data.validation import RowPolicy, validate_ratings
from tfrs_pipeline.errors import DataError

#: ML-1M occupation codes (users.dat) and their names, from the 1M README.
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip

_LAYOUT_FILES = {
    "100k": "u.data",
    "1m": "users.dat",  # 1M is told from 10M by its users file
    "10m": "ratings.dat",
    "latest": "ratings.csv",
}


def _locate(path: Path) -> tuple[str, dict[str, FileRef]]:
    """Finds the layout of a folder or zip and the files it holds, by base name."""
    if not path.exists():
        raise DataError(f"{path}: no such folder or .zip file{not_found_hint(str(path))}")
    if path.is_dir():
        found = {}
        for candidate in sorted(path.rglob("*")):
            if candidate.is_file():
                found.setdefault(candidate.name, FileRef(candidate))
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = sorted(name for name in archive.namelist() if not name.endswith("/"))
        found = {}
        for name in names:
            found.setdefault(name.rsplit("/", 1)[-1], FileRef(path, name))
    else:
        raise DataError(f"{path}: not a folder or a .zip archive; expected a MovieLens folder or its published .zip")
    for layout, marker in _LAYOUT_FILES.items():
        if marker in found and (layout != "1m" or "ratings.dat" in found):
            return layout, found
    raise DataError(
        f"{path}: no MovieLens ratings file found; expected u.data (100K), ratings.dat (1M/10M) "
        "or ratings.csv (latest, 20M, 25M, 32M)"
    )


#: The text encoding of each layout's files, as published.
ENCODINGS = {"100k": "latin-1", "1m": "latin-1", "10m": "utf-8", "latest": "utf-8"}


def load_movielens(path: str | Path, on_bad_rows: str = "error", encoding: str | None = None) -> RatingsData:
    """Reads any published MovieLens layout into the canonical schema.

    Args:
        path: a MovieLens folder or its published ``.zip``, or the name of one that
            ``tfrs-pipeline data download`` fetched (``ml-latest-small``) where no such path exists.
        on_bad_rows: ``error`` or ``skip`` (drop and count bad rows).
        encoding: the text encoding of its files (default: the layout's, :data:`ENCODINGS`).

    Raises:
        DataError: a missing file or column, or a bad row under the ``error`` policy.
    """
    path = Path(path)
    if not path.exists():
        path = cached_movielens(str(path)) or path
    try:
        return _load(path, on_bad_rows, encoding)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DataError(f"{path}: the zip archive is damaged ({error}); download it again") from None


def _load(path: Path, on_bad_rows: str, encoding: str | None) -> RatingsData:
    layout, files = _locate(path)
    encoding = encoding or ENCODINGS[layout]
    report = ValidationReport()
    policy = RowPolicy(on_bad_rows, report)

    def need(name: str) -> FileRef:
        if name not in files:
            raise DataError(f"{path}: missing {name}, which the MovieLens {layout} layout needs")
        return files[name]

    users = None
    columns = ["user_id", "movie_id", "rating", "timestamp"]
    kinds = {"user_id": "int", "movie_id": "int", "rating": "float", "timestamp": "int"}
    if layout == "100k":
        movies = _movies_100k(need("u.item"), policy.of("movie-file lines"), encoding)
        if "u.user" in files:
            users = _users_100k(files["u.user"], policy.of("user-file lines"), encoding)
        ratings_file = need("u.data")
        raw = read_table(ratings_file, columns, kinds, sep="\t", header=False, policy=policy)
        scale = (1.0, 5.0)
    elif layout in ("1m", "10m"):
        movies = _movies_dat(need("movies.dat"), policy.of("movie-file lines"), encoding)
        if layout == "1m":
            users = _users_1m(files["users.dat"], policy.of("user-file lines"), encoding)
        ratings_file = need("ratings.dat")
        raw = read_table(ratings_file, columns, kinds, sep="::", header=False, policy=policy)
        scale = (1.0, 5.0) if layout == "1m" else (0.5, 5.0)
    else:
        movies = _movies_csv(need("movies.csv"), policy.of("movie-file lines"), encoding)
        ratings_file = need("ratings.csv")
        header = ["userId", "movieId", "rating", "timestamp"]
        raw = read_table(
            ratings_file, header, dict(zip(header, kinds.values())), sep=",", header=True, policy=policy
        )
        raw = raw.rename(columns=dict(zip(header, columns)))
        scale = (0.5, 5.0)
    report.rows_read = int(raw.attrs.get("lines_read", len(raw)))
    interactions = validate_ratings(
        raw, ratings_file, policy, rating_scale=scale, known_movies=pd.Index(movies["movie_id"])
    )
    report.notes.append(f"MovieLens {layout} layout read from {path}")
    return RatingsData(interactions, movies, users, f"movielens:{path}", scale, report)


def _movies_frame(ids: list[str], titles: list[str], genres: list[tuple[str, ...]], file: FileRef) -> pd.DataFrame:
    movies = pd.DataFrame({"movie_id": ids, "title": titles, "genres": genres})
    duplicated = movies["movie_id"].duplicated()
    if duplicated.any():
        raise DataError(f"{file}: movie id {movies['movie_id'][duplicated].iloc[0]!r} is listed twice")
    movies["year"] = year_from_title(movies["title"])
    return movies


def _movie_id(file: FileRef, number: int, value: str, policy: RowPolicy) -> str | None:
    value = value.strip()
    if not value.isdigit():
        policy.reject(file, [number], [value], "non-numeric movie id", "an integer movie id")
        return None
    return value


def _movies_100k(file: FileRef, policy: RowPolicy, encoding: str) -> pd.DataFrame:
    ids, titles, genres = [], [], []
    for number, line in read_text_lines(file, encoding):
        fields = line.split("|")
        if len(fields) != 5 + len(MOVIELENS_GENRES):
            policy.reject(file, [number], [line], "malformed line", f"{5 + len(MOVIELENS_GENRES)} fields separated by '|'")
            continue
        movie_id = _movie_id(file, number, fields[0], policy)
        if movie_id is None:
            continue
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            policy.reject(file, [number], ["|".join(flags)], "genre flags", "19 flags of 0 or 1")
            continue
        ids.append(movie_id)
        titles.append(fields[1])
        genres.append(tuple(g for g, flag in zip(MOVIELENS_GENRES, flags) if flag == "1"))
    return _movies_frame(ids, titles, genres, file)


def _split_genres(text: str) -> tuple[str, ...]:
    return tuple(g for g in text.strip().split("|") if g and g != "(no genres listed)")


def _movies_dat(file: FileRef, policy: RowPolicy, encoding: str) -> pd.DataFrame:
    ids, titles, genres = [], [], []
    for number, line in read_text_lines(file, encoding):
        fields = line.split("::")
        if len(fields) != 3:
            policy.reject(file, [number], [line], "malformed line", "MovieID::Title::Genres")
            continue
        movie_id = _movie_id(file, number, fields[0], policy)
        if movie_id is None:
            continue
        ids.append(movie_id)
        titles.append(fields[1])
        genres.append(_split_genres(fields[2]))
    return _movies_frame(ids, titles, genres, file)


def _movies_csv(file: FileRef, policy: RowPolicy, encoding: str) -> pd.DataFrame:
    import csv
    import io

    ids, titles, genres = [], [], []
    reader = csv.reader(io.StringIO(file.read_text(encoding)))
    header = next(reader, None)
    if header is None or header[:3] != ["movieId", "title", "genres"]:
        raise DataError(f"{file}, line 1: header {header!r}; expected movieId,title,genres")
    for number, fields in enumerate(reader, start=2):
        if not fields:
            continue
        if len(fields) != 3:
            policy.reject(file, [number], [",".join(fields)], "malformed line", "3 fields: movieId,title,genres")
            continue
        movie_id = _movie_id(file, number, fields[0], policy)
        if movie_id is None:
            continue
        ids.append(movie_id)
        titles.append(fields[1].strip())
        genres.append(_split_genres(fields[2]))
    return _movies_frame(ids, titles, genres, file)


def _users_frame(rows: list[tuple], file: FileRef) -> pd.DataFrame:
    users = pd.DataFrame(rows, columns=["user_id", "age", "gender", "occupation", "zip"])
    users["age"] = users["age"].astype(np.int32)
    if users["user_id"].duplicated().any():
        raise DataError(f"{file}: user id {users['user_id'][users['user_id'].duplicated()].iloc[0]!r} is listed twice")
    return users


def _users_100k(file: FileRef, policy: RowPolicy, encoding: str) -> pd.DataFrame:
    rows = []
    for number, line in read_text_lines(file, encoding):
        fields = line.split("|")
        if len(fields) != 5 or not fields[0].isdigit() or not fields[1].isdigit():
            policy.reject(file, [number], [line], "malformed user line", "id|age|gender|occupation|zip with numeric id and age")
            continue
        rows.append((fields[0], int(fields[1]), fields[2], fields[3], fields[4]))
    return _users_frame(rows, file)


def _users_1m(file: FileRef, policy: RowPolicy, encoding: str) -> pd.DataFrame:
    rows = []
    for number, line in read_text_lines(file, encoding):
        fields = line.split("::")
        valid = len(fields) == 5 and fields[0].isdigit() and fields[2].isdigit() and fields[3].isdigit()
        if not valid or int(fields[3]) >= len(OCCUPATIONS_1M):
            policy.reject(
                file, [number], [line], "malformed user line",
                "UserID::Gender::Age::Occupation::Zip-code with an occupation code 0-20",
            )
            continue
        rows.append((fields[0], int(fields[2]), fields[1], OCCUPATIONS_1M[int(fields[3])], fields[4]))
    return _users_frame(rows, file)
