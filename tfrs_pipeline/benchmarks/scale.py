"""The scale benchmark: the whole training run at growing data sizes, so cost growth is a table.

Each size trains in its own process (``tfrs-pipeline train --data synthetic:SIZE``), so its
peak resident memory is its own; the figures per stage come from the model's
``metrics.json`` (``training.phases``: seconds and the peak memory when each phase ended).

    tfrs-pipeline benchmark scale --sizes 100k,1m --epochs 1
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tfrs_pipeline.benchmarks.output import write_results
from tfrs_pipeline.model_dir import ModelDir
from tfrs_pipeline.training.memory import peak_rss_mib

PHASES = ("data", "item_item", "retrieval", "rating", "list_ranker", "retrieval_refit", "whole_training_side",
          "export", "evaluation")


def train_in_a_process(source: str, out: Path, train_args: list[str], log,
                       env: dict[str, str] | None = None) -> tuple[float, float]:
    """Runs ``tfrs-pipeline train --data source`` in a process of its own; returns its wall seconds and peak resident MiB.

    Args:
        env: environment variables set for it on top of this process's (such as ``CUDA_VISIBLE_DEVICES``).
    """
    size = source.removeprefix("synthetic:")
    command = [sys.executable, "-m", "tfrs_pipeline.cli", "train", "--data", source, "--out", str(out),
               "--verbose", "2", *train_args]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    tail = collections.deque(maxlen=30)  # the last lines, shown if the run fails
    for line in process.stdout:  # progress as it happens: epochs, phases
        tail.append(line.rstrip())
        if re.match(r"\[\d+/\d+\]|(retrieval|rating model|list ranker)( epoch|:)|done in|phases", line):
            log(f"  [{size}] {line.rstrip()}")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"training on {source} failed (exit {process.returncode}):\n" + "\n".join(tail))
    return time.perf_counter() - start, peak_rss_mib(usage)


def benchmark_scale(sizes: tuple[str, ...] = ("100k", "1m", "20m"), *, train_args: list[str] | None = None,
                    out: str | Path | None = None, log=print) -> dict:
    """Trains, exports and evaluates at each synthetic size; prints per-stage throughput, seconds per
    epoch, peak memory, export size and evaluation seconds.

    Args:
        sizes: synthetic data sizes (``100k``, ``1m``, ``20m`` or ``USERSxMOVIESxRATINGS``).
        train_args: extra ``tfrs-pipeline train`` options, such as ``["--epochs", "1"]``.
    """
    results: dict = {"train_args": list(train_args or []), "sizes": {}}
    for size in sizes:
        log(f"synthetic:{size}: training, export and evaluation in a process of its own ...")
        with tempfile.TemporaryDirectory() as folder:
            wall, peak = train_in_a_process(f"synthetic:{size}", Path(folder) / "scale", list(train_args or []), log)
            model_dir = ModelDir.resolve(Path(folder) / "scale")
            metrics, history = model_dir.read_metrics(), model_dir.read_history()
        training = metrics["training"]
        row = {
            "ratings": metrics["data"]["ratings"], "train_ratings": metrics["split"]["train_ratings"],
            "test_ratings": metrics["split"]["test_ratings"], "wall_seconds": wall, "peak_rss_mib": peak,
            "export_mib": training.get("export_mib"), "phases": training.get("phases", {}),
            "retrieval": _stage(training, history, "retrieval"), "rating": _stage(training, history, "rating"),
            "recall_at_100": metrics["excluding_seen"].get("recall_at_100"),
        }
        results["sizes"][size] = row
        log(format_scale_row(size, row))
    write_results(results, out, log)
    log(format_scale_benchmark(results))
    return results


def _stage(training: dict, history: dict, stage: str) -> dict:
    epochs = len(history.get(stage, {}).get("loss", [])) or 1
    seconds = training[f"{stage}_seconds"]
    return {"examples_per_second": training[f"{stage}_examples_per_second"], "epochs": epochs,
            "seconds_per_epoch": seconds / epochs}


def format_scale_row(size: str, row: dict) -> str:
    phases = row["phases"]
    cells = " ".join(f"{phases[p]['seconds']:>7.0f}/{phases[p]['peak_rss_mib'] / 1024:<4.1f}" if p in phases
                     else f"{'-':>12}" for p in PHASES)
    return (f"  {size:>6} {row['ratings']:>11,} {row['retrieval']['examples_per_second']:>9,.0f} "
            f"{row['retrieval']['seconds_per_epoch']:>7.0f} {row['rating']['examples_per_second']:>9,.0f} "
            f"{row['rating']['seconds_per_epoch']:>7.0f} {row['peak_rss_mib'] / 1024:>7.2f} "
            f"{row['export_mib'] or 0:>8.1f} {row['wall_seconds']:>7.0f}   {cells}")


def format_scale_benchmark(results: dict) -> str:
    lines = [f"scale benchmark (train options: {' '.join(results['train_args']) or 'defaults'}); retrieval and rating model: "
             "training examples/s and seconds per epoch; per phase: seconds / peak GiB when it ended",
             f"  {'size':>6} {'ratings':>11} {'retr ex/s':>9} {'s/epoch':>7} {'rate ex/s':>9} {'s/epoch':>7} "
             f"{'peak GiB':>7} {'export MiB':>8} {'wall s':>7}   " + " ".join(f"{p:>12}" for p in PHASES)]
    lines += [format_scale_row(size, row) for size, row in results["sizes"].items()]
    return "\n".join(lines)
