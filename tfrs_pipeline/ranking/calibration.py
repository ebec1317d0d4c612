"""The list ranker's start: the blend of its two sources it begins training from.

Before the relevance head trains, its base score, the retrieval logit plus a weight times the
item-item z-score, gets the weight whose order has the best NDCG@10 on the training lists
(:func:`choose_item_weight`, from :data:`ITEM_WEIGHTS`) and the scale with the lowest softmax
cross-entropy on them (:func:`calibrate_base_scale`). Scaling keeps each list's order; without it
the first epochs spend the head's steps on shrinking an overconfident base.

Examples:
    >>> import numpy as np
    >>> scores = np.array([[3.0, 2.0, 1.0]])  # one list of three candidates; the user rated the second
    >>> valid, labels = np.ones((1, 3), bool), np.array([[0.0, 1.0, 0.0]])
    >>> round(list_cross_entropy(scores, valid, labels), 3)
    1.408
    >>> round(calibrate_base_scale(scores, valid, labels), 2)  # flatter: the best-scored one was not the rated one
    0.0
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from tfrs_pipeline.metrics import ndcg_of_lists, top_k_columns
from tfrs_pipeline.ranking.list_ranker import base_scores

#: Weights of the item-item z-score tried for the ranker's base score (0: retrieval's order).
ITEM_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def list_cross_entropy(scores: np.ndarray, valid: np.ndarray, labels: np.ndarray) -> float:
    """The mean softmax cross-entropy of ``scores`` [lists, slots] against each list's labels (as training computes it)."""
    scores = np.where(valid, scores, -np.inf)
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_softmax = np.where(valid, shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), 0.0)
    targets = labels / np.maximum(labels.sum(axis=1, keepdims=True), 1e-9)
    return float(-(targets * log_softmax).sum(axis=1).mean())


def calibrate_base_scale(base: np.ndarray, valid: np.ndarray, labels: np.ndarray) -> float:
    """The factor of the base scores [lists, slots] with the lowest softmax cross-entropy on these lists
    (between e^-6 and e^6; the cross-entropy is convex in it). Scaling keeps each list's order."""
    found = minimize_scalar(lambda log_scale: list_cross_entropy(np.exp(log_scale) * base, valid, labels),
                            bounds=(-6.0, 6.0), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(found.x))


def top_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The labels [lists, k] of each list's ``k`` best-scored slots, best first (ties: the earlier slot)."""
    return np.take_along_axis(labels, top_k_columns(scores, k), axis=1)


def choose_item_weight(features: np.ndarray, valid: np.ndarray, labels: np.ndarray, relevant: np.ndarray,
                       weights=ITEM_WEIGHTS, k: int = 10) -> tuple[float, dict]:
    """The weight of the base score's item-item term with the best NDCG@k on these lists (the first of ties),
    and the NDCG@k of each weight: the ranker starts from this blend of its two sources and learns corrections."""
    found = {}
    for weight in weights:
        scores = np.where(valid, base_scores(features, weight), -np.inf)
        found[weight] = ndcg_of_lists(top_hits(scores, labels, k), relevant)
    return max(found, key=lambda weight: (found[weight], -weight)), found
