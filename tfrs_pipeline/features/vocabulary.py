"""Vocabularies: the user, movie, genre and title-word ids every model looks up, from the training side only.

Each vocabulary is written once per process to a text file that ``StringLookup`` reads, so
an exported SavedModel carries it as an asset rather than a graph constant.
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

import pandas as pd
import tensorflow as tf

from tfrs_pipeline.data.schema import MOVIELENS_GENRES, RatingsData
from tfrs_pipeline.ids import distinct_ids

MAX_TITLE_TOKENS = 8


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
