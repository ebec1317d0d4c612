"""The loop both stages train in: the optimizer for embedding tables, and progress a long epoch shows."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_pipeline.training.loop import Progress, steps_per_call
from tfrs_pipeline.training.optimizers import LazyAdam


def test_lazy_adam_moves_only_the_embedding_rows_a_batch_uses():
    def two_steps(optimizer):
        table, dense = tf.Variable(np.ones((4, 2), np.float32)), tf.Variable(np.ones(3, np.float32))
        optimizer.apply_gradients([(tf.IndexedSlices(tf.constant([[1.0, -1.0], [2.0, 0.5]]), tf.constant([0, 2]),
                                                     tf.constant([4, 2])), table), (tf.ones(3), dense)])
        after_first = table.numpy().copy()
        optimizer.apply_gradients([(tf.IndexedSlices(tf.constant([[0.5, 0.5]]), tf.constant([1]), tf.constant([4, 2])),
                                    table), (tf.ones(3), dense)])
        return after_first, table.numpy(), dense.numpy()

    lazy_first, lazy, lazy_dense = two_steps(LazyAdam(learning_rate=0.1))
    adam_first, adam, adam_dense = two_steps(tf.keras.optimizers.Adam(learning_rate=0.1))
    np.testing.assert_allclose(lazy_first, adam_first, rtol=1e-6)  # one step from zero moments: the same move
    np.testing.assert_allclose(lazy[[0, 2]], lazy_first[[0, 2]])  # rows outside the second batch stay put ...
    assert np.abs(adam[[0, 2]] - adam_first[[0, 2]]).max() > 0.01  # ... where Adam's momentum still moves them
    np.testing.assert_allclose(lazy[1], adam[1], rtol=1e-6)
    np.testing.assert_allclose(lazy[3], [1.0, 1.0])
    np.testing.assert_allclose(lazy_dense, adam_dense, rtol=1e-6)  # dense variables: plain Adam


def test_progress_in_logs_reports_within_a_long_epoch(capsys):
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((64, 2), np.float32), np.ones((64, 1), np.float32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[Progress("toy", 64, ("loss",), 2, report_seconds=0)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines[:4]] == [f"toy epoch 1/1: batch {b}/4" for b in (1, 2, 3, 4)]
    assert "examples/s" in lines[0]
    assert lines[-1].startswith("toy epoch 1/1: loss ")


def test_progress_counts_every_batch_when_keras_runs_several_per_call(capsys):
    # retrieval trains with steps_per_execution: Keras reports once per call, with the last batch
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=4)
    x, y = np.ones((128, 2), np.float32), np.ones((128, 1), np.float32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[Progress("toy", 128, ("loss",), 2, report_seconds=0)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines[:2]] == ["toy epoch 1/1: batch 4/8", "toy epoch 1/1: batch 8/8"]
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[Progress("toy", 128, ("loss",), 1, refresh_seconds=0)])
    shown = capsys.readouterr().out.rstrip().split("\r")
    assert [line.split("  ")[0] for line in shown[1:3]] == ["toy epoch 1/1: batch 4/8", "toy epoch 1/1: batch 8/8"]
    assert shown[-1].startswith("toy epoch 1/1: loss ")


def test_several_steps_per_call_only_where_the_longer_trace_pays():
    one_device = tf.distribute.get_strategy()
    assert steps_per_call(16, one_device, examples=80_000, batch_size=2048, epochs=20) == 16  # 800 planned steps
    assert steps_per_call(16, one_device, examples=500, batch_size=64, epochs=3) == 1  # 24
    two_replicas = type("TwoReplicas", (), {"num_replicas_in_sync": 2})()
    assert steps_per_call(16, two_replicas, examples=80_000, batch_size=2048, epochs=20) == 1
