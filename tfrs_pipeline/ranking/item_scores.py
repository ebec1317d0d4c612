"""The item-item model inside the exported graph: scores of the whole catalog from a history.

:class:`ItemItemScores` holds the kept weights of
:class:`~tfrs_pipeline.ranking.neighbours.ItemNeighbours` as a sparse matrix in CSR form
(row offsets, target columns, weights) and sums, for each history, the rows of the movies it
holds: ``x_u W`` over the catalog, computed per request. :class:`DenseItemItemScores` does the
same from a dense matrix, for catalogs small enough to hold every weight
(:data:`~tfrs_pipeline.ranking.neighbours.DENSE_CELLS`), several times faster: a sparse-dense
product for a few histories, a dense one from :data:`DENSE_PRODUCT_BATCH` on. :func:`item_item_scores` picks the one a fitted model asks for. A known user's history
and a visitor's are scored the same way, and nothing grows with the number of users.

Examples:
    >>> from scipy import sparse
    >>> weights = sparse.csr_matrix(np.array([[0, 0, 0], [0, 0, 0.5], [0, 2.0, 0]], np.float32))
    >>> scores = ItemItemScores(weights)
    >>> scores(tf.ragged.constant([[1], [1, 2]], dtype=tf.int64)).numpy()  # catalog rows rated
    array([[0. , 0. , 0.5],
           [0. , 2. , 0.5]], dtype=float32)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy import sparse

#: Histories whose scores are summed at once (:meth:`ItemItemScores.__call__`).
USERS_PER_STEP = 32

#: From this many histories in a call, :class:`DenseItemItemScores` multiplies dense 0/1 rows.
DENSE_PRODUCT_BATCH = 8


class ItemItemScores(tf.Module):
    """``x_u W`` for histories of catalog rows, from a sparse [rows, rows] weight matrix (row 0: unknown).

    Args:
        weights: the kept item-item weights (``scipy.sparse``; source row -> target column).
    """

    def __init__(self, weights: sparse.spmatrix) -> None:
        super().__init__(name="item_item_scores")
        csr = _csr(weights)
        self.rows = int(csr.shape[0])
        # Unknown lengths: assign swaps in the weights of a refit on the whole training side.
        self.offsets = tf.Variable(csr.indptr.astype(np.int64), trainable=False, shape=[None], name="row_offsets")
        self.targets = tf.Variable(csr.indices.astype(np.int32), trainable=False, shape=[None], name="target_rows")
        self.weights = tf.Variable(csr.data.astype(np.float32), trainable=False, shape=[None], name="weights")

    def assign(self, weights: sparse.spmatrix) -> None:
        """Takes another fit's weights over the same catalog."""
        csr = _csr(weights)
        if csr.shape[0] != self.rows:
            raise ValueError(f"item-item weights over {csr.shape[0] - 1} movies; this model has {self.rows - 1}")
        self.offsets.assign(csr.indptr.astype(np.int64))
        self.targets.assign(csr.indices.astype(np.int32))
        self.weights.assign(csr.data.astype(np.float32))

    def _entries(self, history: tf.RaggedTensor):
        """Every kept weight leaving a history movie: (history entry it leaves from, target row, weight)."""
        sources = tf.cast(history.flat_values, tf.int64)
        spans = tf.ragged.range(tf.gather(self.offsets, sources), tf.gather(self.offsets, sources + 1))
        positions = spans.flat_values
        return spans.value_rowids(), tf.cast(tf.gather(self.targets, positions), tf.int64), tf.gather(self.weights, positions)

    def __call__(self, history: tf.RaggedTensor) -> tf.Tensor:
        """Item-item scores of every catalog row [batch, rows] from each history (ragged catalog rows;
        a movie listed twice counts twice, row 0 scores nothing).

        :data:`USERS_PER_STEP` histories at a time: each gathers every kept weight leaving its
        movies (112,000 on average at ml-latest-small, 1.2 million for its heaviest user), so a
        batch of a thousand heavy users at once would hold gigabytes.
        """
        history = history.with_row_splits_dtype(tf.int64)
        batch = history.nrows()
        steps = (batch + USERS_PER_STEP - 1) // USERS_PER_STEP

        def step(index, parts):
            start = index * USERS_PER_STEP
            stop = tf.minimum(start + USERS_PER_STEP, batch)
            splits = history.row_splits[start : stop + 1]
            part = tf.RaggedTensor.from_row_splits(history.values[splits[0] : splits[-1]], splits - splits[0])
            return index + 1, parts.write(tf.cast(index, tf.int32), self._scores(part))

        parts = tf.TensorArray(tf.float32, size=tf.cast(steps, tf.int32), infer_shape=False,
                               element_shape=tf.TensorShape([None, None]))
        _, parts = tf.while_loop(lambda index, _: index < steps, step, [tf.constant(0, tf.int64), parts])
        return tf.reshape(parts.concat(), [batch, self.rows])

    def _scores(self, history: tf.RaggedTensor) -> tf.Tensor:
        entry, targets, weights = self._entries(history)
        owners = tf.gather(history.value_rowids(), entry)
        batch = history.nrows(out_type=tf.int64)
        sums = tf.math.unsorted_segment_sum(weights, owners * self.rows + targets, batch * self.rows)
        return tf.reshape(sums, [batch, self.rows])

    def contributions(self, history: tf.RaggedTensor, movie_rows: tf.Tensor) -> tf.RaggedTensor:
        """Each history movie's weight to its row's ``movie_rows`` [batch] entry, one ragged row per
        history: the terms whose sum is that movie's score."""
        entry, targets, weights = self._entries(history)
        wanted = tf.gather(tf.cast(movie_rows, tf.int64), tf.gather(history.value_rowids(), entry))
        terms = tf.math.unsorted_segment_sum(tf.where(targets == wanted, weights, 0.0), entry,
                                             tf.shape(history.flat_values, out_type=tf.int64)[0])
        return tf.RaggedTensor.from_row_splits(terms, history.row_splits)


class DenseItemItemScores(tf.Module):
    """``x_u W`` for histories of catalog rows, from a dense [rows, rows] weight matrix (row 0: unknown).

    Args:
        weights: the item-item weights (``scipy.sparse`` or an array; source row -> target column).
    """

    def __init__(self, weights) -> None:
        super().__init__(name="dense_item_item_scores")
        matrix = _dense(weights)
        self.rows = int(matrix.shape[0])
        self.weights = tf.Variable(matrix, trainable=False, name="weights")

    def assign(self, weights) -> None:
        """Takes another fit's weights over the same catalog."""
        matrix = _dense(weights)
        if matrix.shape[0] != self.rows:
            raise ValueError(f"item-item weights over {matrix.shape[0] - 1} movies; this model has {self.rows - 1}")
        self.weights.assign(matrix)

    def _rated(self, history: tf.RaggedTensor) -> tf.SparseTensor:
        history = history.with_row_splits_dtype(tf.int64)
        indices = tf.stack([history.value_rowids(), tf.cast(history.flat_values, tf.int64)], axis=1)
        return tf.SparseTensor(indices, tf.ones(tf.shape(indices)[:1]), tf.stack([history.nrows(), self.rows]))

    def __call__(self, history: tf.RaggedTensor) -> tf.Tensor:
        """Item-item scores of every catalog row [batch, rows] from each history (ragged catalog rows).

        A few histories: the sparse product, which reads only their movies' rows. From
        :data:`DENSE_PRODUCT_BATCH` histories on: their 0/1 rows as a dense matrix times the
        weights, which the dense kernel computes faster than the sparse one (at batch 32 on the
        demo data, half the time).
        """
        rated = self._rated(history)

        def dense_product():
            marks = tf.scatter_nd(rated.indices, rated.values, rated.dense_shape)  # repeated movies add up, as below
            return tf.matmul(marks, self.weights)

        return tf.cond(history.nrows() >= DENSE_PRODUCT_BATCH, dense_product,
                       lambda: tf.sparse.sparse_dense_matmul(rated, self.weights))

    def contributions(self, history: tf.RaggedTensor, movie_rows: tf.Tensor) -> tf.RaggedTensor:
        """Each history movie's weight to its row's ``movie_rows`` [batch] entry, one ragged row per history."""
        history = history.with_row_splits_dtype(tf.int64)
        wanted = tf.gather(tf.cast(movie_rows, tf.int64), history.value_rowids())
        terms = tf.gather_nd(self.weights, tf.stack([tf.cast(history.flat_values, tf.int64), wanted], axis=1))
        return tf.RaggedTensor.from_row_splits(terms, history.row_splits)


def item_item_scores(table) -> ItemItemScores | DenseItemItemScores:
    """The exported scorer of a fitted :class:`~tfrs_pipeline.ranking.neighbours.ItemNeighbours`: dense
    where it kept every weight of a small catalog, else sparse."""
    return DenseItemItemScores(table.weights) if table.dense else ItemItemScores(table.weights)


def _dense(weights) -> np.ndarray:
    return np.asarray(weights.toarray() if sparse.issparse(weights) else weights, np.float32)


def _csr(weights: sparse.spmatrix) -> sparse.csr_matrix:
    csr = sparse.csr_matrix(weights, dtype=np.float32)
    csr.sort_indices()
    return csr
