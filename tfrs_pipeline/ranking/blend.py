"""The two-stage blend: which ``k`` of the retrieved candidates are kept, and in what order they are shown.

The kept ``k`` are the candidates with the highest ``retrieval logit + w * predicted rating``
(``w = 0`` is retrieval's own order; a large ``w`` sorts by predicted rating alone); they
are shown sorted by predicted rating. :func:`blend_top_k` is the one implementation:
the exported pipeline calls it, and so does :func:`choose_rating_weight`, which picks
``w`` on the validation hold-out at training time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_pipeline.ids import rows_per_block, users_of
from tfrs_pipeline.metrics import hit_ranks, hit_rate_at_k
from tfrs_pipeline.retrieval.candidates import CandidateRetriever

#: Rating weights tried on validation; 0 keeps retrieval's order, 1e4 is a pure sort by predicted rating.
RATING_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 1e4)


def logit_scale(normalize: bool, temperature: float) -> float:
    """What turns retrieval scores into the logits the retrieval loss was trained on."""
    return 1.0 / temperature if normalize else 1.0


def rate_candidates(rating_model, user_id: tf.Tensor, movie_ids: tf.Tensor) -> tf.Tensor:
    """Predicted ratings [batch, n] of each user's candidate ``movie_ids`` [batch, n]."""
    batch, width = tf.shape(movie_ids)[0], tf.shape(movie_ids)[1]
    users = tf.reshape(tf.repeat(user_id[:, None], width, axis=1), [-1])
    predictions = rating_model({"user_id": users, "movie_id": tf.reshape(movie_ids, [-1])})
    return tf.reshape(predictions, [batch, width])


def blend_top_k(retrieval_scores: tf.Tensor, predicted: tf.Tensor, scale, rating_weight, k) -> tf.Tensor:
    """Positions [batch, min(k, n)] of the kept candidates, best predicted rating first.

    Args:
        retrieval_scores: index scores [batch, n]; ``-inf`` marks a slot past the user's unseen movies.
        predicted: predicted ratings [batch, n] of the same candidates.
        scale: retrieval score -> logit factor (:func:`logit_scale`).
        rating_weight: ``w`` of the blend.
        k: how many to keep.
    """
    blended = retrieval_scores * scale + rating_weight * predicted
    _, kept = tf.math.top_k(blended, k=tf.minimum(k, tf.shape(predicted)[1]))
    kept_ratings = tf.gather(predicted, kept, batch_dims=1)
    # Empty slots (-inf retrieval score) stay last whatever their predicted rating.
    kept_ratings = tf.where(tf.math.is_inf(tf.gather(retrieval_scores, kept, batch_dims=1)), -np.inf, kept_ratings)
    _, order = tf.math.top_k(kept_ratings, k=tf.shape(kept)[1])
    return tf.gather(kept, order, batch_dims=1)


def choose_rating_weight(retriever: CandidateRetriever, rating_model, validation: pd.DataFrame, num_candidates: int,
                         scale: float, k: int = 10, weights=RATING_WEIGHTS) -> tuple[float, dict[float, float]]:
    """The rating weight with the best validation hit rate@k (ties: the larger weight, more rating-led).

    ``retriever`` must exclude each user's fitting-part movies; ``validation`` supplies the
    relevant ones. Weight 0 keeps retrieval's own order, so the chosen weight is never
    worse than retrieval alone on validation.

    Returns:
        The weight, and the validation hit rate@k for every weight tried.
    """
    if len(validation) == 0:
        return 1.0, {}
    users = users_of(validation)
    scores, ids, ratings = [], [], []
    block = rows_per_block(retriever.index.num_candidates, 1024)
    for start in range(0, len(users), block):
        batch = tf.constant(users[start : start + block].astype(str))
        movie_ids, retrieval_scores, _ = retriever(batch, tf.constant(num_candidates))
        scores.append(retrieval_scores)
        ids.append(movie_ids)
        ratings.append(rate_candidates(rating_model, batch, movie_ids))
    scores, ids, ratings = tf.concat(scores, 0), tf.concat(ids, 0), tf.concat(ratings, 0)
    recall = {}
    for weight in weights:
        kept = blend_top_k(scores, ratings, tf.constant(scale, tf.float32), tf.constant(weight, tf.float32), k)
        lists = tf.gather(ids, kept, batch_dims=1).numpy()
        recall[weight] = hit_rate_at_k(hit_ranks(users, lists, validation), k)
    best = max(recall.values())
    return max(w for w, r in recall.items() if r >= best), recall
