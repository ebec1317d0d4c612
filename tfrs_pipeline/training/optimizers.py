"""The optimizers a stage can be trained with, by the name its configuration gives."""

from __future__ import annotations

import tensorflow as tf


class LazyAdam(tf.keras.optimizers.Adam):
    """Adam that moves an embedding row, and its moment estimates, only on the steps whose batch uses it.

    Keras's Adam decays the moments of every row of a table at every step, even for a
    sparse gradient: a dense pass over each embedding table and its two moment tables per
    step, which at 138k users and 27k movies costs more than the rest of the step. This
    updates just the rows in the batch (as TF Addons' ``LazyAdam`` did); dense variables
    take Adam's usual step. Duplicate rows are already summed by the optimizer.
    """

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = (tf.cast(self.learning_rate, dtype) * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step)))
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        rows, values = gradient.indices, gradient.values
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))


#: Optimizers by configuration name.
OPTIMIZERS = {
    "adagrad": tf.keras.optimizers.Adagrad,
    "adam": tf.keras.optimizers.Adam,
    "lazy_adam": LazyAdam,
    "sgd": tf.keras.optimizers.SGD,
}


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    return OPTIMIZERS[name](learning_rate=learning_rate)
