"""The index benchmark: brute force against ScaNN on catalogs of up to a million movies.

The catalog is synthetic, shaped like trained movie embeddings rather than uniform noise:
Gaussian with a decaying spectrum (dimension i has scale 1/sqrt(i+1), as learned embeddings
put most of their variance in few directions) and log-normal norms (popular movies get
longer vectors). Queries come from the same spectrum. Recall@100 is ScaNN's top 100
against brute force's exact top 100 for the same queries.

    tfrs-pipeline benchmark index --catalog 10000,100000,1000000 --dim 64
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_pipeline.benchmarks.output import write_results
from tfrs_pipeline.retrieval.index import ScannIndex, SeenAwareBruteForce
from tfrs_pipeline.training.memory import peak_rss_mib


def synthetic_catalog(movies: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Embeddings [movies, dim] (float32) with a decaying spectrum and log-normal norms."""
    spectrum = 1.0 / np.sqrt(np.arange(1, dim + 1))
    return (rng.standard_normal((movies, dim), dtype=np.float32) * spectrum
            * rng.lognormal(0.0, 0.3, (movies, 1))).astype(np.float32)


def _latencies_ms(search, queries: np.ndarray, batch: int, calls: int, k: int) -> dict:
    """p50/p99 milliseconds per call of ``search`` on ``batch`` queries, after two warm-up calls."""
    k = tf.constant(k)
    batches = [tf.constant(queries[(i * batch) % len(queries):][:batch]) for i in range(calls)]
    for warm_up in batches[:2]:
        search(warm_up, k)
    times = []
    for queries_batch in batches:
        begin = time.perf_counter()
        search(queries_batch, k)
        times.append((time.perf_counter() - begin) * 1000.0)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)), "calls": calls}


def _searcher(index, dim: int):
    """The index behind a traced function, as a served SavedModel calls it."""
    return tf.function(lambda queries, k: index(queries, k),
                       input_signature=[tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([], tf.int32)])


def _index_bytes(module: tf.Module) -> int:
    return sum(int(tf.size(v)) * v.dtype.size for v in module.variables if v.dtype != tf.string)


class IndexExport(tf.Module):
    """A ScaNN (or brute-force) index as a SavedModel: query embeddings in, the top ``k`` movies out."""

    def __init__(self, index, dim: int) -> None:
        super().__init__(name="index_benchmark_export")
        self.index = index
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None, dim], tf.float32, name="query"),
                                                               tf.TensorSpec([], tf.int32, name="k")])

    def _serve(self, query, k):
        scores, ids = self.index(query, k)
        return {"movie_ids": ids, "scores": scores}


_RELOAD = """
import json, sys, time
start = time.perf_counter()
import scann  # registers ScaNN's TensorFlow ops before the load
import numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
loaded = time.perf_counter() - start
queries = tf.constant(np.load(sys.argv[2]))
out = model.signatures["serving_default"](query=queries, k=tf.constant(10))
print(json.dumps({"load_seconds": loaded, "movie_ids": out["movie_ids"].numpy().astype(str).tolist()}))
"""


def _export_and_reload(index: ScannIndex, dim: int, queries: np.ndarray, folder: Path) -> dict:
    """Writes the index as a SavedModel, loads it in a clean Python (``import scann``, then
    ``tf.saved_model.load``, none of this package) and checks it answers as in process."""
    from tfrs_pipeline.export.writer import save

    module = IndexExport(index, dim)
    begin = time.perf_counter()
    path = save(module, folder / "scann_index")
    seconds = time.perf_counter() - begin
    np.save(folder / "queries.npy", queries)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    answer = subprocess.run([sys.executable, "-c", _RELOAD, str(path), str(folder / "queries.npy")],
                            capture_output=True, text=True, env=env, cwd=folder, timeout=900)
    if answer.returncode != 0:
        raise RuntimeError(f"the exported ScaNN index did not load in a clean process:\n{answer.stderr[-2000:]}")
    reloaded = json.loads(answer.stdout.strip().splitlines()[-1])
    in_process = module.serve(tf.constant(queries), tf.constant(10))["movie_ids"].numpy().astype(str).tolist()
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"export_seconds": seconds, "export_mib": size / 2**20, "reload_seconds": reloaded["load_seconds"],
            "same_answers": reloaded["movie_ids"] == in_process}


def benchmark_index(catalogs: tuple[int, ...] = (10_000, 100_000, 1_000_000), *, dim: int = 64, queries: int = 200,
                    k: int = 100, seed: int = 0, export: bool = True, out: str | Path | None = None,
                    log=print) -> dict:
    """Brute force and ScaNN per catalog size: build seconds, index MiB, p50/p99 ms at batch 1 and 64,
    ScaNN's recall@100 against brute force; the largest catalog's ScaNN index is also exported and
    reloaded in a clean process (``export``).

    Args:
        catalogs: catalog sizes (movies).
        dim: embedding dimension.
        queries: queries for recall and batch-1 latency (batch 64 runs ``queries // 8`` calls, at least 10).
        k: the top ``k`` measured (recall@k).
    """
    rng = np.random.default_rng(seed)
    results: dict = {"dim": dim, "k": k, "queries": queries, "seed": seed, "catalogs": {}}
    for movies in catalogs:
        log(f"catalog of {movies:,} movies x {dim}: generating, building brute force and ScaNN ...")
        candidates = synthetic_catalog(movies, dim, rng)
        probes = synthetic_catalog(max(queries, 64), dim, rng) / rng.lognormal(0.0, 0.3, (max(queries, 64), 1))
        probes = probes.astype(np.float32)
        ids = tf.constant(np.char.mod("m%d", np.arange(movies)))
        row: dict = {}
        begin = time.perf_counter()
        exact = SeenAwareBruteForce(k=k).reindex(tf.constant(candidates), ids)
        row["brute_force"] = {"build_seconds": time.perf_counter() - begin, "index_mib": _index_bytes(exact) / 2**20}
        begin = time.perf_counter()
        scann = ScannIndex(tf.constant(candidates), ids)
        row["scann"] = {"build_seconds": time.perf_counter() - begin, "index_mib": _index_bytes(scann) / 2**20,
                        "parameters": dataclasses.asdict(scann.parameters)}
        searches = {"brute_force": _searcher(exact, dim), "scann": _searcher(scann, dim)}
        for name, search in searches.items():
            row[name]["batch_1"] = _latencies_ms(search, probes, 1, queries, k)
            row[name]["batch_64"] = _latencies_ms(search, probes, 64, max(queries // 8, 10), k)
        truth = searches["brute_force"](tf.constant(probes[:queries]), tf.constant(k))[1].numpy()
        found = searches["scann"](tf.constant(probes[:queries]), tf.constant(k))[1].numpy()
        row["scann"]["recall_at_k"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)]))
        row["peak_rss_mib"] = peak_rss_mib()
        if export and movies == max(catalogs):
            log(f"exporting the {movies:,}-movie ScaNN index and reloading it in a clean process ...")
            with tempfile.TemporaryDirectory() as folder:
                row["scann"]["export"] = _export_and_reload(scann, dim, probes[:8], Path(folder))
        results["catalogs"][str(movies)] = row
        log(format_index_row(movies, row, k))
        del exact, scann, searches
    write_results(results, out, log)
    log(format_index_benchmark(results))
    return results


def format_index_row(movies: int, row: dict, k: int) -> str:
    lines = []
    for name in ("brute_force", "scann"):
        r = row[name]
        recall = f"{r['recall_at_k']:.3f}" if "recall_at_k" in r else "1 (exact)"
        lines.append(f"  {movies:>9,} {name.replace('_', ' '):11} {r['batch_1']['p50_ms']:8.2f} {r['batch_1']['p99_ms']:8.2f} "
                     f"{r['batch_64']['p50_ms']:9.2f} {r['batch_64']['p99_ms']:9.2f} {recall:>10} "
                     f"{r['build_seconds']:8.1f} {r['index_mib']:9.1f}")
    return "\n".join(lines)


def format_index_benchmark(results: dict) -> str:
    k = results["k"]
    lines = [f"index benchmark: dim {results['dim']}, {results['queries']} queries, k={k} "
             "(latency: ms per call, batch 1 and batch 64)",
             f"  {'movies':>9} {'index':11} {'b1 p50':>8} {'b1 p99':>8} {'b64 p50':>9} {'b64 p99':>9} "
             f"{f'recall@{k}':>10} {'build s':>8} {'index MiB':>9}"]
    for movies, row in results["catalogs"].items():
        lines.append(format_index_row(int(movies), row, k))
    for movies, row in results["catalogs"].items():
        p = row["scann"]["parameters"]
        lines.append(f"  ScaNN at {int(movies):,}: {p['leaves']} leaves, {p['leaves_to_search']} searched, "
                     f"{p['reorder']} re-scored; peak RSS {row['peak_rss_mib']:,.0f} MiB")
        if "export" in row["scann"]:
            e = row["scann"]["export"]
            lines.append(f"  exported ScaNN index: {e['export_mib']:,.0f} MiB in {e['export_seconds']:.1f} s; a clean "
                         f"process (import scann, tf.saved_model.load) loaded it in {e['reload_seconds']:.1f} s and "
                         f"answered {'the same' if e['same_answers'] else 'DIFFERENTLY'}")
    return "\n".join(lines)
