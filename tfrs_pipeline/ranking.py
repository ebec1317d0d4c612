"""The ranking stage: predicts a user's rating of a movie, trained with ``tfrs.tasks.Ranking``.

prediction = global mean + user bias + movie bias
             + (user embedding + mean history embedding) . movie embedding
             + MLP([user, movie, user * movie, history, genres/year/title, demographics])

The biases and the factorized term are the classic biased matrix factorization (with
SVD++'s implicit-feedback history); the MLP learns what they miss. Outside training,
predictions are clipped to the rating scale.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_pipeline.config import RankingConfig
from tfrs_pipeline.features import Prepared, UserTable, make_dataset
from tfrs_pipeline.layers import HistoryPooling, IdEmbedding, MovieFeatures, UserFeatures
from tfrs_pipeline.training_loop import TrainingResult, fit, in_float32


class RankingModel(tfrs.Model):
    """Rating prediction for (user id, movie id) pairs.

    Args:
        prepared: vocabularies, feature tables, rating scale and global mean.
        config: dimensions, features, regularisation.
    """

    def __init__(self, prepared: Prepared, config: RankingConfig) -> None:
        super().__init__()
        self.config = config
        vocab, dim = prepared.vocab, config.embedding_dim
        # Under a distribution strategy every replica adds the penalty and gradients are summed.
        self.replicas = tf.distribute.get_strategy().num_replicas_in_sync
        l2 = tf.keras.regularizers.l2(config.l2 / self.replicas) if config.l2 else None
        self.low, self.high = (float(v) for v in prepared.rating_scale)
        self.global_mean = tf.constant(prepared.global_mean, tf.float32)
        # One initializer instance per table: an unseeded instance repeats its values when reused.
        self.user = IdEmbedding(vocab.user_ids, dim, initializer=tf.keras.initializers.RandomNormal(stddev=0.01),
                                regularizer=l2, name="user")
        self.movie = IdEmbedding(vocab.movie_ids, dim, initializer=tf.keras.initializers.RandomNormal(stddev=0.01),
                                 regularizer=l2, name="movie")
        self.user_bias = tf.keras.layers.Embedding(len(vocab.user_ids) + 1, 1, embeddings_initializer="zeros",
                                                   embeddings_regularizer=l2, name="user_bias")
        self.movie_bias = tf.keras.layers.Embedding(len(vocab.movie_ids) + 1, 1, embeddings_initializer="zeros",
                                                    embeddings_regularizer=l2, name="movie_bias")
        self.history_pooling = (HistoryPooling(prepared.users, len(vocab.movie_ids) + 1, dim, l2=config.l2 / self.replicas,
                                               name="history")
                        if config.history_features else None)
        self.movie_features = MovieFeatures(vocab, prepared.movies, dim, name="movie_features") if config.side_features else None
        # Narrower demographic embeddings than the query tower's (8, 4, 8): here they join a wider MLP input.
        self.demographics = (UserFeatures(vocab, prepared.users, dims=(4, 2, 4), name="demographics")
                             if config.side_features else None)
        self.cross = tfrs.layers.dcn.Cross(name="cross") if config.cross_layer else None
        layers = []
        for units in config.hidden_units:
            layers += [tf.keras.layers.Dense(units, activation="relu", kernel_regularizer=l2),
                       tf.keras.layers.Dropout(config.dropout)]
        layers.append(tf.keras.layers.Dense(1, kernel_initializer="zeros", dtype="float32"))
        self.mlp = tf.keras.Sequential(layers, name="mlp")
        # Summed here and divided by the global batch in compute_loss: the mean on one device,
        # and what tf.distribute needs (it sums the replicas' gradients).
        self.task = in_float32(lambda: tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.RootMeanSquaredError()]))

    def use_history(self, users: UserTable) -> None:
        """Predicts with another history table (the whole training side's, at export)."""
        if self.history_pooling is not None:
            self.history_pooling.set_history(users)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Predicted ratings [batch] for ``inputs["user_id"]`` and ``inputs["movie_id"]``."""
        user_rows = self.user.rows(inputs["user_id"])
        movie_rows = self.movie.rows(inputs["movie_id"])
        user = tf.cast(self.user.embed_rows(user_rows), tf.float32)
        movie = tf.cast(self.movie.embed_rows(movie_rows), tf.float32)
        taste = user
        parts = [user, movie, user * movie]
        if self.history_pooling is not None:
            # Leave the rated movie out of its own history (a no-op for pairs not in training).
            history = tf.cast(self.history_pooling(user_rows, movie_rows), tf.float32)
            taste = user + history
            parts.append(history)
        if self.movie_features is not None:
            parts.append(self.movie_features(inputs["movie_id"]))
            parts += self.demographics(user_rows)
        features = tf.concat([tf.cast(p, tf.float32) for p in parts], axis=1)
        if self.cross is not None:
            features = self.cross(features)
        prediction = (
            self.global_mean
            + tf.squeeze(tf.cast(self.user_bias(user_rows), tf.float32) + tf.cast(self.movie_bias(movie_rows), tf.float32), axis=1)
            + tf.reduce_sum(taste * movie, axis=1)
            + tf.squeeze(tf.cast(self.mlp(features, training=training), tf.float32), axis=1)
        )
        prediction = tf.cast(prediction, tf.float32)
        return prediction if training else tf.clip_by_value(prediction, self.low, self.high)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        labels = features["user_rating"]
        # [batch, 1]: Keras' MSE averages over the last axis, which must be the rating, not the batch.
        predictions = self(features, training=training)[:, None]
        total = in_float32(lambda: self.task(labels=labels[:, None], predictions=predictions))
        return total / tf.cast(tf.shape(labels)[0] * self.replicas, total.dtype)


def train_ranking(prepared: Prepared, config: RankingConfig, *, seed: int = 7, log_dir: str | Path | None = None,
                  verbose: int = -1, strategy: tf.distribute.Strategy | None = None) -> TrainingResult:
    """Trains the ranking model; early-stops on validation RMSE (best weights kept)."""
    tf.keras.utils.set_random_seed(seed)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = RankingModel(prepared, config)
        model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    train = make_dataset(prepared.train, config.batch_size, shuffle=True, seed=seed)
    validation = make_dataset(prepared.validation, 8192) if len(prepared.validation) else None
    return fit(model, train, validation, epochs=config.epochs, monitor="val_root_mean_squared_error", mode="min",
               patience=config.patience, examples=len(prepared.train), log_dir=log_dir, verbose=verbose,
               stage="ranking", shown=("root_mean_squared_error", "val_root_mean_squared_error"),
               reduce_lr_on_plateau=config.reduce_lr_on_plateau)


def predict_ratings(model: RankingModel, user_ids, movie_ids, batch_size: int = 16384):
    """Clipped predicted ratings for parallel arrays of user and movie ids (numpy, float32)."""
    import numpy as np

    user_ids = np.asarray(user_ids).astype(str)
    movie_ids = np.asarray(movie_ids).astype(str)
    return np.concatenate([
        model({"user_id": tf.constant(user_ids[i : i + batch_size]), "movie_id": tf.constant(movie_ids[i : i + batch_size])}).numpy()
        for i in range(0, len(user_ids), batch_size)
    ]) if len(user_ids) else np.zeros(0, np.float32)
