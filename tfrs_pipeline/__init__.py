"""tfrs-pipeline: a two-stage movie recommender on TensorFlow Recommenders.

TFRS 0.7 is written for Keras 2, so this package makes TensorFlow use the
``tf-keras`` package (``TF_USE_LEGACY_KERAS=1``) before TensorFlow is first
imported, and refuses to run if TensorFlow was already imported with Keras 3.
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"


class KerasVersionError(ImportError):
    """TensorFlow was imported with Keras 3 before this package could select Keras 2."""


def _select_keras_2() -> None:
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return
    import tensorflow as tf

    keras_module = tf.keras.layers.Dense.__module__
    if not keras_module.startswith("tf_keras"):
        raise KerasVersionError(
            "tfrs_pipeline needs Keras 2 (the tf-keras package), but TensorFlow was already "
            f"imported with Keras 3 ({keras_module}). Set TF_USE_LEGACY_KERAS=1 in the "
            "environment, or import tfrs_pipeline before tensorflow."
        )

_select_keras_2()
