"""Layers both models are built from: id embeddings, user demographics, movie features, history pooling.

The towers (:mod:`tfrs_pipeline.retrieval.towers`) and the ranking model
(:mod:`tfrs_pipeline.ranking.rating`) compose these; each layer holds the tables it needs, so
every model takes bare ids at serving time.

Examples:
    >>> users = IdEmbedding(["u1", "u2"], dim=4, name="user")
    >>> users(tf.constant(["u1", "stranger"])).shape  # an unknown id gets the out-of-vocabulary row
    TensorShape([2, 4])
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_pipeline.features.tables import MovieTable, UserTable
from tfrs_pipeline.features.vocabulary import Vocabularies, id_lookup


class IdEmbedding(tf.keras.layers.Layer):
    """``StringLookup`` + ``Embedding``: string ids -> vocabulary rows (0 for unknown ids) -> vectors.

    Args:
        vocabulary: the known ids; row ``i + 1`` belongs to ``vocabulary[i]``, row 0 to every unknown id.
        dim: embedding size.
        initializer: initializer of the embedding table.
        regularizer: optional penalty on the table.
    """

    def __init__(self, vocabulary: list[str], dim: int, *, initializer="uniform", regularizer=None, **kwargs) -> None:
        super().__init__(**kwargs)
        if dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        self.lookup = id_lookup(vocabulary, f"{self.name}_ids", "lookup")
        self.embedding = tf.keras.layers.Embedding(len(vocabulary) + 1, dim, embeddings_initializer=initializer,
                                                   embeddings_regularizer=regularizer, name="embedding")

    @property
    def vocabulary_size(self) -> int:
        """Rows of the table: the vocabulary plus the unknown row."""
        return self.lookup.vocabulary_size()

    def rows(self, ids: tf.Tensor) -> tf.Tensor:
        """Vocabulary rows of ``ids`` (int64; 0 where unknown)."""
        return self.lookup(ids)

    def known(self, ids: tf.Tensor) -> tf.Tensor:
        """True where the id is in the vocabulary."""
        return self.lookup(ids) > 0

    def embed_rows(self, rows: tf.Tensor) -> tf.Tensor:
        return self.embedding(rows)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        return self.embedding(self.lookup(ids))


class UserFeatures(tf.keras.layers.Layer):
    """A user's demographics (age bucket, gender, occupation) as one vector, from tables keyed by user row.

    Args:
        vocab: the training vocabularies (genders and occupations).
        users: per-user demographic tables (row 0: unknown user).
        dims: embedding sizes of (age bucket, gender, occupation).
    """

    def __init__(self, vocab: Vocabularies, users: UserTable, dims: tuple[int, int, int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.age = tf.Variable(users.age_bucket, trainable=False, name="age_bucket")
        self.gender = tf.Variable(users.gender, trainable=False, name="gender")
        self.occupation = tf.Variable(users.occupation, trainable=False, name="occupation")
        age_dim, gender_dim, occupation_dim = dims
        self.age_embedding = tf.keras.layers.Embedding(8, age_dim, name="age_embedding")
        self.gender_embedding = tf.keras.layers.Embedding(len(vocab.genders) + 1, gender_dim, name="gender_embedding")
        self.occupation_embedding = tf.keras.layers.Embedding(len(vocab.occupations) + 1, occupation_dim,
                                                              name="occupation_embedding")

    def call(self, user_rows: tf.Tensor) -> list[tf.Tensor]:
        """The three embeddings [batch, dim_i] of each user row, in (age, gender, occupation) order."""
        return [self.age_embedding(tf.gather(self.age, user_rows)),
                self.gender_embedding(tf.gather(self.gender, user_rows)),
                self.occupation_embedding(tf.gather(self.occupation, user_rows))]


class MovieFeatures(tf.keras.layers.Layer):
    """Genres, year bucket and title words of a movie, as one vector (cold movies included).

    Args:
        vocab: the training vocabularies (title words).
        movies: per-movie tables over the whole catalog.
        dim: width of the genre projection and the title-word embedding.
    """

    def __init__(self, vocab: Vocabularies, movies: MovieTable, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.catalog_lookup = id_lookup(movies.movie_ids, "catalog_ids", "catalog_lookup")
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


class HistoryPooling(tf.keras.layers.Layer):
    """Mean embedding of each user's training movies, optionally leaving one movie out.

    Args:
        users: per-user training history (movie-vocabulary ids, ragged).
        num_movies: rows of the history embedding (movie vocabulary + 1).
        dim: embedding size.
        l2: L2 penalty on the history embedding.
        dropout: share of each history dropped at random per training step.
        sample: while training, a history longer than this is pooled from this many of its
            movies, drawn uniformly with replacement each step (0: always all of them).
            Evaluation and serving pool every movie.
        short_movies: most movies a history cut short (``cut=True`` while training) keeps: 1 to
            this many, about as many kept at random, as a visitor brings them.
    """

    def __init__(self, users: UserTable, num_movies: int, dim: int, l2: float = 0.0, dropout: float = 0.0,
                 sample: int = 0, short_movies: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_movies = num_movies
        self.dropout = dropout
        self.sample = sample
        self.short_movies = short_movies
        # Unknown lengths: set_history swaps in another history (the whole training side's, at export).
        self.splits = tf.Variable(users.history_splits, trainable=False, shape=[None], name="history_splits")
        self.values = tf.Variable(users.history_values, trainable=False, shape=[None], name="history_values")
        self.keys = tf.Variable(self._keys(users), trainable=False, shape=[None], name="history_keys")
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None
        self.embedding = tf.keras.layers.Embedding(num_movies, dim, embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05),
                                                   embeddings_regularizer=regularizer, name="history_embedding")

    def _keys(self, users: UserTable) -> np.ndarray:
        # Sorted (user, movie) keys; users' values are sorted the same way, so a key's position is the value's.
        user_rows = np.repeat(np.arange(len(users.history_splits) - 1), np.diff(users.history_splits))
        return user_rows * self.num_movies + users.history_values

    def set_history(self, users: UserTable) -> None:
        """Replaces every user's history (same user and movie vocabularies)."""
        if len(users.history_splits) != int(tf.size(self.splits)):
            raise ValueError(f"history for {len(users.history_splits) - 1} users; this layer has "
                             f"{int(tf.size(self.splits)) - 1}")
        self.splits.assign(users.history_splits)
        self.values.assign(users.history_values)
        self.keys.assign(self._keys(users))

    def lengths(self, user_rows: tf.Tensor) -> tf.Tensor:
        """How many movies each user's history holds (float32)."""
        user_rows = tf.cast(user_rows, tf.int64)
        return tf.cast(tf.gather(self.splits, user_rows + 1) - tf.gather(self.splits, user_rows), tf.float32)

    def call(self, user_rows: tf.Tensor, leave_out_rows: tf.Tensor | None = None, training: bool = False,
             with_counts: bool = False, cut: bool = False):
        """Each user's mean history embedding [batch, dim] (and with ``with_counts``, how many movies
        it pools [batch]: those kept this step while training); ``cut``: while training, each
        history cut to 1 to ``short_movies`` of its movies instead of losing ``dropout`` of them."""
        user_rows = tf.cast(user_rows, tf.int64)
        unique_users, position = tf.unique(user_rows)
        starts = tf.gather(self.splits, unique_users)
        lengths = tf.gather(self.splits, unique_users + 1) - starts
        sampled = training and self.sample > 0
        # Offsets into each user's history of the movies pooled, one ragged row per user.
        offsets = self._sampled_offsets(lengths) if sampled else tf.ragged.range(lengths)
        rows = offsets.value_rowids()
        movies = tf.gather(self.values, tf.gather(starts, rows) + offsets.flat_values)
        dtype = self.embedding.compute_dtype
        keep = tf.ones(tf.shape(movies), dtype)
        self.embedding(movies[:0])  # builds the table on a first call: both branches read it directly
        if training:
            if cut:  # the cut replaces dropout: no mask is drawn only to be thrown away
                keep = self._cut_short(keep, offsets)
            elif self.dropout > 0:
                # Denoising: each user's history loses a random share of its movies this step.
                keep = tf.cast(tf.random.uniform(tf.shape(keep)) >= self.dropout, dtype)
            # One fused gather-and-sum over the kept draws; its gradient arrives with one row per
            # distinct movie (the 70k draws of a batch at 100K ratings come from at most 1,682
            # movies), where a gather per draw would hand the optimizer 70k rows to de-duplicate.
            pooled = keep > 0
            sums = tf.cast(tf.sparse.segment_sum(self.embedding.embeddings, tf.boolean_mask(movies, pooled),
                                                 tf.boolean_mask(rows, pooled), num_segments=tf.size(unique_users),
                                                 sparse_gradient=True), dtype)
            counts = tf.math.unsorted_segment_sum(keep, rows, tf.size(unique_users))
        else:
            # Every movie counts: a sparse product sums each user's rows without holding one vector per
            # rated movie (a validation batch of 8,192 ratings at 20M pools about 5M of them).
            rated = tf.SparseTensor(tf.stack([rows, movies], axis=1), tf.ones(tf.shape(movies), tf.float32),
                                    tf.stack([tf.size(unique_users, out_type=tf.int64), self.num_movies]))
            sums = tf.cast(tf.sparse.sparse_dense_matmul(rated, self.embedding.embeddings), dtype)
            counts = tf.cast(lengths, dtype)
        sums, counts = tf.gather(sums, position), tf.gather(counts, position)
        if leave_out_rows is not None:
            leave_out_rows = tf.cast(leave_out_rows, tf.int64)
            if sampled:
                kept = self._kept_draws(movies, keep, rows, position, leave_out_rows)
            else:
                kept = self._kept_copy(keep, offsets.row_splits, starts, position, user_rows, leave_out_rows)
            sums -= kept[:, None] * self.embedding(leave_out_rows)
            counts -= kept
        means = sums / tf.maximum(counts, 1.0)[:, None]
        return (means, tf.cast(counts, tf.float32)) if with_counts else means

    def _cut_short(self, keep: tf.Tensor, offsets: tf.RaggedTensor) -> tf.Tensor:
        """Each user's history cut to 1 to ``short_movies`` movies (each pooled movie kept with chance
        chosen / pooled: about that many), as the 0/1 weight of each pooled movie."""
        users = offsets.nrows()
        chosen = tf.cast(tf.random.uniform([users], 1, self.short_movies + 1, tf.int64), tf.float32)
        chance = chosen / tf.maximum(tf.cast(offsets.row_lengths(), tf.float32), 1.0)
        rows = offsets.value_rowids()
        return tf.cast(tf.random.uniform(tf.shape(keep)) < tf.gather(chance, rows), keep.dtype)

    def _sampled_offsets(self, lengths: tf.Tensor) -> tf.RaggedTensor:
        """Every offset of a history of at most ``sample`` movies; ``sample`` uniform draws (with
        replacement) from a longer one, so a step's cost is bounded and the mean stays unbiased."""
        slots = tf.ragged.range(tf.minimum(lengths, self.sample))
        length = tf.gather(lengths, slots.value_rowids())
        drawn = tf.cast(tf.random.uniform(tf.shape(slots.flat_values)) * tf.cast(length, tf.float32), tf.int64)
        return slots.with_flat_values(tf.where(length > self.sample, tf.minimum(drawn, length - 1), slots.flat_values))

    def _kept_draws(self, movies, keep, draw_users, position, leave_out_rows) -> tf.Tensor:
        """How many kept draws of each example's user are the left-out movie.

        The examples' (user, movie) keys are sorted (a batch's 2,048, not the draws' 70k); each
        draw finds its key among them by binary search and adds its weight there.
        """
        example_keys = tf.cast(position, tf.int64) * self.num_movies + leave_out_rows
        wanted = tf.sort(example_keys)
        keys = draw_users * self.num_movies + movies
        # A key that is no example's still lands on a place: the equality test zeroes its weight.
        place = tf.minimum(tf.searchsorted(wanted, keys), tf.size(wanted) - 1)
        weight = tf.where(tf.equal(tf.gather(wanted, place), keys), keep, tf.zeros_like(keep))
        counts = tf.math.unsorted_segment_sum(weight, place, tf.size(wanted))
        # Repeated keys all find their first place, where their draws were added.
        return tf.gather(counts, tf.searchsorted(wanted, example_keys))

    def _kept_copy(self, keep, splits, starts, position, user_rows, leave_out_rows) -> tf.Tensor:
        """1 where the left-out movie is in the example's user's history and was not dropped, else 0."""
        key = user_rows * self.num_movies + leave_out_rows
        found = tf.minimum(tf.searchsorted(self.keys, key, out_type=tf.int64), tf.size(self.keys, out_type=tf.int64) - 1)
        member = tf.equal(tf.gather(self.keys, found), key)
        # Where the left-out movie sits among the gathered (possibly dropped) items.
        flat = tf.gather(splits, position) + found - tf.gather(starts, position)
        # One zero past the end: users without history (unknown ones) gather it, never out of range.
        padded = tf.concat([keep, tf.zeros([1], keep.dtype)], axis=0)
        flat = tf.where(member, tf.clip_by_value(flat, 0, tf.size(keep, out_type=tf.int64)), tf.size(keep, out_type=tf.int64))
        return tf.cast(member, keep.dtype) * tf.gather(padded, flat)

    def pool(self, movie_rows: tf.Tensor, with_counts: bool = False):
        """Mean history embedding of given movies [batch, n] (movie-vocabulary rows; 0 = unknown or
        padding), and with ``with_counts`` how many movies each pools [batch]."""
        vectors = self.embedding(movie_rows)
        weights = tf.cast(movie_rows > 0, vectors.dtype)[..., None]
        counts = tf.reduce_sum(weights, axis=1)
        means = tf.reduce_sum(vectors * weights, axis=1) / tf.maximum(counts, 1.0)
        return (means, tf.cast(counts[:, 0], tf.float32)) if with_counts else means
