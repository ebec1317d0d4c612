"""Training under tf.distribute.MirroredStrategy, on CPU with two logical devices, matches one device."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Logical devices must be set before TensorFlow starts: the mirrored run needs a process of its own.
MIRRORED = """
import json, sys
import tfrs_pipeline
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.pipeline import run_training
config = apply_overrides(PipelineConfig(), {**json.loads(sys.argv[2]), "runtime.strategy": "mirrored"})
trained = run_training(config, sys.argv[1], log=lambda *_: None)
print(json.dumps({"replicas": trained.metrics["training"]["replicas"],
                  "recall_at_50": trained.metrics["excluding_seen"]["recall_at_50"],
                  "rmse": trained.metrics["ranking"]["rmse"]}))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpu_devices_matches_one_device(trained, tmp_path):
    from conftest import TINY

    result = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path / "mirrored"), json.dumps(TINY)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    mirrored = json.loads(result.stdout.strip().splitlines()[-1])
    one_device = trained.metrics  # the session's model: the same configuration and seed on one device
    assert mirrored["replicas"] == 2 and one_device["training"]["replicas"] == 1
    assert mirrored["recall_at_50"] == pytest.approx(one_device["excluding_seen"]["recall_at_50"], abs=0.06)
    assert mirrored["rmse"] == pytest.approx(one_device["ranking"]["rmse"], abs=0.05)


@pytest.mark.slow
def test_mixed_precision_trains_exports_and_restores_the_policy(tmp_path):
    import numpy as np
    import tensorflow as tf
    from conftest import TINY

    from tfrs_pipeline.config import PipelineConfig, apply_overrides
    from tfrs_pipeline.pipeline import run_training

    config = apply_overrides(PipelineConfig(), {**TINY, "runtime.mixed_precision": True, "rating.epochs": 1})
    trained = run_training(config, tmp_path / "mixed", log=lambda *_: None)
    assert tf.keras.mixed_precision.global_policy().name == "float32"
    out = tf.saved_model.load(str(trained.path)).signatures["serving_default"](user_id=tf.constant(["1"]), k=tf.constant(3))
    assert out["predicted_ratings"].dtype == tf.float32 and np.isfinite(out["predicted_ratings"].numpy()).all()
    assert trained.metrics["ranking"]["rmse"] < 2.0


WORKER = """
import json, sys
import tfrs_pipeline
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.pipeline import run_training
overrides = json.loads(sys.argv[2])
trained = run_training(apply_overrides(PipelineConfig(), overrides), sys.argv[1], log=lambda *_: None)
print(json.dumps({"recall_at_50": trained.metrics["excluding_seen"]["recall_at_50"],
                  "rmse": trained.metrics["ranking"]["rmse"], "replicas": trained.metrics["training"]["replicas"],
                  "path": str(trained.path)}))
"""


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_local_workers_train_and_only_the_chief_publishes(trained, tmp_path):
    import os

    from conftest import TINY

    overrides = dict(TINY)
    cluster = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / "multi"),
             json.dumps({**overrides, "runtime.strategy": "multi-worker"})],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    try:
        outputs = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()  # a worker whose peer failed would wait for it forever
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    chief, other = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    # One worker alone is the session's model: the same configuration and seed.
    alone = {"recall_at_50": trained.metrics["excluding_seen"]["recall_at_50"],
             "rmse": trained.metrics["ranking"]["rmse"], "replicas": trained.metrics["training"]["replicas"]}

    assert chief["replicas"] == other["replicas"] == 2 and alone["replicas"] == 1
    # The chief's version and its logs, nothing else.
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == ["1", "logs", "stages"]
    assert chief["path"] == str(tmp_path / "multi" / "1") and not os.path.exists(other["path"])
    assert chief["recall_at_50"] == pytest.approx(alone["recall_at_50"], abs=0.06)
    assert chief["rmse"] == pytest.approx(alone["rmse"], abs=0.05)


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    from tfrs_pipeline.config import RuntimeConfig
    from tfrs_pipeline.errors import ConfigError
    from tfrs_pipeline.training.distribute import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="--strategy multi-worker needs TF_CONFIG"):
        make_strategy(RuntimeConfig(strategy="multi-worker"))
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(ConfigError, match="is not one of its cluster's tasks"):
        make_strategy(RuntimeConfig(strategy="multi-worker"))
    monkeypatch.setenv("TF_CONFIG", '{"cluster": ["127.0.0.1:1"], "task": {"type": "worker", "index": 0}}')
    with pytest.raises(ConfigError, match="TF_CONFIG must be JSON with cluster.worker"):
        make_strategy(RuntimeConfig(strategy="multi-worker"))


@pytest.mark.slow
def test_mixed_float16_scales_the_loss_in_the_multi_step_loop(caplog):
    """What a GPU gets from --mixed-precision, on the CPU: float16 with a loss-scale optimizer, through
    Keras's multi-step loop (a run of 200+ steps), which is where `benchmark gpu` stopped at synthetic:1m."""
    import logging

    import numpy as np
    import tensorflow as tf

    from tfrs_pipeline.config import PipelineConfig, apply_overrides
    from tfrs_pipeline.pipeline import load_and_prepare
    from tfrs_pipeline.retrieval.model import train_retrieval
    from tfrs_pipeline.training.loop import steps_per_call

    config = apply_overrides(PipelineConfig(), {"data.source": "synthetic:300x200x8000", "retrieval.epochs": 1,
                                                "retrieval.batch_size": 16, "runtime.verbose": 0}).validate()
    run = load_and_prepare(config, log=lambda *_: None)
    assert steps_per_call(16, tf.distribute.get_strategy(), len(run.prepared.fitting), 16, 1) == 16  # the multi-step loop
    policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with caplog.at_level(logging.WARNING, logger="tensorflow"):
            result = train_retrieval(run.prepared, config.retrieval, seed=1, verbose=0)
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)
    assert isinstance(result.model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert "forgot to call LossScaleOptimizer.get_scaled_loss" not in caplog.text
    assert np.isfinite(result.history["loss"]).all()


@pytest.mark.slow
def test_a_one_replica_mirrored_strategy_trains_through_the_multi_step_loop():
    """`--strategy mirrored` on a machine with one device: one replica, so a run of 200+ steps takes Keras's
    multi-step loop, where `benchmark gpu` stopped at synthetic:1m (a merge_call in a nested tf.function)."""
    import numpy as np
    import tensorflow as tf

    from tfrs_pipeline.config import PipelineConfig, apply_overrides
    from tfrs_pipeline.pipeline import load_and_prepare
    from tfrs_pipeline.retrieval.model import train_retrieval
    from tfrs_pipeline.training.loop import steps_per_call

    config = apply_overrides(PipelineConfig(), {"data.source": "synthetic:300x200x8000", "retrieval.epochs": 1,
                                                "retrieval.batch_size": 16, "runtime.verbose": 0}).validate()
    run = load_and_prepare(config, log=lambda *_: None)
    strategy = tf.distribute.MirroredStrategy(tf.config.list_logical_devices("CPU")[:1])
    assert strategy.num_replicas_in_sync == 1
    assert steps_per_call(16, strategy, len(run.prepared.fitting), 16, 1) == 16  # the multi-step loop
    result = train_retrieval(run.prepared, config.retrieval, seed=1, verbose=0, strategy=strategy)
    assert np.isfinite(result.history["loss"]).all()
