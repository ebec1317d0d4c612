"""Where ratings become tensors: ``tf.data`` pipelines, and :func:`prepare`, which builds every model input.

Vocabularies come from the training side only. Side features live in tables inside the
models (keyed by id), so serving needs ids alone, and the input pipeline carries only
what changes per example.

Examples:
    >>> from tfrs_pipeline.config import SplitConfig
    >>> from tfrs_pipeline.data import load_data
    >>> from tfrs_pipeline.data.split import split_ratings
    >>> split = split_ratings(load_data("synthetic:50x40x600"), SplitConfig())
    >>> batch = next(iter(make_dataset(split.train, batch_size=128, shuffle=True, seed=7)))
    >>> sorted(batch), batch["user_id"].shape
    (['movie_id', 'timestamp', 'user_id', 'user_rating'], TensorShape([128]))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline.data.schema import RatingsData
from tfrs_pipeline.features.tables import MAX_GENRES, MovieTable, UserTable
from tfrs_pipeline.features.vocabulary import Vocabularies, id_lookup

#: Feature names of every example a dataset yields.
CORE_FEATURES = ("user_id", "movie_id", "user_rating", "timestamp")


SIDE_FEATURES = ("movie_title", "movie_genres", "movie_year_bucket", "user_age_bucket", "user_gender", "user_occupation")


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

    Examples:
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

    The training side (:attr:`Split.train <tfrs_pipeline.data.split.Split>`) is the fitting part
    (``fitting``), which the models train on, and the validation hold-out (``validation``),
    which early stopping and the choices of weights read. Nothing the models see while
    training or validating is built from the hold-out: each user's history (``users``) and
    each movie's rating counts and means (``movies``) come from ``fitting`` alone, so a
    validation movie is never in its own user's history input. The exported model serves with
    the tables of the whole training side (``whole_users``, ``whole_movies``), as a user's every
    rating is history by then. Vocabularies come from the whole training side.
    """

    fitting: pd.DataFrame
    validation: pd.DataFrame
    vocab: Vocabularies
    movies: MovieTable
    users: UserTable
    whole_movies: MovieTable
    whole_users: UserTable
    rating_scale: tuple[float, float]
    global_mean: float
    implicit: bool = False


def prepare(data: RatingsData, train: pd.DataFrame, validation_fraction: float, seed: int) -> Prepared:
    """Builds vocabularies and tables from ``train`` and holds out a validation share of it."""
    from tfrs_pipeline.data.split import hold_out

    vocab = Vocabularies.from_training(train, data)
    fit_part, validation = hold_out(train, validation_fraction, seed)
    return Prepared(fit_part, validation, vocab,
                    MovieTable.build(data, fit_part, vocab), UserTable.build(data, fit_part, vocab),
                    MovieTable.build(data, train, vocab), UserTable.build(data, train, vocab),
                    tuple(data.rating_scale), 0.0 if data.implicit else float(fit_part["rating"].mean()),
                    implicit=data.implicit)
