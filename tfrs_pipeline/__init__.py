"""tfrs-pipeline: a two-stage movie recommender on TensorFlow Recommenders.

The public API (each name is imported on first use, so ``import tfrs_pipeline`` stays cheap)::

    import tfrs_pipeline
    from tfrs_pipeline import Recommender

    model = tfrs_pipeline.train(ratings_df, movies=movies_df, out="saved_models/mine")  # or "movielens:PATH"
    model = Recommender.load("saved_models/demo")        # TensorFlow only, no TFRS
    model.recommend("42", k=10)                           # a DataFrame, a row per movie

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

#: Public names and the module each comes from.
_EXPORTS = {
    "PipelineConfig": "tfrs_pipeline.config",
    "apply_overrides": "tfrs_pipeline.config",
    "load_toml": "tfrs_pipeline.config",
    "load_data": "tfrs_pipeline.data",
    "RatingsData": "tfrs_pipeline.data",
    "split_ratings": "tfrs_pipeline.data.split",
    "train": "tfrs_pipeline.pipeline",
    "run_training": "tfrs_pipeline.pipeline",
    "TrainedModel": "tfrs_pipeline.pipeline",
    "evaluate_export": "tfrs_pipeline.evaluation.evaluate",
    "ModelDir": "tfrs_pipeline.model_dir",
    "Recommender": "tfrs_pipeline.recommender",
    "PipelineError": "tfrs_pipeline.errors",
    "DataError": "tfrs_pipeline.errors",
    "ConfigError": "tfrs_pipeline.errors",
    "ModelError": "tfrs_pipeline.errors",
    "ArgumentError": "tfrs_pipeline.errors",
    "CappedWarning": "tfrs_pipeline.errors",
    "UnknownMoviesWarning": "tfrs_pipeline.errors",
    "NumericIdsWarning": "tfrs_pipeline.errors",
}

__all__ = ["KerasVersionError", "__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfrs_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
