"""Per-movie and per-user feature tables, keyed by vocabulary row, that live inside the models.

A movie's genres, year bucket, title words, rating count and mean rating, and a user's
demographics and rating history, are looked up by id inside the models, so serving needs
ids alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline.data.schema import RatingsData
from tfrs_pipeline.features.vocabulary import MAX_TITLE_TOKENS, Vocabularies, _tokenize
from tfrs_pipeline.ids import distinct_ids, id_positions

MAX_GENRES = 6


YEAR_BUCKETS = np.arange(1920, 2031, 5)


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
