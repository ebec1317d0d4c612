"""Benchmarks that print figures (never timed assertions in tests).

* ``retrieval``: the TFRS basic-retrieval tutorial configuration against ours, same split, same
  process: throughput and top-k metrics beside most-popular (:mod:`.retrieval`).
* ``two-stage``: trains both stages and prints the top-10 ablation (retrieval alone, the rating
  blend, the list ranker, EASE, most-popular) on one split (:mod:`.two_stage`).
* ``serving``: users per second and p50/p99 latency in process and over HTTP (:mod:`.serving`).
* ``index``: brute force against ScaNN on synthetic catalogs up to a million movies: latency,
  recall@100, build time and memory (:mod:`.index`).
* ``scale``: the whole training run at growing data sizes, one process each: examples/s, seconds
  per epoch, peak memory per phase, export size, evaluation seconds (:mod:`.scale`).
* ``item-item``: seconds and peak memory of the list ranker's item-item table per data set,
  one process each (:mod:`.item_item`).
* ``visitor-bound``: on synthetic data, how well the generator's own model recommends from a
  visitor's 5 movies: about the ceiling of ``cold_start.history_5`` there (:mod:`.visitor_bound`).
* ``gpu``: the GPU path in one command: CPU float32, default, mixed precision and mirrored runs,
  each export reloaded in a fresh process, device placement checked (:mod:`.gpu`).
"""

from tfrs_pipeline.benchmarks.gpu import benchmark_gpu, format_gpu_benchmark
from tfrs_pipeline.benchmarks.index import benchmark_index, format_index_benchmark
from tfrs_pipeline.benchmarks.item_item import benchmark_item_item
from tfrs_pipeline.benchmarks.retrieval import (
           benchmark_retrieval,
           compare_retrieval_variants,
           format_retrieval_benchmark,
           profile_retrieval_step,
)
from tfrs_pipeline.benchmarks.scale import benchmark_scale, format_scale_benchmark
from tfrs_pipeline.benchmarks.serving import benchmark_serving, format_serving_benchmark
from tfrs_pipeline.benchmarks.two_stage import benchmark_two_stage, compare_rating_model
from tfrs_pipeline.benchmarks.visitor_bound import benchmark_visitor_bound

__all__ = ["benchmark_gpu", "benchmark_item_item", "format_gpu_benchmark", "benchmark_scale", "format_scale_benchmark", "benchmark_index", "format_index_benchmark", "benchmark_retrieval", "benchmark_serving", "benchmark_two_stage", "compare_rating_model",
           "compare_retrieval_variants", "profile_retrieval_step", "format_retrieval_benchmark", "format_serving_benchmark",
           "benchmark_visitor_bound"]
