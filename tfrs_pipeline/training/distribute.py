"""Where training runs: one device, every local GPU (mirrored) or several machines (multi-worker).

The strategy is made once per run, before anything else runs TensorFlow (multi-worker
collectives are configured at start-up); only the chief of a multi-worker run publishes.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tfrs_pipeline.config import RuntimeConfig
from tfrs_pipeline.errors import ConfigError


def make_strategy(runtime: RuntimeConfig) -> tf.distribute.Strategy:
    """The distribution strategy and precision policy for ``runtime`` (GPU used when present).

    ``multi-worker`` reads the cluster from ``TF_CONFIG`` and must be made before TensorFlow
    runs anything else in the process (collective ops are configured at start-up).
    """
    if runtime.strategy == "multi-worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_cluster_from_tf_config())
    elif runtime.strategy == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    if runtime.mixed_precision:
        policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
        tf.keras.mixed_precision.set_global_policy(policy)
    return strategy


def _cluster_from_tf_config() -> tf.distribute.cluster_resolver.TFConfigClusterResolver:
    """``TF_CONFIG``'s cluster, checked: a clear error instead of a hang or a stack trace."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise ConfigError("--strategy multi-worker needs TF_CONFIG, such as "
                          '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}')
    try:
        described = json.loads(text)
        workers = list(described["cluster"]["worker"])
        kind, index = described["task"]["type"], int(described["task"]["index"])
        known = kind in ("worker", "chief") and 0 <= index < len(described["cluster"].get(kind, []))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"TF_CONFIG must be JSON with cluster.worker (host:port list) and task.type/index, "
                          f"got {text[:200]!r}") from error
    if not known:
        raise ConfigError(f"TF_CONFIG's task {described['task']} is not one of its cluster's tasks "
                          f"({len(workers)} workers)")
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process publishes the model: always, except on the other workers of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def gpu_memory_peaks() -> dict[str, float]:
    """The most memory TensorFlow has held on each GPU so far in this process (MiB); empty without a GPU."""
    peaks = {}
    for index in range(len(tf.config.list_logical_devices("GPU"))):
        try:
            peaks[f"GPU:{index}"] = tf.config.experimental.get_memory_info(f"GPU:{index}")["peak"] / 2**20
        except (ValueError, tf.errors.OpError):  # a device that does not track its memory
            continue
    return peaks


def describe_devices() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"devices: {len(gpus)} GPU(s) {[g.name for g in gpus]}" if gpus else "devices: CPU only (no GPU found)"
