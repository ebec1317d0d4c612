"""The seen-aware BruteForce index: exact exclusion, call-time k."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_pipeline.retrieval.index import SeenAwareBruteForce


def _index():
    candidates = tf.constant(np.diag([5.0, 4.0, 3.0, 2.0, 1.0]).astype(np.float32))
    return SeenAwareBruteForce(k=3).reindex(candidates, tf.constant(["a", "b", "c", "d", "e"]))


def test_top_k_order_and_k_at_call_time():
    index = _index()
    queries = tf.ones([2, 5])
    for k in (1, 3, 5):
        scores, ids = index(queries, k)
        assert ids.numpy()[0].tolist() == [b"a", b"b", b"c", b"d", b"e"][:k]
        assert np.all(np.diff(scores.numpy(), axis=1) <= 0)


def test_exclusion_removes_exactly_each_users_seen_movies():
    index = _index()
    seen = tf.ragged.constant([[0, 2], []], dtype=tf.int64)
    _, ids = index.query_excluding(tf.ones([2, 5]), seen, 3)
    assert ids.numpy().tolist() == [[b"b", b"d", b"e"], [b"a", b"b", b"c"]]


def test_k_beyond_the_catalog_is_clamped_and_excluded_movies_come_last_with_minus_infinity():
    index = _index()
    scores, ids = index.query_excluding(tf.ones([1, 5]), tf.ragged.constant([[0, 1, 2, 3]], dtype=tf.int64), 50)
    assert ids.shape == (1, 5) and ids.numpy()[0, 0] == b"e"
    assert np.isinf(scores.numpy()[0, 1:]).all()


def test_reindex_refreshes_embeddings_in_place():
    index = _index()
    weights_before = len(index.weights)
    index.reindex(tf.constant(np.diag([1.0, 2.0, 3.0, 4.0, 5.0]).astype(np.float32)), tf.constant(list("abcde")))
    assert len(index.weights) == weights_before
    _, ids = index(tf.ones([1, 5]), 1)
    assert ids.numpy()[0, 0] == b"e"
