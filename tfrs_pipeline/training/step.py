"""The training step every stage's model takes: TFRS's, with the loss scaled under mixed float16.

TFRS 0.7's ``tfrs.Model.train_step`` applies the gradients of the loss as computed. Under the
``mixed_float16`` policy (``--mixed-precision`` on a GPU) Keras wraps the optimizer in a
``LossScaleOptimizer``, which expects the loss scaled before the gradients are taken and the
gradients unscaled after: without that, gradients below float16's smallest value become zero
and Keras warns that the scaling was forgotten. :class:`ScaledLossModel` is TFRS's step with
that scaling where the optimizer asks for it, and TFRS's step unchanged otherwise (float32,
bfloat16).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs


def scales_loss(model: tf.keras.Model) -> bool:
    """Whether the model's compiled optimizer scales the loss (mixed float16)."""
    return isinstance(getattr(model, "optimizer", None), tf.keras.mixed_precision.LossScaleOptimizer)


class ScaledLossModel(tfrs.Model):
    """A ``tfrs.Model`` (``compute_loss`` is the single place where towers and task meet) whose
    training step scales the loss when its optimizer is a ``LossScaleOptimizer``."""

    def train_step(self, inputs):
        scaling = scales_loss(self)
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(term) for term in self.losses])
            total_loss = loss + regularization_loss
            scaled = self.optimizer.get_scaled_loss(total_loss) if scaling else total_loss
        gradients = tape.gradient(scaled, self.trainable_variables)
        if scaling:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        metrics = {metric.name: metric.result() for metric in self.metrics}
        metrics.update(loss=loss, regularization_loss=regularization_loss, total_loss=total_loss)
        return metrics
