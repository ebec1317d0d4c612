"""Where ratings become tensors: vocabularies, per-movie and per-user feature tables, tf.data.

Vocabularies come from the training side only. Side features live in tables inside the
models (keyed by id), so serving needs ids alone, and the input pipeline carries only
what changes per example.

Example:
    >>> vocab = Vocabularies.from_training(split.train, data)  # doctest: +SKIP
    >>> dataset = make_dataset(split.train, batch_size=4096, shuffle=True, seed=7)  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline.data.schema import MOVIELENS_GENRES, RatingsData
from tfrs_pipeline.metrics import distinct_ids, id_positions

#: Feature names of every example a dataset yields.
CORE_FEATURES = ("user_id", "movie_id", "user_rating", "timestamp")
SIDE_FEATURES = ("movie_title", "movie_genres", "movie_year_bucket", "user_age_bucket", "user_gender", "user_occupation")

MAX_TITLE_TOKENS = 8
MAX_GENRES = 6
YEAR_BUCKETS = np.arange(1920, 2031, 5)


_VOCABULARY_FILES: dict[str, str] = {}  # content digest -> file


@functools.cache
def _vocabulary_folder() -> Path:
    """This process's folder of vocabulary files (removed at exit)."""
    folder = tempfile.mkdtemp(prefix="tfrs_pipeline_vocabularies_")
    atexit.register(shutil.rmtree, folder, True)
    return Path(folder)


def vocabulary_file(values, name: str = "vocabulary") -> str | None:
    """The vocabulary as a text file (one id per line), written once per process and content.

    Returns None when the values cannot be a file (empty, or an id holding a line break).
    """
    lines = [str(v) for v in values]
    if not lines or any("\n" in v or "\r" in v for v in lines):
        return None
    text = "\n".join(lines) + "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    if digest not in _VOCABULARY_FILES:
        path = _vocabulary_folder() / f"{name}-{digest}.txt"
        path.write_text(text, encoding="utf-8")
        _VOCABULARY_FILES[digest] = str(path)
    return _VOCABULARY_FILES[digest]


def id_lookup(values, file_name: str, layer_name: str | None = None) -> tf.keras.layers.StringLookup:
    """``StringLookup`` over ids (row 0: unknown), read from a vocabulary file named after ``file_name``.

    A SavedModel holding it carries the file once as an asset (``assets/``), shared by every
    lookup over the same ids, instead of the ids as constants in the graph.
    """
    path = vocabulary_file(values, file_name)
    vocabulary = path if path is not None else [str(v) for v in values]
    return tf.keras.layers.StringLookup(vocabulary=vocabulary, num_oov_indices=1, name=layer_name)


def _tokenize(title: str) -> list[str]:
    title = re.sub(r"\(\d{4}\)\s*$", "", title.lower())
    return re.findall(r"[a-z0-9']+", title)


@dataclass
class Vocabularies:
    """Id, title-word, genre and demographic vocabularies, from training data only.

    Index 0 of every lookup built from them is the out-of-vocabulary bucket.
    """

    user_ids: list[str]
    movie_ids: list[str]
    title_words: list[str]
    genres: list[str]
    occupations: list[str]
    genders: list[str]

    @classmethod
    def from_training(cls, train: pd.DataFrame, data: RatingsData, min_word_count: int = 2) -> Vocabularies:
        movie_ids = sorted(set(distinct_ids(train["movie_id"])))
        user_ids = sorted(set(distinct_ids(train["user_id"])))
        trained_movies = data.movies[data.movies["movie_id"].isin(movie_ids)]
        counts: dict[str, int] = {}
        for title in trained_movies["title"]:
            for word in set(_tokenize(title)):
                counts[word] = counts.get(word, 0) + 1
        words = sorted(word for word, count in counts.items() if count >= min_word_count)
        genres = sorted({g for genres in data.movies["genres"] for g in genres} | set(MOVIELENS_GENRES))
        users = data.users if data.users is not None else pd.DataFrame(columns=["occupation", "gender"])
        trained_users = users[users["user_id"].isin(user_ids)] if len(users) else users
        occupations = sorted(set(trained_users.get("occupation", pd.Series(dtype=str)).astype(str)))
        genders = sorted(set(trained_users.get("gender", pd.Series(dtype=str)).astype(str)))
        return cls(user_ids, movie_ids, words, genres, occupations, genders)


@dataclass
class MovieTable:
    """Per-movie arrays over the whole catalog (training movies and cold ones), row 0 unknown.

    Args:
        movie_ids: catalog ids; row i + 1 of every table belongs to ``movie_ids[i]``.
        titles: display titles, "" in row 0.
        genres: multi-hot genre matrix, float32 [rows, genres].
        year_bucket: bucketized release year, 0 when missing.
        title_tokens: title word ids, 0-padded, int32 [rows, MAX_TITLE_TOKENS].
        train_count: training ratings per movie.
        mean_rating: training mean rating per movie, shrunk towards the global mean.
    """

    movie_ids: np.ndarray
    titles: np.ndarray
    genres: np.ndarray
    year_bucket: np.ndarray
    title_tokens: np.ndarray
    train_count: np.ndarray
    mean_rating: np.ndarray

    @classmethod
    def build(cls, data: RatingsData, train: pd.DataFrame, vocab: Vocabularies, shrinkage: float = 10.0) -> MovieTable:
        movies = data.movies.drop_duplicates("movie_id")
        extra = sorted(set(distinct_ids(data.interactions["movie_id"])) - set(movies["movie_id"].astype(str)))
        ids = np.concatenate([movies["movie_id"].astype(str).to_numpy(), np.asarray(extra, dtype=object)]).astype(object)
        titles = np.concatenate([movies["title"].astype(str).to_numpy(), np.asarray(extra, dtype=object)])
        genre_lists = list(movies["genres"]) + [()] * len(extra)
        years = np.concatenate([movies["year"].astype("float64").fillna(np.nan).to_numpy(), np.full(len(extra), np.nan)])
        rows = len(ids) + 1

        genre_index = {g: i for i, g in enumerate(vocab.genres)}
        genres = np.zeros((rows, len(vocab.genres)), dtype=np.float32)
        for row, movie_genres in enumerate(genre_lists, start=1):
            for g in movie_genres:
                if g in genre_index:
                    genres[row, genre_index[g]] = 1.0
        year_bucket = np.zeros(rows, dtype=np.int32)
        known = ~np.isnan(years)
        year_bucket[1:][known] = np.digitize(years[known], YEAR_BUCKETS) + 1
        word_index = {w: i + 1 for i, w in enumerate(vocab.title_words)}
        title_tokens = np.zeros((rows, MAX_TITLE_TOKENS), dtype=np.int32)
        for row, title in enumerate(titles, start=1):
            tokens = [word_index[w] for w in _tokenize(title) if w in word_index][:MAX_TITLE_TOKENS]
            title_tokens[row, : len(tokens)] = tokens

        # Grouped by catalog position, not one id string per rating: the same groups and sums.
        stats = train["rating"].groupby(id_positions(pd.Index(ids), train["movie_id"])).agg(["count", "sum"])
        stats = stats.reindex(np.arange(len(ids))).fillna(0.0)
        global_mean = float(train["rating"].mean())
        count = np.concatenate([[0.0], stats["count"].to_numpy()])
        total = np.concatenate([[0.0], stats["sum"].to_numpy()])
        mean_rating = ((total + shrinkage * global_mean) / (count + shrinkage)).astype(np.float32)
        return cls(ids, np.concatenate([[""], titles]).astype(object), genres, year_bucket, title_tokens,
                   count.astype(np.float32), mean_rating)

    @property
    def num_year_buckets(self) -> int:
        return len(YEAR_BUCKETS) + 2


@dataclass
class UserTable:
    """Per-user arrays over the training users (``Vocabularies.user_ids``), row 0 unknown.

    Args:
        age_bucket, gender, occupation: demographic ids, 0 when unknown.
        history_splits, history_values: each user's training movies as ragged rows of
            movie-vocabulary ids (``row_splits`` and ``values`` of a RaggedTensor).
    """

    age_bucket: np.ndarray
    gender: np.ndarray
    occupation: np.ndarray
    history_splits: np.ndarray
    history_values: np.ndarray

    @classmethod
    def build(cls, data: RatingsData, train: pd.DataFrame, vocab: Vocabularies) -> UserTable:
        rows = len(vocab.user_ids) + 1
        age_bucket = np.zeros(rows, dtype=np.int32)
        gender = np.zeros(rows, dtype=np.int32)
        occupation = np.zeros(rows, dtype=np.int32)
        if data.users is not None and len(data.users):
            users = data.users.drop_duplicates("user_id").set_index(data.users["user_id"].astype(str).drop_duplicates())
            users = users.reindex(vocab.user_ids)
            known = users["age"].notna().to_numpy()
            ages = users["age"].astype("float64").to_numpy()
            age_bucket[1:][known] = np.digitize(ages[known], [18, 25, 35, 45, 50, 56]) + 1
            gender[1:] = _index_of(users["gender"], vocab.genders)
            occupation[1:] = _index_of(users["occupation"], vocab.occupations)
        movie_rows = id_positions(pd.Index(vocab.movie_ids), train["movie_id"]) + 1
        splits, values = group_by_user(train, vocab, movie_rows)
        return cls(age_bucket, gender, occupation, splits, values)

    def history(self) -> tf.RaggedTensor:
        return tf.RaggedTensor.from_row_splits(self.history_values, self.history_splits)


def group_by_user(train: pd.DataFrame, vocab: Vocabularies, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (one per training rating) grouped by user vocabulary row, sorted within each user.

    Returns:
        ``(row_splits, values)`` of a ragged tensor with one row per vocabulary row (row 0,
        the unknown user, empty); sorted rows let callers test membership with a binary search.
    """
    user_rows = id_positions(pd.Index(vocab.user_ids), train["user_id"]) + 1
    order = np.lexsort((values, user_rows))
    counts = np.bincount(user_rows, minlength=len(vocab.user_ids) + 1)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), np.asarray(values)[order].astype(np.int64)


def _index_of(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    index = pd.Index(vocabulary)
    return (index.get_indexer(values.astype(str).fillna("")) + 1).astype(np.int32)


def _id_codes(column: pd.Series) -> tuple[tf.Tensor, tf.Tensor]:
    """An id column as (int32 codes [rows], its distinct ids as strings [distinct])."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype("category")
    distinct = column.cat.categories.astype(str).to_numpy(dtype=object)
    return tf.constant(column.cat.codes.to_numpy(dtype=np.int32)), tf.constant(distinct)


def shuffled_row_batches(n: int, batch_size: int, seed: int) -> tf.data.Dataset:
    """Batches of the row numbers ``0 .. n-1``, in a new random order every epoch (deterministic by ``seed``).

    The order is computed, not stored: ``tf.random.experimental.index_shuffle`` maps each
    position to a row through a seeded bijection, drawn afresh each time the dataset is
    iterated. A shuffle buffer of ``n`` row numbers would hold one tensor per row (2.5 GiB
    at 16M training ratings).

    Example:
        >>> np.sort(np.concatenate(list(shuffled_row_batches(5, 2, seed=1).as_numpy_iterator()))).tolist()
        [0, 1, 2, 3, 4]
    """
    positions = tf.data.Dataset.range(n).batch(batch_size)
    if n < 2:
        return positions

    def one_epoch(draw):
        seeds = tf.stack([tf.constant(seed, tf.int64), draw])
        return positions.map(lambda batch: tf.random.experimental.index_shuffle(batch, seeds, n - 1))

    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    return draws.flat_map(one_epoch).apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))


def make_dataset(
    frame: pd.DataFrame,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    movies: MovieTable | None = None,
    users: UserTable | None = None,
    vocab: Vocabularies | None = None,
) -> tf.data.Dataset:
    """Batches of ``{"user_id", "movie_id", "user_rating", "timestamp"}``, prefetched.

    With ``movies`` the batches also carry ``movie_title`` and ``movie_genres`` (genre
    vocabulary ids + 1, 0-padded to ``MAX_GENRES``) and ``movie_year_bucket``; with
    ``users`` and ``vocab``, ``user_age_bucket``, ``user_gender`` and ``user_occupation``
    (vocabulary ids + 1, 0 unknown). Side features are looked up per batch rather than
    stored per rating. Shuffling draws a new
    order every epoch (deterministic by ``seed``; see :func:`shuffled_row_batches`).
    """
    # Ids are held as integer codes into their distinct values and become strings per batch:
    # one Python string per rating would cost gigabytes at 20M ratings.
    ids = {name: _id_codes(frame[name]) for name in ("user_id", "movie_id")}
    columns = {
        "user_rating": tf.constant(frame["rating"].to_numpy(dtype=np.float32)),
        "timestamp": tf.constant(frame["timestamp"].to_numpy(dtype=np.int64)),
    }

    def gather(rows):
        batch = {name: tf.gather(values, tf.gather(codes, rows)) for name, (codes, values) in ids.items()}
        return {**batch, **{name: tf.gather(column, rows) for name, column in columns.items()}}

    n = len(frame)
    rows = shuffled_row_batches(n, batch_size, seed) if shuffle else tf.data.Dataset.range(n).batch(batch_size)
    dataset = rows.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if movies is not None:
        dataset = dataset.map(_movie_side_features(movies), num_parallel_calls=tf.data.AUTOTUNE)
    if users is not None and vocab is not None:
        dataset = dataset.map(_user_side_features(users, vocab), num_parallel_calls=tf.data.AUTOTUNE)
    # Under a multi-worker strategy each worker keeps its own share of every batch: the rows
    # live in memory, not in files, so sharding by file (the AUTO policy's first try) cannot apply.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _user_side_features(users: UserTable, vocab: Vocabularies):
    lookup = id_lookup(vocab.user_ids, "user_ids")
    tables = {"user_age_bucket": users.age_bucket, "user_gender": users.gender, "user_occupation": users.occupation}
    tables = {name: tf.constant(values) for name, values in tables.items()}

    def add(batch):
        rows = lookup(batch["user_id"])
        return {**batch, **{name: tf.gather(table, rows) for name, table in tables.items()}}

    return add


def _movie_side_features(movies: MovieTable):
    lookup = id_lookup(movies.movie_ids, "catalog_ids")
    titles = tf.constant(movies.titles.astype(str))
    years = tf.constant(movies.year_bucket)
    genre_rows = tf.constant(
        [[i + 1 for i in np.flatnonzero(row)][:MAX_GENRES] + [0] * (MAX_GENRES - min(MAX_GENRES, int(row.sum())))
         for row in movies.genres], dtype=tf.int64,
    )

    def add(batch):
        rows = lookup(batch["movie_id"])
        batch = dict(batch)
        batch["movie_title"] = tf.gather(titles, rows)
        batch["movie_genres"] = tf.gather(genre_rows, rows)
        batch["movie_year_bucket"] = tf.gather(years, rows)
        return batch

    return add


@dataclass
class Prepared:
    """What every model is built from: the fitting part of the training side, its hold-out, and their tables.

    Nothing the models see while training or validating is built from the validation
    hold-out: each user's history (``users``) and each movie's rating counts and means
    (``movies``) come from the fitting part ``train`` alone, so a validation movie is never
    in its own user's history input. The exported model serves with the tables of the
    whole training side (``full_users``, ``full_movies``), as a user's every rating is
    history by then. Vocabularies come from the whole training side.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    vocab: Vocabularies
    movies: MovieTable
    users: UserTable
    full_movies: MovieTable
    full_users: UserTable
    rating_scale: tuple[float, float]
    global_mean: float
    implicit: bool = False


def prepare(data: RatingsData, train: pd.DataFrame, validation_fraction: float, seed: int) -> Prepared:
    """Builds vocabularies and tables from ``train`` and holds out a validation share of it."""
    from tfrs_pipeline.split import hold_out

    vocab = Vocabularies.from_training(train, data)
    fit_part, validation = hold_out(train, validation_fraction, seed)
    return Prepared(fit_part, validation, vocab,
                    MovieTable.build(data, fit_part, vocab), UserTable.build(data, fit_part, vocab),
                    MovieTable.build(data, train, vocab), UserTable.build(data, train, vocab),
                    tuple(data.rating_scale), 0.0 if data.implicit else float(fit_part["rating"].mean()),
                    implicit=data.implicit)
