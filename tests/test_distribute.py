"""Training under tf.distribute.MirroredStrategy, on CPU with two logical devices, matches one device."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import json, sys
import tfrs_pipeline
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.train import run_training
results = {}
for strategy in ("default", "mirrored"):
    config = apply_overrides(PipelineConfig(), {
        "data.source": "synthetic:400x200x12000", "retrieval.epochs": 4, "retrieval.batch_size": 512,
        "ranking.epochs": 4, "ranking.batch_size": 512, "runtime.strategy": strategy, "runtime.verbose": 0})
    trained = run_training(config, sys.argv[1] + "/" + strategy, log=lambda *_: None)
    results[strategy] = {"replicas": tf.distribute.MirroredStrategy().num_replicas_in_sync if strategy == "mirrored" else 1,
                         "recall_at_50": trained.metrics["excluding_seen"]["recall_at_50"],
                         "rmse": trained.metrics["ranking"]["rmse"]}
print(json.dumps(results))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpu_devices_matches_one_device(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results["mirrored"]["replicas"] == 2
    assert results["mirrored"]["recall_at_50"] == pytest.approx(results["default"]["recall_at_50"], abs=0.06)
    assert results["mirrored"]["rmse"] == pytest.approx(results["default"]["rmse"], abs=0.05)


def test_mixed_precision_trains_exports_and_restores_the_policy(tmp_path):
    import numpy as np
    import tensorflow as tf
    from conftest import TINY

    from tfrs_pipeline.config import PipelineConfig, apply_overrides
    from tfrs_pipeline.train import run_training

    config = apply_overrides(PipelineConfig(), {**TINY, "runtime.mixed_precision": True, "ranking.epochs": 1})
    trained = run_training(config, tmp_path / "mixed", log=lambda *_: None)
    assert tf.keras.mixed_precision.global_policy().name == "float32"
    out = tf.saved_model.load(str(trained.path)).signatures["serving_default"](user_id=tf.constant(["1"]), k=tf.constant(3))
    assert out["predicted_ratings"].dtype == tf.float32 and np.isfinite(out["predicted_ratings"].numpy()).all()
    assert trained.metrics["ranking"]["rmse"] < 2.0
