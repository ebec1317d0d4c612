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

import tensorflow as tf

from tfrs_pipeline.features.layers import HistoryPooling, IdEmbedding, MovieFeatures, UserFeatures
from tfrs_pipeline.features.tables import MovieTable, UserTable
from tfrs_pipeline.features.vocabulary import Vocabularies, id_lookup


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
        short_history: a history of at most this many movies (a visitor's few) gets the
            short-history query: its own projection of the pooled history and its own weight on
            the movies' popularity bias, trained on histories cut to 1 to this many movies
            (``call(..., cut=True)``; 0: one query for all).
        l2: L2 penalty on the id and history embeddings.
    """

    def __init__(self, vocab: Vocabularies, users: UserTable, dim: int, *, user_features: bool = True,
                 history_features: bool = True, normalize: bool = True, hidden_units: tuple[int, ...] = (),
                 bias_column: bool = False, l2: float = 0.0, history_dropout: float = 0.0,
                 history_sample: int = 0, short_history: int = 0, user_embedding: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        l2 /= tf.distribute.get_strategy().num_replicas_in_sync  # replicas each add it; gradients are summed
        regularizer = tf.keras.regularizers.l2(l2) if l2 else None
        self.user = IdEmbedding(vocab.user_ids, dim, regularizer=regularizer, name="user")
        self.movie_lookup = id_lookup(vocab.movie_ids, "movie_ids", "movie_lookup")
        self.user_features = user_features
        self.history_features = history_features
        self.user_embedding = user_embedding
        self.normalize = normalize
        if user_features:
            self.demographics = UserFeatures(vocab, users, dims=(8, 4, 8), name="demographics")
        if history_features:
            self.history_pooling = HistoryPooling(users, len(vocab.movie_ids) + 1, dim, l2=l2, dropout=history_dropout,
                                                  sample=history_sample, short_movies=short_history,
                                                  name="history")
        self.short_history = short_history if history_features else 0
        # The short-history query's weight on the candidates' popularity bias, beside the others' 1.
        if self.short_history:
            self.short_bias = tf.Variable(1.0, name="short_history_bias_weight")
        self.project = None
        if user_features or history_features:
            layers = [tf.keras.layers.Dense(units, activation="relu") for units in hidden_units]
            self.project = tf.keras.Sequential(layers + [tf.keras.layers.Dense(dim)], name="project")
        self.dim = dim
        self.bias_column = bias_column
        # The query an unknown user gets: the mean training user's (set by ``set_fallback``).
        self.fallback = tf.Variable(tf.zeros([dim + int(bias_column)]), trainable=False, name="fallback_query")
        # The id embedding a visitor known only by their history gets: the mean training user's.
        self.mean_user_embedding = tf.Variable(tf.zeros([dim]), trainable=False, name="mean_user_embedding")

    def set_fallback(self, batch_size: int = 8192) -> None:
        """Sets the unknown-user query to the (normalised) mean query of every training user."""
        users = self.user.lookup.get_vocabulary()[1:]
        total = tf.zeros([self.fallback.shape[0]])
        for start in range(0, len(users), batch_size):
            total += tf.reduce_sum(self(tf.constant(users[start : start + batch_size])), axis=0)
        mean = total / max(1, len(users))
        head = tf.math.l2_normalize(mean[: self.dim]) if self.normalize else mean[: self.dim]
        self.fallback.assign(tf.concat([head, mean[self.dim :]], axis=0))
        if self.user_embedding:
            self.mean_user_embedding.assign(tf.reduce_mean(self.user.embedding.embeddings[1:], axis=0))

    def use_history(self, users: UserTable) -> None:
        """Serves with another history table (the whole training side's, at export) and re-derives the fallback query."""
        if self.history_features:
            self.history_pooling.set_history(users)
            self.set_fallback()

    def serve(self, user_id: tf.Tensor) -> tf.Tensor:
        """Query embeddings for serving: unknown users get the fallback query."""
        known = self.known(user_id)
        return tf.where(known[:, None], self(user_id), self.fallback[None, :])

    def call(self, user_id: tf.Tensor, leave_out_movie_id: tf.Tensor | None = None, training: bool = False,
             cut: bool = False) -> tf.Tensor:
        """Each user's query; ``cut``: while training, from their history cut to 1 to ``short_history``
        movies (the short-history query's training input)."""
        rows = self.user.rows(user_id)
        parts = [self.user.embed_rows(rows)] if self.user_embedding else []
        if self.user_features:
            parts += self.demographics(rows)
        if self.history_features:
            leave_out = None if leave_out_movie_id is None else self.movie_lookup(leave_out_movie_id)
            pooled, counts = self.history_pooling(rows, leave_out, training=training, with_counts=True, cut=cut)
            parts.append(pooled)
            return self._output(parts, counts)
        return self._output(parts)

    def query(self, user_id: tf.Tensor, history: tf.RaggedTensor) -> tf.Tensor:
        """Queries for serving from what each user did: ``history`` [batch, None], the movie-vocabulary
        rows of the movies they rated (0, an unknown movie, is left out), pooled as in training.

        The id embedding (where the tower has one) and demographics are the user's where
        ``user_id`` is known; a visitor ("" or an id the model never saw) gets the mean training
        user's id embedding and unknown demographics. Without them (the default) the query is a
        function of the history alone, so a visitor who brings a known user's history gets that
        user's query. Without history features it is the user's query, or the fallback query.
        """
        if not self.history_features:
            return self.serve(user_id)
        rows = self.user.rows(user_id)
        parts = []
        if self.user_embedding:
            own = self.user.embed_rows(rows)
            mean = tf.broadcast_to(tf.cast(self.mean_user_embedding, own.dtype), tf.shape(own))
            parts.append(tf.where((rows > 0)[:, None], own, mean))
        if self.user_features:
            parts += self.demographics(rows)
        pooled, counts = self.history_pooling.pool(tf.cast(history, tf.int64).to_tensor(0), with_counts=True)
        parts.append(pooled)
        return self._output(parts, counts)

    def _output(self, parts: list[tf.Tensor], counts: tf.Tensor | None = None) -> tf.Tensor:
        """The query from its features; ``counts``: how many movies each history pools (for the
        short-history query)."""
        short = None
        if self.short_history and counts is not None:
            # Two projections in one layer: a long history's pooled mean meets the first's weights, a
            # short one's the second's (and its own bias).
            short = tf.cast(counts <= self.short_history, parts[-1].dtype)[:, None]
            pooled = parts[-1]
            parts = parts[:-1] + [(1.0 - short) * pooled, short * pooled, short]
        output = self.project(tf.concat(parts, axis=1)) if self.project is not None else parts[0]
        output = tf.cast(output, tf.float32)
        output = tf.math.l2_normalize(output, axis=1) if self.normalize else output
        if self.bias_column:
            bias = tf.ones_like(output[:, :1])
            if short is not None:
                bias += tf.cast(short, tf.float32) * (self.short_bias - 1.0)
            output = tf.concat([output, bias], axis=1)
        return output

    def known(self, user_id: tf.Tensor) -> tf.Tensor:
        """True where the user had training ratings."""
        return self.user.known(user_id)


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
        self.movie = IdEmbedding(vocab.movie_ids, dim, regularizer=regularizer, name="movie")
        self.normalize = normalize
        self.features = MovieFeatures(vocab, movies, dim, name="movie_features") if movie_features else None
        self.project = tf.keras.layers.Dense(dim, name="project") if movie_features else None
        self.dim = dim
        self.bias = tf.keras.layers.Embedding(len(vocab.movie_ids) + 1, 1, embeddings_initializer="zeros",
                                              name="movie_bias") if movie_bias else None

    def call(self, movie_id: tf.Tensor) -> tf.Tensor:
        rows = self.movie.rows(movie_id)
        output = self.movie.embed_rows(rows)
        if self.features is not None:
            output = self.project(tf.concat([tf.cast(output, tf.float32), self.features(movie_id)], axis=1))
        output = tf.cast(output, tf.float32)
        output = tf.math.l2_normalize(output, axis=1) if self.normalize else output
        if self.bias is not None:
            output = tf.concat([output, tf.cast(self.bias(rows), tf.float32)], axis=1)
        return output

    def known(self, movie_id: tf.Tensor) -> tf.Tensor:
        """True where the movie had training ratings."""
        return self.movie.known(movie_id)

    def rows(self, movie_id: tf.Tensor) -> tf.Tensor:
        """Movie-vocabulary rows (0 for movies without training ratings)."""
        return self.movie.rows(movie_id)
