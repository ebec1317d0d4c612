"""What training a stage hands on: the model with its kept weights, its history and its speed."""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf


@dataclass
class TrainingResult:
    """A trained model and what happened while training it.

    Args:
        model: the model, with the best epoch's weights restored.
        history: per-epoch logs (``model.fit``'s history plus ``epoch_seconds``).
        seconds: wall time of ``fit``, validation included.
        examples_per_second: training examples per second of training epochs.
        best_epoch: the epoch (1-based) whose weights were kept.
    """

    model: tf.keras.Model | None  # None once released after export
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    examples_per_second: float = 0.0
    best_epoch: int = 0
