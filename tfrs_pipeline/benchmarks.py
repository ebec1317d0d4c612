"""Benchmarks that print figures (never timed assertions in tests).

``two-stage``: trains both stages and prints the top-10 ablation (retrieval alone, the
rating blend, the list ranker, EASE, most-popular) on one split.

``retrieval``: the TFRS basic-retrieval tutorial configuration (id embeddings of 32,
Adagrad 0.1, batch 8192, 3 epochs, factorized metrics computed on every training batch)
and this project's retrieval model, trained on the same split in one process; prints
both throughputs (training examples per second) and both metric sets beside
most-popular (and, with ``--with-ease``, the closed-form EASE item-item model).

    tfrs-pipeline benchmark retrieval --data movielens:../shared/datasets/ml-latest-small
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_pipeline.baselines import ease_recommender, index_recommender, most_popular_recommender
from tfrs_pipeline.config import PipelineConfig, apply_overrides
from tfrs_pipeline.data import load_data
from tfrs_pipeline.features import make_dataset, prepare
from tfrs_pipeline.index import SeenAwareBruteForce, SeenMovies
from tfrs_pipeline.metrics import ranking_report, rmse
from tfrs_pipeline.retrieval import train_retrieval
from tfrs_pipeline.split import split_ratings


class TutorialModel(tfrs.Model):
    """The model of the TFRS basic-retrieval tutorial, on movie ids."""

    def __init__(self, user_ids: list[str], movie_ids: list[str], catalog: tf.data.Dataset, dim: int = 32) -> None:
        super().__init__()
        self.user_model = tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=user_ids, mask_token=None),
                                               tf.keras.layers.Embedding(len(user_ids) + 1, dim)])
        self.movie_model = tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=movie_ids, mask_token=None),
                                                tf.keras.layers.Embedding(len(movie_ids) + 1, dim)])
        self.task = tfrs.tasks.Retrieval(metrics=tfrs.metrics.FactorizedTopK(candidates=catalog.batch(128).map(self.movie_model)))

    def compute_loss(self, features, training=False):
        # As in the tutorial: metrics on every batch, training included.
        return self.task(self.user_model(features["user_id"]), self.movie_model(features["movie_id"]))


def _timed_fit(model, dataset, epochs: int) -> float:
    start = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0)
    return time.perf_counter() - start


def benchmark_retrieval(source: str, *, config: PipelineConfig | None = None, with_ease: bool = False,
                        tutorial_epochs: int = 3, out: str | Path | None = None) -> dict:
    """Trains the tutorial configuration and ours on one split; prints and returns both."""
    config = (config or PipelineConfig()).validate()
    data = load_data(source, config.data)
    split = split_ratings(data, config.split)
    print(split.describe())
    prepared = prepare(data, split.train, config.split.validation_fraction, config.split.seed)
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, split.train)
    catalog_ids = prepared.movies.movie_ids.astype(str)
    results: dict = {"data": source, "split": vars(split.record), "train_ratings": len(split.train)}

    print(f"tutorial configuration: {tutorial_epochs} epochs, batch 8192, Adagrad 0.1, metrics on every batch")
    tf.keras.utils.set_random_seed(config.runtime.seed)
    tutorial = TutorialModel(prepared.vocab.user_ids, prepared.vocab.movie_ids,
                             tf.data.Dataset.from_tensor_slices(catalog_ids))
    tutorial.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
    tutorial_data = make_dataset(split.train, 8192, shuffle=True, seed=config.runtime.seed)
    seconds = _timed_fit(tutorial, tutorial_data, tutorial_epochs)
    tutorial_index = SeenAwareBruteForce(k=100).reindex(tutorial.movie_model(tf.constant(catalog_ids)), tf.constant(catalog_ids))
    results["tutorial"] = {"seconds": seconds, "examples_per_second": tutorial_epochs * len(split.train) / seconds,
                           **ranking_report(index_recommender(tutorial.user_model, tutorial_index, seen), split.test)}

    print("this project's retrieval model (configuration as given; early stopping on validation recall)")
    ours = train_retrieval(prepared, config.retrieval, seed=config.runtime.seed, verbose=config.runtime.verbose)
    results["ours"] = {"seconds": ours.seconds, "examples_per_second": ours.examples_per_second,
                       "epochs": len(ours.history.get("loss", [])), "best_epoch": ours.best_epoch,
                       **ranking_report(index_recommender(ours.model.query_tower.serve, ours.model.index, seen), split.test)}
    results["most_popular"] = ranking_report(
        most_popular_recommender(prepared.full_movies.movie_ids, prepared.full_movies.train_count[1:], seen), split.test)
    if with_ease:
        print("EASE (closed form, lambda 200)")
        results["ease"] = ranking_report(ease_recommender(split.train, catalog_ids, seen), split.test)

    print(format_retrieval_benchmark(results))
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"written: {out}")
    return results


def format_retrieval_benchmark(results: dict) -> str:
    columns = [name for name in ("tutorial", "ours", "most_popular", "ease") if name in results]
    lines = ["", f"{'':34}" + "".join(f"{name:>14}" for name in columns)]
    for section, keys in (("factorized_top_k", ("top_1", "top_5", "top_10", "top_50", "top_100")),
                          ("excluding_seen", ("hit_rate_at_10", "hit_rate_at_50", "hit_rate_at_100", "recall_at_10",
                                              "recall_at_100", "ndcg_at_10"))):
        for key in keys:
            label = f"{key} ({'seen kept' if section == 'factorized_top_k' else 'seen excluded'})"
            lines.append(f"{label:34}" + "".join(f"{results[c][section][key]:>14.4f}" for c in columns))
    lines.append(f"{'training examples/s':34}" + "".join(
        f"{results[c]['examples_per_second']:>14,.0f}" if "examples_per_second" in results[c] else f"{'':>14}"
        for c in columns))
    lines.append(f"{'training seconds':34}" + "".join(
        f"{results[c]['seconds']:>14.1f}" if "seconds" in results[c] else f"{'':>14}" for c in columns))
    ratio = results["ours"]["examples_per_second"] / results["tutorial"]["examples_per_second"]
    lines.append(f"throughput, ours / tutorial: {ratio:.1f}x (same process, same data)")
    return "\n".join(lines)


def benchmark_two_stage(source: str, *, config: PipelineConfig | None = None, out: str | Path | None = None) -> dict:
    """Trains both stages on ``source`` (into a temporary model folder) and prints the top-10 ablation.

    Retrieval alone, the two stages with the first release's rating blend, the two stages as
    served (the list ranker), EASE and most-popular, all on the same split, with RMSE and
    the seconds of each stage.
    """
    import tempfile

    from tfrs_pipeline.train import format_ablation, run_training

    config = apply_overrides(config or PipelineConfig(), {"data.source": source}).validate()
    with tempfile.TemporaryDirectory() as folder:
        trained = run_training(config, Path(folder) / "two-stage")
    metrics = trained.metrics
    ablation = metrics["ablation"]
    served, retrieval = ablation["two-stage, as served"], ablation["retrieval alone"]
    print(format_ablation(ablation))
    print(f"  two-stage / retrieval alone: NDCG@10 {served['ndcg_at_10'] / retrieval['ndcg_at_10']:.3f}x, "
          f"hit rate@10 {served['hit_rate_at_10'] / retrieval['hit_rate_at_10']:.3f}x")
    if "rmse" in metrics["ranking"]:
        print(f"  ranking RMSE {metrics['ranking']['rmse']:.4f} (biased MF "
              f"{metrics['baselines']['matrix_factorization']['ranking']['rmse']:.4f})")
    else:
        print(f"  ranking: {metrics['ranking']['note']}")
    training = metrics["training"]
    print(f"  seconds: retrieval {training['retrieval_seconds']:.1f}, rating head {training['ranking_seconds']:.1f}, "
          f"list ranker {training.get('list_ranker_seconds', 0.0):.1f}; whole run {trained.seconds:.0f}")
    results = {"data": source, "ablation": ablation, "ranking_rmse": metrics["ranking"].get("rmse"), "training": training,
               "seconds": trained.seconds}
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"written: {out}")
    return results


def _summary(times_ms: np.ndarray, seconds: float, users: int) -> dict:
    return {"p50_ms": float(np.percentile(times_ms, 50)), "p99_ms": float(np.percentile(times_ms, 99)),
            "users_per_second": users / seconds, "requests": len(times_ms)}


def _in_process(signature, users: list[str], batch: int, requests: int, k: int) -> dict:
    rng = np.random.default_rng(0)
    signature(user_id=tf.constant(users[:batch]), k=tf.constant(k))  # warm-up: the first call traces and allocates
    times = []
    start = time.perf_counter()
    for _ in range(requests):
        chosen = tf.constant([str(u) for u in rng.choice(users, batch)])
        begin = time.perf_counter()
        signature(user_id=chosen, k=tf.constant(k))
        times.append((time.perf_counter() - begin) * 1000.0)
    return _summary(np.asarray(times), time.perf_counter() - start, batch * requests)


def _start_server(model: str | Path, batching: bool):
    """``tfrs-pipeline serve`` in its own process (clients and server must not share a GIL); returns it and its URL."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "tfrs_pipeline.cli", "serve", "--model", str(model), "--port", "0"]
    command += ["--batching"] if batching else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    line = process.stdout.readline()
    urls = [word for word in line.split() if word.startswith("http://")]
    if not urls:
        process.kill()
        raise RuntimeError(f"the server did not start (it printed {line!r})")
    return process, urls[0]


class _LoopbackClient:
    """A minimal keep-alive HTTP/1.1 client for load generation: pre-built requests, Content-Length answers.

    ``http.client`` parses headers with the ``email`` package; at 32 clients on 2 cores that
    parsing alone costs the server CPU time this benchmark is meant to measure.
    """

    def __init__(self, host: str, port: int) -> None:
        import socket

        self.socket = socket.create_connection((host, port), timeout=60)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def call(self, request: bytes) -> int:
        """Sends one request; returns the status once the whole answer arrived."""
        self.socket.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(self.buffer) < length:
            self._receive()
        self.buffer = self.buffer[length:]
        return int(head.split(b" ", 2)[1])

    def _receive(self) -> None:
        chunk = self.socket.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.socket.close()


def _http_clients(url: str, name: str, users: list[str], clients: int, requests: int, k: int) -> dict:
    """``clients`` threads, each on its own keep-alive connection, ``requests`` one-user predict calls each."""
    import concurrent.futures

    host, port = url.removeprefix("http://").split(":")
    path = f"/v1/models/{name}:predict"

    def request_for(user: str) -> bytes:
        body = json.dumps({"inputs": {"user_id": [user], "k": k}}).encode()
        return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    prepared = [request_for(user) for user in users[:2000]]

    def client(seed: int, count: int = requests) -> list[float]:
        rng = np.random.default_rng(seed)
        connection = _LoopbackClient(host, int(port))
        times = []
        try:
            for index in rng.integers(0, len(prepared), count):
                begin = time.perf_counter()
                status = connection.call(prepared[index])
                if status != 200:
                    raise RuntimeError(f"the server answered {status}")
                times.append((time.perf_counter() - begin) * 1000.0)
        finally:
            connection.close()
        return times

    client(clients, 20)  # warm-up on a connection of its own
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        times = [t for result in pool.map(client, range(clients)) for t in result]
    return _summary(np.asarray(times), time.perf_counter() - start, clients * requests)


def benchmark_serving(model: str | Path, *, clients: tuple[int, ...] = (1, 8, 32), requests: int = 200, k: int = 10,
                      out: str | Path | None = None) -> dict:
    """Users per second and p50/p99 milliseconds of ``serving_default``: in-process, and over HTTP on loopback
    at each client count with and without server-side batching (the server runs in its own process).

    Args:
        requests: requests per client at each client count (and in-process calls per measurement).
    """
    from tfrs_pipeline.client import Recommender

    recommender = Recommender.load(model)
    signature = recommender.signatures["serving_default"]
    users = [str(u) for u in recommender.known_users()]
    results: dict = {"model": str(recommender.path), "k": k, "requests_per_client": requests, "http": {}}
    results["in_process_batch_1"] = _in_process(signature, users, 1, requests, k)
    results["in_process_batch_32"] = _in_process(signature, users, 32, max(requests // 4, 10), k)
    for batching in (False, True):
        label = "batching" if batching else "direct"
        process, url = _start_server(recommender.path, batching)
        try:
            for count in clients:
                results["http"][f"{label}_{count}"] = _http_clients(url, recommender.name, users, count, requests, k)
        finally:
            process.terminate()
            process.wait(timeout=60)
    print(format_serving_benchmark(results, clients))
    if out:
        Path(out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def format_serving_benchmark(results: dict, clients) -> str:
    lines = [f"serving {results['model']} (serving_default, one user per request, k={results['k']}, "
             f"{results['requests_per_client']} requests per client):",
             f"  {'':24} {'users/s':>9} {'p50 ms':>8} {'p99 ms':>8}"]
    for name in ("in_process_batch_1", "in_process_batch_32"):
        r = results[name]
        lines.append(f"  {name.replace('_', ' '):24} {r['users_per_second']:9,.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")
    for label in ("direct", "batching"):
        for count in clients:
            r = results["http"][f"{label}_{count}"]
            lines.append(f"  {'HTTP ' + label + f', {count} client' + ('s' if count > 1 else ''):24} "
                         f"{r['users_per_second']:9,.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")
    one = results["http"][f"direct_{clients[0]}"]
    lines.append(f"  HTTP p50 at {clients[0]} client / in-process p50: "
                 f"{one['p50_ms'] / results['in_process_batch_1']['p50_ms']:.2f}x")
    top = results["http"][f"batching_{clients[-1]}"]["users_per_second"]
    lines.append(f"  batching at {clients[-1]} clients / {clients[0]} client throughput: "
                 f"{top / one['users_per_second']:.2f}x without batching at {clients[0]}, "
                 f"{top / results['http'][f'batching_{clients[0]}']['users_per_second']:.2f}x with it")
    return "\n".join(lines)


def compare_retrieval_variants(source: str, variants: dict[str, dict], *, epochs: int = 20,
                               config: PipelineConfig | None = None):
    """Trains each retrieval variant (configuration overrides) on one split; a table beside most-popular."""
    import pandas as pd

    config = (config or PipelineConfig()).validate()
    data = load_data(source, config.data)
    split = split_ratings(data, config.split)
    prepared = prepare(data, split.train, config.split.validation_fraction, config.split.seed)
    seen = SeenMovies(prepared.vocab, prepared.movies.movie_ids, split.train)
    rows = {}
    for name, overrides in variants.items():
        variant = apply_overrides(config, {"retrieval.epochs": epochs, **overrides}).validate()
        result = train_retrieval(prepared, variant.retrieval, seed=config.runtime.seed, verbose=0)
        report = ranking_report(index_recommender(result.model.query_tower.serve, result.model.index, seen), split.test)
        rows[name] = {**_flatten(report), "training examples/s": result.examples_per_second,
                      "best epoch": result.best_epoch}
        print(f"{name}: recall@100 {rows[name]['recall_at_100']:.4f}, best epoch {result.best_epoch}")
    rows["most popular"] = _flatten(ranking_report(
        most_popular_recommender(prepared.full_movies.movie_ids, prepared.full_movies.train_count[1:], seen), split.test))
    return pd.DataFrame.from_dict(rows, orient="index")


def _flatten(report: dict) -> dict:
    flat = {f"factorized {k}": v for k, v in report["factorized_top_k"].items()}
    flat.update(report["excluding_seen"])
    return flat


def compare_ranking(source: str, *, epochs: int = 30, config: PipelineConfig | None = None):
    """Test RMSE of the ranking model beside global mean, movie mean and biased matrix factorization."""
    import pandas as pd

    from tfrs_pipeline.baselines import BiasedMatrixFactorization, movie_mean
    from tfrs_pipeline.ranking import predict_ratings, train_ranking

    config = apply_overrides(config or PipelineConfig(), {"ranking.epochs": epochs}).validate()
    data = load_data(source, config.data)
    split = split_ratings(data, config.split)
    prepared = prepare(data, split.train, config.split.validation_fraction, config.split.seed)
    test = split.test
    model = train_ranking(prepared, config.ranking, seed=config.runtime.seed, verbose=0).model
    mf = BiasedMatrixFactorization(factors=32, regularization=15.0, rating_scale=data.rating_scale).fit(split.train)
    predictions = {
        "global mean": np.full(len(test), split.train["rating"].mean()),
        "movie mean": movie_mean(split.train, test["movie_id"]),
        "biased matrix factorization (ALS, 32 factors)": mf.predict(test["user_id"], test["movie_id"]),
        "ranking model": predict_ratings(model, test["user_id"], test["movie_id"]),
    }
    return pd.DataFrame({"rmse": {name: rmse(p, test["rating"]) for name, p in predictions.items()}})
