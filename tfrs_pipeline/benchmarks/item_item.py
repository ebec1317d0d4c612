"""The item-item benchmark: seconds and peak memory of the list ranker's item-item table, per data set.

Each data set is read, split (the configuration's split) and its training side turned into the
table (:meth:`~tfrs_pipeline.ranking.neighbours.ItemNeighbours.build`, ``ranker.neighbours``
weights per movie, ``ranker.item_model``) in a process of its own, so the peak resident memory
is that data set's (the data included).

    tfrs-pipeline benchmark item-item --sizes 1m,20m
"""

from __future__ import annotations

import json
import subprocess
import sys

from tfrs_pipeline.benchmarks.output import write_results
from tfrs_pipeline.config import PipelineConfig

# Run with ``python -c`` rather than as this module: importing tfrs_pipeline.benchmarks loads
# TensorFlow (about 0.5 GiB), which would count in the peak this process is there to measure.
_MEASURE = """
import json, sys, time
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.data import load_data
from tfrs_pipeline.data.split import split_ratings
from tfrs_pipeline.ranking.neighbours import ItemNeighbours
from tfrs_pipeline.training.memory import peak_rss_mib
source, settings = sys.argv[1], json.loads(sys.argv[2])
config = apply_overrides(PipelineConfig(), {"data.source": source, **settings}).validate()
data = load_data(source, config.data)
train = split_ratings(data, config.split).train
catalog = data.movies["movie_id"].astype(str).to_numpy()
before = peak_rss_mib()
start = time.perf_counter()
table = ItemNeighbours.build(train, catalog, k=config.ranker.neighbours, kind=config.ranker.item_model,
                             max_weights=config.ranker.max_item_weights)
print(json.dumps({"data": source, "training_ratings": len(train), "movies": len(catalog), "kind": table.kind,
                  "model": table.describe(), "seconds": time.perf_counter() - start, "peak_mib": peak_rss_mib(),
                  "peak_mib_before_table": before}))
"""


def benchmark_item_item(sources: tuple[str, ...], *, config: PipelineConfig | None = None, out=None, log=print) -> list[dict]:
    """Builds the item-item table of each data set in its own process and prints seconds and peak memory."""
    config = config or PipelineConfig()
    settings = {"split.kind": config.split.kind, "split.test_fraction": config.split.test_fraction,
                "split.seed": config.split.seed, "ranker.neighbours": config.ranker.neighbours,
                "ranker.max_item_weights": config.ranker.max_item_weights,
                "ranker.item_model": config.ranker.item_model}
    results = []
    for source in sources:
        log(f"item-item table of {source} ...")
        done = subprocess.run([sys.executable, "-c", _MEASURE, source, json.dumps(settings)], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the item-item table of {source} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = results[-1]
        log(f"  {row['data']}: {row['training_ratings']:,} training ratings, {row['movies']:,} movies; {row['model']}: "
            f"{row['seconds']:.1f} s, peak {row['peak_mib'] / 1024:.2f} GiB "
            f"({row['peak_mib_before_table'] / 1024:.2f} GiB before the table)")
    write_results({"item_item": results}, out, log)
    return results
