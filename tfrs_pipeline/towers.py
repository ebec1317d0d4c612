"""Where a tower is built: the query (user) tower and the candidate (movie) tower.

Each tower is ``StringLookup`` + ``Embedding`` on the id, plus optional side features
looked up from tables the tower holds, so both take bare ids at serving time.

* Query tower: user id; demographics (age bucket, gender, occupation); and the mean
  embedding of the movies the user rated in training. While training on a rating, that
  rating's movie is left out of the mean, so the tower cannot learn to find the target
  in its own input.
* Candidate tower: movie id; genres (multi-hot), release-year bucket and the mean
  embedding of the title's words. Movies never rated in training (cold start) share
  the out-of-vocabulary id row and are told apart by these features.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_pipeline.features import MovieTable, UserTable, Vocabularies


class HistoryPooling(tf.keras.layers.Layer):
    """Mean embedding of each user's training movies, optionally leaving one movie out.

    Args:
        users: per-user training history (movie-vocabulary ids, ragged).
        num_movies: rows of the history embedding (movie vocabulary + 1).
        dim: embedding size.
    """

    def __init__(self, users: UserTable, num_movies: int, dim: int, l2: float = 0.0, dropout: float = 0.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_movies = num_movies
        self.dropout = dropout
        self.splits = tf.Variable(users.history_splits, trainable=False, name="history_splits")
        self.values = tf.Variable(users.history_values, trainable=False, name="history_values")
        # Sorted (user, movie) keys; users' values are sorted the same way, so a key's position is the value's.
        user_rows = np.repeat(np.arange(len(users.history_splits) - 1), np.diff(users.history_splits))
        self.keys = tf.Variable(user_rows * num_movies + users.history_values, trainable=False, name="history_keys")
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None
        self.embedding = tf.keras.layers.Embedding(num_movies, dim, embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05),
                                                   embeddings_regularizer=regularizer, name="history_embedding")

    def call(self, user_rows: tf.Tensor, leave_out_rows: tf.Tensor | None = None, training: bool = False) -> tf.Tensor:
        user_rows = tf.cast(user_rows, tf.int64)
        unique_users, position = tf.unique(user_rows)
        starts = tf.gather(self.splits, unique_users)
        lengths = tf.gather(self.splits, unique_users + 1) - starts
        item_positions = tf.ragged.range(starts, starts + lengths)  # positions in ``values``, one row per user
        vectors = self.embedding(tf.gather(self.values, item_positions.flat_values))
        keep = tf.ones(tf.shape(item_positions.flat_values), vectors.dtype)
        if training and self.dropout > 0:
            # Denoising: each user's history loses a random share of its movies this step.
            keep = tf.cast(tf.random.uniform(tf.shape(keep)) >= self.dropout, vectors.dtype)
        rows = item_positions.value_rowids()
        sums = tf.math.unsorted_segment_sum(vectors * keep[:, None], rows, tf.size(unique_users))
        counts = tf.math.unsorted_segment_sum(keep, rows, tf.size(unique_users))
        sums, counts = tf.gather(sums, position), tf.gather(counts, position)
        if leave_out_rows is not None:
            key = user_rows * self.num_movies + tf.cast(leave_out_rows, tf.int64)
            found = tf.minimum(tf.searchsorted(self.keys, key, out_type=tf.int64), tf.size(self.keys, out_type=tf.int64) - 1)
            member = tf.equal(tf.gather(self.keys, found), key)
            # Where the left-out movie sits among the gathered (possibly dropped) items.
            flat = tf.gather(item_positions.row_splits, position) + found - tf.gather(starts, position)
            # One zero past the end: users without history (unknown ones) gather it, never out of range.
            padded = tf.concat([keep, tf.zeros([1], keep.dtype)], axis=0)
            flat = tf.where(member, tf.clip_by_value(flat, 0, tf.size(keep, out_type=tf.int64)), tf.size(keep, out_type=tf.int64))
            kept = tf.cast(member, vectors.dtype) * tf.gather(padded, flat)
            sums -= kept[:, None] * self.embedding(leave_out_rows)
            counts -= kept
        return sums / tf.maximum(counts, 1.0)[:, None]


class QueryTower(tf.keras.Model):
    """User id -> query embedding.

    Args:
        vocab: training vocabularies.
        users: per-user demographics and history tables.
        dim: output embedding size.
        user_features: add demographics.
        history_features: add the mean embedding of the user's training movies.
        normalize: L2-normalise the output.
        hidden_units: ReLU layers between the features and the output (none: one linear layer).
        bias_column: append a constant 1, which meets the candidate tower's movie bias.
        history_dropout: share of the history dropped at random in each training step.
        l2: L2 penalty on the id and history embeddings.
    """

    def __init__(self, vocab: Vocabularies, users: UserTable, dim: int, *, user_features: bool = True,
                 history_features: bool = True, normalize: bool = True, hidden_units: tuple[int, ...] = (),
                 bias_column: bool = False, l2: float = 0.0, history_dropout: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        l2 /= tf.distribute.get_strategy().num_replicas_in_sync  # replicas each add it; gradients are summed
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None
        self.user_lookup = tf.keras.layers.StringLookup(vocabulary=vocab.user_ids, num_oov_indices=1, name="user_lookup")
        self.movie_lookup = tf.keras.layers.StringLookup(vocabulary=vocab.movie_ids, num_oov_indices=1, name="movie_lookup")
        self.user_embedding = tf.keras.layers.Embedding(len(vocab.user_ids) + 1, dim, embeddings_regularizer=regularizer,
                                                        name="user_embedding")
        self.user_features = user_features
        self.history_features = history_features
        self.normalize = normalize
        if user_features:
            self.age = tf.Variable(users.age_bucket, trainable=False, name="age_bucket")
            self.gender = tf.Variable(users.gender, trainable=False, name="gender")
            self.occupation = tf.Variable(users.occupation, trainable=False, name="occupation")
            self.age_embedding = tf.keras.layers.Embedding(8, 8, name="age_embedding")
            self.gender_embedding = tf.keras.layers.Embedding(len(vocab.genders) + 1, 4, name="gender_embedding")
            self.occupation_embedding = tf.keras.layers.Embedding(len(vocab.occupations) + 1, 8, name="occupation_embedding")
        if history_features:
            self.history_pooling = HistoryPooling(users, len(vocab.movie_ids) + 1, dim, l2=l2, dropout=history_dropout,
                                                  name="history")
        self.project = None
        if user_features or history_features:
            layers = [tf.keras.layers.Dense(units, activation="relu") for units in hidden_units]
            self.project = tf.keras.Sequential(layers + [tf.keras.layers.Dense(dim)], name="project")
        self.dim = dim
        self.bias_column = bias_column
        # The query an unknown user gets: the mean training user's (set by ``set_fallback``).
        self.fallback = tf.Variable(tf.zeros([dim + int(bias_column)]), trainable=False, name="fallback_query")

    def set_fallback(self, batch_size: int = 8192) -> None:
        """Sets the unknown-user query to the (normalised) mean query of every training user."""
        users = self.user_lookup.get_vocabulary()[1:]
        total = tf.zeros([self.fallback.shape[0]])
        for start in range(0, len(users), batch_size):
            total += tf.reduce_sum(self(tf.constant(users[start : start + batch_size])), axis=0)
        mean = total / max(1, len(users))
        head = tf.math.l2_normalize(mean[: self.dim]) if self.normalize else mean[: self.dim]
        self.fallback.assign(tf.concat([head, mean[self.dim :]], axis=0))

    def serve(self, user_id: tf.Tensor) -> tf.Tensor:
        """Query embeddings for serving: unknown users get the fallback query."""
        known = self.known(user_id)
        return tf.where(known[:, None], self(user_id), self.fallback[None, :])

    def call(self, user_id: tf.Tensor, leave_out_movie_id: tf.Tensor | None = None, training: bool = False) -> tf.Tensor:
        rows = self.user_lookup(user_id)
        parts = [self.user_embedding(rows)]
        if self.user_features:
            parts += [self.age_embedding(tf.gather(self.age, rows)), self.gender_embedding(tf.gather(self.gender, rows)),
                      self.occupation_embedding(tf.gather(self.occupation, rows))]
        if self.history_features:
            leave_out = None if leave_out_movie_id is None else self.movie_lookup(leave_out_movie_id)
            parts.append(self.history_pooling(rows, leave_out, training=training))
        output = self.project(tf.concat(parts, axis=1)) if self.project is not None else parts[0]
        output = tf.cast(output, tf.float32)
        output = tf.math.l2_normalize(output, axis=1) if self.normalize else output
        if self.bias_column:
            output = tf.concat([output, tf.ones_like(output[:, :1])], axis=1)
        return output

    def known(self, user_id: tf.Tensor) -> tf.Tensor:
        """True where the user had training ratings."""
        return self.user_lookup(user_id) > 0


class MovieFeatures(tf.keras.layers.Layer):
    """Genres, year bucket and title words of a movie, as one vector (cold movies included)."""

    def __init__(self, vocab: Vocabularies, movies: MovieTable, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.catalog_lookup = tf.keras.layers.StringLookup(vocabulary=list(movies.movie_ids), num_oov_indices=1,
                                                           name="catalog_lookup")
        self.genres = tf.Variable(movies.genres, trainable=False, name="genres")
        self.year = tf.Variable(movies.year_bucket, trainable=False, name="year_bucket")
        self.title_tokens = tf.Variable(movies.title_tokens, trainable=False, name="title_tokens")
        self.genre_projection = tf.keras.layers.Dense(dim, use_bias=False, name="genre_projection")
        self.year_embedding = tf.keras.layers.Embedding(movies.num_year_buckets, dim // 4 or 1, name="year_embedding")
        self.word_embedding = tf.keras.layers.Embedding(len(vocab.title_words) + 1, dim, mask_zero=True,
                                                        name="title_word_embedding")

    def call(self, movie_id: tf.Tensor) -> tf.Tensor:
        rows = self.catalog_lookup(movie_id)
        genres = self.genre_projection(tf.gather(self.genres, rows))
        year = self.year_embedding(tf.gather(self.year, rows))
        tokens = tf.gather(self.title_tokens, rows)
        mask = tf.cast(tokens > 0, tf.float32)[:, :, None]
        words = tf.cast(self.word_embedding(tokens), tf.float32) * mask
        title = tf.reduce_sum(words, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        return tf.concat([tf.cast(genres, tf.float32), tf.cast(year, tf.float32), title], axis=1)


class CandidateTower(tf.keras.Model):
    """Movie id -> candidate embedding.

    Args:
        vocab: training vocabularies.
        movies: per-movie feature tables over the whole catalog.
        dim: output embedding size.
        movie_features: add genres, year and title words.
        normalize: L2-normalise the output.
        movie_bias: append a learned per-movie bias (a popularity term that the
            normalised embedding cannot carry in its length).
        l2: L2 penalty on the id embedding.
    """

    def __init__(self, vocab: Vocabularies, movies: MovieTable, dim: int, *, movie_features: bool = True,
                 normalize: bool = True, movie_bias: bool = False, l2: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        l2 /= tf.distribute.get_strategy().num_replicas_in_sync  # replicas each add it; gradients are summed
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None
        self.movie_lookup = tf.keras.layers.StringLookup(vocabulary=vocab.movie_ids, num_oov_indices=1, name="movie_lookup")
        self.movie_embedding = tf.keras.layers.Embedding(len(vocab.movie_ids) + 1, dim, embeddings_regularizer=regularizer,
                                                         name="movie_embedding")
        self.normalize = normalize
        self.features = MovieFeatures(vocab, movies, dim, name="movie_features") if movie_features else None
        self.project = tf.keras.layers.Dense(dim, name="project") if movie_features else None
        self.dim = dim
        self.bias = tf.keras.layers.Embedding(len(vocab.movie_ids) + 1, 1, embeddings_initializer="zeros",
                                              name="movie_bias") if movie_bias else None

    def call(self, movie_id: tf.Tensor) -> tf.Tensor:
        rows = self.movie_lookup(movie_id)
        output = self.movie_embedding(rows)
        if self.features is not None:
            output = self.project(tf.concat([tf.cast(output, tf.float32), self.features(movie_id)], axis=1))
        output = tf.cast(output, tf.float32)
        output = tf.math.l2_normalize(output, axis=1) if self.normalize else output
        if self.bias is not None:
            output = tf.concat([output, tf.cast(self.bias(rows), tf.float32)], axis=1)
        return output

    def known(self, movie_id: tf.Tensor) -> tf.Tensor:
        """True where the movie had training ratings."""
        return self.movie_lookup(movie_id) > 0
