"""The GPU check: ``tfrs-pipeline benchmark gpu`` proves the GPU path in one command.

For each data size it trains the whole pipeline four times, each in a process of its own
(``tfrs-pipeline train``, so each run's devices, precision and memory are its own):

* ``cpu float32``: the reference, with every GPU hidden (``CUDA_VISIBLE_DEVICES=-1``);
* ``default``: the default strategy (one device: the GPU when there is one);
* ``mixed precision``: ``--mixed-precision`` (float16 on a GPU, bfloat16 on a CPU);
* ``mirrored``: ``--strategy mirrored`` (every local GPU).

Each export is then loaded in a fresh process with TensorFlow alone and answers a request. The
table gives, per run: the devices it used, training examples per second per stage, the peak GPU
memory TensorFlow allocated, the held-out figures, and their difference from the CPU float32 run
of the same seed. Once per command, one retrieval epoch runs with device placement logged, and
the matrix multiplications are counted by device.

It fails (exit code 2, one line per failure) when a GPU is listed but the placement log shows no
matrix multiplication on it, or when on a GPU mixed precision or the mirrored strategy moves
recall@10 or NDCG@10 by more than ``tolerance`` (0.005) from the default run. On a machine
without a GPU the same command runs every step on the CPU and prints every figure (its mixed
precision is bfloat16, and no tolerance is enforced: there is no GPU path to prove).

    tfrs-pipeline benchmark gpu --sizes 100k,1m --epochs 2
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tfrs_pipeline.benchmarks.output import write_results
from tfrs_pipeline.benchmarks.scale import train_in_a_process
from tfrs_pipeline.errors import PipelineError
from tfrs_pipeline.model_dir import ModelDir

#: The runs of each size: name, ``tfrs-pipeline train`` options, and whether GPUs are hidden.
RUNS = (
    ("cpu float32", [], True),
    ("default", [], False),
    ("mixed precision", ["--mixed-precision"], False),
    ("mirrored", ["--strategy", "mirrored"], False),
)

#: The held-out figures compared across runs: (label, metrics.json section, key).
FIGURES = (
    ("retrieval recall@10", "excluding_seen", "recall_at_10"),
    ("retrieval NDCG@10", "excluding_seen", "ndcg_at_10"),
    ("two-stage recall@10", "pipeline", "recall_at_10"),
    ("two-stage NDCG@10", "pipeline", "ndcg_at_10"),
)

#: How far mixed precision and the mirrored strategy may move recall@10 and NDCG@10 on a GPU.
TOLERANCE = 0.005


class GpuCheckFailed(PipelineError):
    """The GPU path did not hold: ops on the CPU though a GPU is listed, or figures out of tolerance."""


def list_gpus() -> list[dict]:
    """The GPUs this machine has, by ``nvidia-smi`` (name, memory, driver), or by TensorFlow when it is absent."""
    try:
        answer = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                 "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        rows = [line.split(", ") for line in answer.stdout.strip().splitlines()] if answer.returncode == 0 else []
        if rows:
            return [{"name": row[0], "memory": row[1], "driver": row[2]} for row in rows if len(row) == 3]
    except (OSError, subprocess.TimeoutExpired):
        pass
    import tensorflow as tf

    return [{"name": device.name, "memory": "?", "driver": "?"} for device in tf.config.list_physical_devices("GPU")]


def benchmark_gpu(sizes: tuple[str, ...] = ("100k", "1m"), *, epochs: int = 2, tolerance: float = TOLERANCE,
                  out: str | Path | None = None, log=print) -> dict:
    """Trains each size with each run of :data:`RUNS`, reloads each export in a fresh process, checks placement.

    Args:
        sizes: synthetic data sizes (``100k``, ``1m`` or ``USERSxMOVIESxRATINGS``).
        epochs: most epochs of each stage (the list ranker's too).
        tolerance: the largest change of recall@10 and NDCG@10 mixed precision and mirrored may make on a GPU.
        out: also write the figures as JSON here.

    Returns:
        The figures, by size and run.

    Raises:
        GpuCheckFailed: a GPU is listed but ops ran on the CPU, or a figure moved past ``tolerance``.
    """
    gpus = list_gpus()
    log("GPUs: " + ("; ".join(f"{g['name']} ({g['memory']}, driver {g['driver']})" for g in gpus) or "none: every run "
                    "is on the CPU, and no tolerance is enforced"))
    results: dict = {"gpus": gpus, "epochs": epochs, "tolerance": tolerance, "sizes": {}}
    train_args = ["--epochs", str(epochs), "--rating-epochs", str(epochs), "--set", f"ranker.epochs={epochs}"]
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            rows = results["sizes"][size] = {}
            for name, options, cpu_only in RUNS:
                log(f"synthetic:{size}, {name}: training in a process of its own ...")
                env = {"CUDA_VISIBLE_DEVICES": "-1"} if cpu_only else {}
                target = Path(folder) / f"{size}-{name.replace(' ', '-')}"
                wall, peak = train_in_a_process(f"synthetic:{size}", target, [*train_args, *options], log, env=env)
                model_dir = ModelDir.resolve(target)
                rows[name] = _row(model_dir.read_metrics(), wall, peak)
                rows[name]["reload_seconds"] = _reload_in_a_fresh_process(model_dir.path, env)
                shutil.rmtree(target, ignore_errors=True)
                log(format_gpu_row(name, rows[name], rows.get("cpu float32")))
        results["placement"] = check_placement(f"synthetic:{sizes[0]}", log)
    write_results(results, out, log)
    log(format_gpu_benchmark(results))
    failures = _failures(results, bool(gpus))
    if failures:
        raise GpuCheckFailed("; ".join(failures))
    return results


def _row(metrics: dict, wall: float, peak_rss: float) -> dict:
    training = metrics["training"]
    return {
        "devices": training.get("devices", ""), "replicas": training.get("replicas", 1),
        "retrieval_examples_per_second": training["retrieval_examples_per_second"],
        "rating_examples_per_second": training["rating_examples_per_second"],
        "list_ranker_seconds": training.get("list_ranker_seconds", 0.0),
        "gpu_peak_mib": training.get("gpu_peak_mib", {}), "peak_rss_mib": peak_rss, "wall_seconds": wall,
        "figures": {label: metrics[section][key] for label, section, key in FIGURES},
    }


_RELOAD = """
import sys, time
import tensorflow as tf
start = time.perf_counter()
model = tf.saved_model.load(sys.argv[1])
out = model.signatures["serving_default"](user_id=tf.constant(["1", "2"]), k=tf.constant(5))
assert out["movie_ids"].shape == (2, 5), out["movie_ids"].shape
print(f"{time.perf_counter() - start:.3f}")
"""


def _reload_in_a_fresh_process(path: Path, env: dict) -> float:
    """Seconds for a fresh process with TensorFlow alone to load the export and answer a request."""
    answer = subprocess.run([sys.executable, "-c", _RELOAD, str(path)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env})
    if answer.returncode != 0:
        raise GpuCheckFailed(f"the export {path} did not load and answer in a fresh process: "
                             + (answer.stderr.strip().splitlines() or ["no output"])[-1])
    return float(answer.stdout.strip().splitlines()[-1])


_PLACEMENT = """
import sys
import tfrs_pipeline
import tensorflow as tf
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.pipeline import load_and_prepare
from tfrs_pipeline.retrieval.model import train_retrieval
config = apply_overrides(PipelineConfig(), {"data.source": sys.argv[1], "retrieval.epochs": 1,
                                            "runtime.verbose": 0}).validate()
run = load_and_prepare(config, log=lambda *_: None)
tf.debugging.set_log_device_placement(True)
train_retrieval(run.prepared, config.retrieval, seed=1, verbose=0)
"""

_MATMUL = re.compile(r"\b(?:Batch)?MatMul(?:V2|V3)?\b.*?device:(GPU|CPU):\d+")


def check_placement(source: str, log=print) -> dict:
    """One retrieval epoch with device placement logged: matrix multiplications counted by device."""
    answer = subprocess.run([sys.executable, "-c", _PLACEMENT, source], capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    if answer.returncode != 0:
        raise GpuCheckFailed("the placement check failed: " + (answer.stderr.strip().splitlines() or ["no output"])[-1])
    counts = {"GPU": 0, "CPU": 0}
    for match in _MATMUL.finditer(answer.stderr + answer.stdout):
        counts[match.group(1)] += 1
    log(f"device placement of one retrieval epoch: {counts['GPU']:,} matrix multiplications on a GPU, "
        f"{counts['CPU']:,} on the CPU")
    return counts


def _failures(results: dict, has_gpu: bool) -> list[str]:
    if not has_gpu:
        return []
    failures = []
    if results["placement"]["GPU"] == 0:
        failures.append("a GPU is listed, but no matrix multiplication of the retrieval epoch ran on it")
    for size, rows in results["sizes"].items():
        reference = rows["default"]["figures"]
        for name in ("mixed precision", "mirrored"):
            for label, value in rows[name]["figures"].items():
                if label.endswith(("recall@10", "NDCG@10")) and abs(value - reference[label]) > results["tolerance"]:
                    failures.append(f"synthetic:{size}, {name}: {label} {value:.4f} against {reference[label]:.4f} "
                                    f"with the default strategy (tolerance {results['tolerance']})")
    return failures


def format_gpu_row(name: str, row: dict, reference: dict | None) -> str:
    figures = row["figures"]
    deltas = "  ".join(f"{value:.4f} ({value - reference['figures'][label]:+.4f})" if reference else f"{value:.4f}"
                       for label, value in figures.items())
    gpu = ", ".join(f"{device} {mib:,.0f}" for device, mib in row["gpu_peak_mib"].items()) or "-"
    return (f"  {name:<16} {row['retrieval_examples_per_second']:>10,.0f} {row['rating_examples_per_second']:>10,.0f} "
            f"{gpu:>14} {row['reload_seconds'] if 'reload_seconds' in row else 0:>7.1f}  {deltas}   [{row['devices']}]")


def format_gpu_benchmark(results: dict) -> str:
    lines = [f"GPU check ({results['epochs']} epochs a stage): training examples/s of retrieval and the rating model, "
             "peak GPU MiB, seconds to reload the export in a fresh process, and the held-out figures "
             "(difference from the CPU float32 run)",
             f"  {'run':<16} {'retr ex/s':>10} {'rating ex/s':>10} {'GPU MiB':>14} {'reload':>7}  "
             + "  ".join(label for label, _, _ in FIGURES)]
    for size, rows in results["sizes"].items():
        lines.append(f" synthetic:{size}")
        reference = rows.get("cpu float32")
        lines += [format_gpu_row(name, row, reference if name != "cpu float32" else None) for name, row in rows.items()]
        if reference and "default" in rows:
            speedup = rows["default"]["retrieval_examples_per_second"] / reference["retrieval_examples_per_second"]
            lines.append(f"  retrieval examples/s, default against cpu float32: {speedup:.1f}x")
    placement = results.get("placement")
    if placement:
        lines.append(f" placement: {placement['GPU']:,} matrix multiplications on a GPU, {placement['CPU']:,} on the CPU")
    return "\n".join(lines)
