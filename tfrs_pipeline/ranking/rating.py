"""The ranking stage: predicts a user's rating of a movie, trained with ``tfrs.tasks.Ranking``.

prediction = global mean + user bias + movie bias
             + (user embedding + mean history embedding) . movie embedding
             + MLP([user, movie, user * movie, history, genres/year/title, demographics])

The biases and the factorized term are the classic biased matrix factorization (with
SVD++'s implicit-feedback history); the MLP learns what they miss. Outside training,
predictions are clipped to the rating scale.

Stacked on explicit ratings (``rating.stack_mf``): the served rating is
``clip(a * network + b * MF + c)``, where MF is biased matrix factorization fitted by ALS
(:class:`~tfrs_pipeline.ranking.factorization.BiasedMatrixFactorization`) and ``a, b, c`` are fitted by
least squares on the validation hold-out, which neither model trained on
(:func:`stack_matrix_factorization`). The two make different errors, so the blend beats both.

On implicit feedback (no ratings) the same network is a relevance head instead: the
prediction is a logit, trained with binary cross-entropy on each interaction against
``NEGATIVES_PER_POSITIVE`` movies drawn uniformly from the catalog, and served as a
probability (0 to 1) in place of a predicted rating.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_pipeline.config import RatingConfig
from tfrs_pipeline.features.dataset import Prepared, make_dataset
from tfrs_pipeline.features.layers import HistoryPooling, IdEmbedding, MovieFeatures, UserFeatures
from tfrs_pipeline.features.tables import UserTable
from tfrs_pipeline.training.backup import StageBackup
from tfrs_pipeline.training.loop import TrainingResult, build_optimizer, fit, in_float32
from tfrs_pipeline.training.step import ScaledLossModel

#: Sampled negatives per interaction when the ranking stage learns relevance (implicit feedback).
NEGATIVES_PER_POSITIVE = 4


class RatingModel(ScaledLossModel):
    """Rating prediction for (user id, movie id) pairs.

    Args:
        prepared: vocabularies, feature tables, rating scale and global mean.
        config: dimensions, features, regularisation.
    """

    def __init__(self, prepared: Prepared, config: RatingConfig) -> None:
        super().__init__()
        self.config = config
        vocab, dim = prepared.vocab, config.embedding_dim
        # Under a distribution strategy every replica adds the penalty and gradients are summed.
        self.replicas = tf.distribute.get_strategy().num_replicas_in_sync
        l2 = tf.keras.regularizers.l2(config.l2 / self.replicas) if config.l2 else None
        self.implicit = bool(prepared.implicit)
        self.low, self.high = (0.0, 1.0) if self.implicit else (float(v) for v in prepared.rating_scale)
        # The movies relevance negatives are drawn from (implicit feedback only).
        self.movie_ids = tf.constant(list(vocab.movie_ids)) if self.implicit else None
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
                                               sample=config.history_sample, name="history")
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
        # The stacked matrix factorization, by vocabulary row: zero weight until use_matrix_factorization.
        self.mf_users = tf.Variable(tf.zeros([len(vocab.user_ids) + 1, 1]), trainable=False, shape=[None, None],
                                    name="mf_users")
        self.mf_movies = tf.Variable(tf.zeros([len(vocab.movie_ids) + 1, 1]), trainable=False, shape=[None, None],
                                     name="mf_movies")
        self.mf_mean = tf.Variable(0.0, trainable=False, name="mf_mean")
        # (network, matrix factorization, constant): the served rating's blend.
        self.stack_weights = tf.Variable([1.0, 0.0, 0.0], trainable=False, name="stack_weights")
        # Summed here and divided by the global batch in compute_loss: the mean on one device,
        # and what tf.distribute needs (it sums the replicas' gradients).
        summed = tf.keras.losses.Reduction.SUM
        self.task = in_float32(lambda: tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=summed) if self.implicit
            else tf.keras.losses.MeanSquaredError(reduction=summed),
            metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc") if self.implicit
                     else tf.keras.metrics.RootMeanSquaredError()]))

    def use_history(self, users: UserTable) -> None:
        """Predicts with another history table (the whole training side's, at export)."""
        if self.history_pooling is not None:
            self.history_pooling.set_history(users)

    def use_matrix_factorization(self, mf, vocab, weights) -> None:
        """Stacks a fitted :class:`~tfrs_pipeline.ranking.factorization.BiasedMatrixFactorization`: served ratings become
        ``clip(weights[0] * network + weights[1] * mf + weights[2])``.

        Args:
            mf: the fitted factorization; users and movies it does not know keep the other side's bias.
            vocab: this model's vocabularies (the factors are stored by vocabulary row).
            weights: the blend's (network, matrix factorization, constant) weights.
        """
        import numpy as np

        def by_row(factors, known, ids, unknown):
            rows = known.get_indexer(np.asarray(ids).astype(str))
            table = np.vstack([factors, unknown])[rows]  # row -1 (not in the factorization) takes the unknown vector
            return np.vstack([unknown, table]).astype(np.float32)  # row 0: ids outside the vocabulary

        width = mf.p_.shape[1]  # [factors, bias, 1] for users, [factors, 1, bias] for movies
        self.mf_users.assign(by_row(mf.p_, mf.users_, vocab.user_ids, np.eye(1, width, width - 1)))
        self.mf_movies.assign(by_row(mf.q_, mf.movies_, vocab.movie_ids, np.eye(1, width, width - 2)))
        self.mf_mean.assign(mf.mean_)
        self.stack_weights.assign(np.asarray(weights, np.float32))

    def matrix_factorization(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        """The stacked factorization's unclipped prediction [batch] (the global mean before it is stacked)."""
        users = tf.gather(self.mf_users, self.user.rows(inputs["user_id"]))
        movies = tf.gather(self.mf_movies, self.movie.rows(inputs["movie_id"]))
        return self.mf_mean + tf.reduce_sum(users * movies, axis=1)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False, history: tf.Tensor | None = None) -> tf.Tensor:
        """Predicted ratings [batch] for ``inputs["user_id"]`` and ``inputs["movie_id"]`` (relevance on implicit data).

        ``history``: each example's pooled history [batch, dim] (:meth:`rate`); default: the user's stored one.
        """
        prediction = self.logits(inputs, training=training, history=history)
        if training:
            return prediction
        if self.implicit:
            return tf.sigmoid(prediction)
        network = tf.clip_by_value(prediction, self.low, self.high)
        mf = tf.clip_by_value(self.matrix_factorization(inputs), self.low, self.high)
        weights = self.stack_weights
        # Weights (1, 0, 0) until stacked: exactly the network's rating.
        return tf.clip_by_value(weights[0] * network + weights[1] * mf + weights[2], self.low, self.high)

    def rate(self, user_id: tf.Tensor, history: tf.RaggedTensor, movie_ids: tf.Tensor) -> tf.Tensor:
        """Predicted ratings [batch, N] of ``movie_ids`` [batch, N] for users who rated ``history``
        (movie-vocabulary rows, ragged [batch, None]) rather than their stored history: a known user's
        ratings made since training count, and a visitor ("" or an unknown id) is rated as an
        average rater with that history. For a known user's own stored history this is :meth:`call`.
        """
        batch, width = tf.shape(movie_ids)[0], tf.shape(movie_ids)[1]
        users = tf.reshape(tf.repeat(user_id[:, None], width, axis=1), [-1])
        inputs = {"user_id": users, "movie_id": tf.reshape(movie_ids, [-1])}
        pooled = None
        if self.history_pooling is not None:
            pooled = self.history_pooling.pool(tf.cast(history, tf.int64).to_tensor(0))
            pooled = tf.repeat(pooled, width, axis=0)
        return tf.reshape(tf.cast(self(inputs, history=pooled), tf.float32), [batch, width])

    def logits(self, inputs: dict[str, tf.Tensor], training: bool = False, history: tf.Tensor | None = None) -> tf.Tensor:
        """The unclipped prediction [batch]: a rating, or a relevance logit on implicit data."""
        user_rows = self.user.rows(inputs["user_id"])
        movie_rows = self.movie.rows(inputs["movie_id"])
        user = tf.cast(self.user.embed_rows(user_rows), tf.float32)
        movie = tf.cast(self.movie.embed_rows(movie_rows), tf.float32)
        taste = user
        parts = [user, movie, user * movie]
        if self.history_pooling is not None:
            if history is None:
                # Leave the rated movie out of its own history (a no-op for pairs not in training).
                history = self.history_pooling(user_rows, movie_rows, training=training)
            history = tf.cast(history, tf.float32)
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
        return tf.cast(prediction, tf.float32)

    # Traced without AutoGraph (no control flow on tensors): converting took 1.1 s of the first epoch at 100K.
    @tf.autograph.experimental.do_not_convert
    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if self.implicit:
            return self._relevance_loss(features, training)
        labels = features["user_rating"]
        # [batch, 1]: Keras' MSE averages over the last axis, which must be the rating, not the batch.
        predictions = self(features, training=training)[:, None]
        total = in_float32(lambda: self.task(labels=labels[:, None], predictions=predictions))
        return total / tf.cast(tf.shape(labels)[0] * self.replicas, total.dtype)


    def _relevance_loss(self, features: dict[str, tf.Tensor], training: bool) -> tf.Tensor:
        """Binary cross-entropy of each interaction (label 1) against uniformly drawn movies (label 0)."""
        users = features["user_id"]
        batch = tf.shape(users)[0]
        drawn = tf.random.uniform([batch * NEGATIVES_PER_POSITIVE], 0, tf.shape(self.movie_ids)[0], dtype=tf.int32)
        inputs = {"user_id": tf.concat([users, tf.repeat(users, NEGATIVES_PER_POSITIVE)], axis=0),
                  "movie_id": tf.concat([features["movie_id"], tf.gather(self.movie_ids, drawn)], axis=0)}
        labels = tf.concat([tf.ones([batch]), tf.zeros([batch * NEGATIVES_PER_POSITIVE])], axis=0)[:, None]
        # The logits while training, in evaluation too: the AUC and loss take logits.
        logits = self.logits(inputs, training=training)[:, None]
        total = in_float32(lambda: self.task(labels=labels, predictions=logits))
        return total / tf.cast(tf.shape(labels)[0] * self.replicas, total.dtype)


def train_rating_model(prepared: Prepared, config: RatingConfig, *, seed: int = 7, log_dir: str | Path | None = None,
                  verbose: int = -1, strategy: tf.distribute.Strategy | None = None,
                  backup: StageBackup | None = None) -> TrainingResult:
    """Trains the ranking model; early-stops on validation RMSE (best weights kept)."""
    tf.keras.utils.set_random_seed(seed)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = RatingModel(prepared, config)
        model({"user_id": tf.constant(prepared.vocab.user_ids[:1]), "movie_id": tf.constant(prepared.vocab.movie_ids[:1])})
        model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
        build_optimizer(model)
    train = make_dataset(prepared.fitting, config.batch_size, shuffle=True, seed=seed)
    validation = make_dataset(prepared.validation, 8192) if len(prepared.validation) else None
    metric, mode = ("auc", "max") if prepared.implicit else ("root_mean_squared_error", "min")
    return fit(model, train, validation, epochs=config.epochs, monitor=f"val_{metric}", mode=mode,
               patience=config.patience, examples=len(prepared.fitting), log_dir=log_dir, verbose=verbose,
               stage="rating model", shown=(metric, f"val_{metric}"), reduce_lr_on_plateau=config.reduce_lr_on_plateau,
               backup=backup, settings="rating")


def stack_matrix_factorization(model: RatingModel, prepared: Prepared, config: RatingConfig) -> dict | None:
    """Fits biased matrix factorization on the fitting part and the blend on the validation hold-out.

    The blend is kept only where it lowers the hold-out RMSE of the network alone.

    Returns:
        What was measured (seconds, hold-out RMSE of each and of the blend, the weights), or
        None where there is nothing to stack on (implicit feedback, no hold-out).
    """
    import time

    import numpy as np

    from tfrs_pipeline.metrics import rmse

    if prepared.implicit or not config.stack_mf or not len(prepared.validation):
        return None
    start = time.perf_counter()
    mf = _factorization(prepared, config).fit(prepared.fitting)
    holdout = prepared.validation
    network = predict_ratings(model, holdout["user_id"], holdout["movie_id"]).astype(np.float64)
    factorized = mf.predict(holdout["user_id"], holdout["movie_id"])
    truth = holdout["rating"].to_numpy(np.float64)
    weights = np.linalg.lstsq(np.stack([network, factorized, np.ones_like(network)], axis=1), truth, rcond=None)[0]
    stacked = np.clip(weights[0] * network + weights[1] * factorized + weights[2], *prepared.rating_scale)
    record = {"validation_rmse": {"network": rmse(network, truth), "matrix_factorization": rmse(factorized, truth),
                                  "stacked": rmse(stacked, truth)}}
    record["stacked"] = bool(record["validation_rmse"]["stacked"] < record["validation_rmse"]["network"])
    record["weights"] = [float(w) for w in weights] if record["stacked"] else [1.0, 0.0, 0.0]
    if record["stacked"]:
        model.use_matrix_factorization(mf, prepared.vocab, record["weights"])
    record["seconds"] = time.perf_counter() - start
    return record


def _factorization(prepared: Prepared, config: RatingConfig):
    """The stacked factorization, unfitted: ``rating.mf_factors``, ``rating.mf_regularization``, the data's scale."""
    from tfrs_pipeline.ranking.factorization import BiasedMatrixFactorization

    return BiasedMatrixFactorization(factors=config.mf_factors, regularization=config.mf_regularization,
                                     rating_scale=tuple(prepared.rating_scale))


def refit_matrix_factorization(model: RatingModel, prepared: Prepared, config: RatingConfig, train) -> float:
    """Refits the stacked factorization on ``train`` (the whole training side, at export), keeping the
    blend's weights; returns the seconds it took."""
    import time

    start = time.perf_counter()
    mf = _factorization(prepared, config).fit(train)
    model.use_matrix_factorization(mf, prepared.vocab, model.stack_weights.numpy())
    return time.perf_counter() - start


def predict_ratings(model: RatingModel, user_ids, movie_ids, batch_size: int = 16384):
    """Clipped predicted ratings for parallel arrays of user and movie ids (numpy, float32)."""
    import numpy as np

    user_ids = np.asarray(user_ids).astype(str)
    movie_ids = np.asarray(movie_ids).astype(str)
    return np.concatenate([
        model({"user_id": tf.constant(user_ids[i : i + batch_size]), "movie_id": tf.constant(movie_ids[i : i + batch_size])}).numpy()
        for i in range(0, len(user_ids), batch_size)
    ]) if len(user_ids) else np.zeros(0, np.float32)
