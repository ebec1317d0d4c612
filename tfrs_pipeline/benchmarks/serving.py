"""The serving benchmark: ``serving_default`` in process and over HTTP on loopback, with and without batching."""

from __future__ import annotations

import contextlib
import gc
import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_pipeline.benchmarks.output import write_results


def _summary(times_ms: np.ndarray, seconds: float, users: int) -> dict:
    return {"p50_ms": float(np.percentile(times_ms, 50)), "p99_ms": float(np.percentile(times_ms, 99)),
            "users_per_second": users / seconds, "requests": len(times_ms)}


@contextlib.contextmanager
def _collector_paused():
    """Python's garbage collector off while measuring, as ``timeit`` does: this process holds
    TensorFlow and the model, and a full collection here stopped every client thread for up to
    170 ms, which the clients counted as the server's latency."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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


def _start_server(model: str | Path, batching: bool, options: list[str] | tuple[str, ...] = ()):
    """``tfrs-pipeline serve`` in its own process (clients and server must not share a GIL); returns it and its URL.

    Args:
        options: more of ``serve``'s options, such as ``--intra-op-threads=1``.
    """
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "tfrs_pipeline.cli", "serve", "--model", str(model), "--port", "0", *options]
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


def _http_clients(url: str, name: str, users: list[str], clients: int, requests: int, k: int,
                  batches: bool = False) -> dict:
    """``clients`` threads, each on its own keep-alive connection, ``requests`` one-user predict calls each.

    Args:
        batches: also report the server's batch means over the measured requests (``--batching``).
    """
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
    before = _batch_totals(url) if batches else None
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        times = [t for result in pool.map(client, range(clients)) for t in result]
    summary = _summary(np.asarray(times), time.perf_counter() - start, clients * requests)
    if before is not None:  # the server's own view: how full its batches were and where the time went
        summary["batches"] = _batch_means(before, _batch_totals(url))
    return summary


def _heavy_mix(url: str, name: str, users: list[str], clients: int, requests: int, k: int,
               heavy_share: float = 0.2) -> dict:
    """Valid one-user requests beside heavy valid ones (as many users x k as ``--max-answer`` allows, k 1000):
    how many valid requests fail (0 expected) and the one-user requests' p50/p99; and the status of a
    request past the limit (1,024 users x k 1,000: 400 expected, never an answer that holds the others up)."""
    import concurrent.futures

    host, port = url.removeprefix("http://").split(":")
    path = f"/v1/models/{name}:predict"

    def request(body: dict) -> bytes:
        data = json.dumps(body).encode()
        return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode() + data

    light = [request({"inputs": {"user_id": [user], "k": k}}) for user in users[:2000]]
    heavy = request({"signature_name": "retrieve", "inputs": {"user_id": users[:100], "k": 1000}})
    oversized = request({"signature_name": "retrieve", "inputs": {"user_id": (users * 1024)[:1024], "k": 1000}})

    def client(seed: int) -> tuple[list[float], int, int]:
        rng = np.random.default_rng(seed)
        times, failed, heavy_answered = [], 0, 0
        connection = _LoopbackClient(host, int(port))
        try:
            for _ in range(requests):
                is_heavy = rng.random() < heavy_share
                begin = time.perf_counter()
                try:
                    status = connection.call(heavy if is_heavy else light[rng.integers(0, len(light))])
                except (ConnectionError, OSError):
                    failed += 1
                    connection.close()
                    connection = _LoopbackClient(host, int(port))
                    continue
                if status != 200:
                    failed += 1
                elif is_heavy:
                    heavy_answered += 1
                else:
                    times.append((time.perf_counter() - begin) * 1000.0)
        finally:
            connection.close()
        return times, failed, heavy_answered

    probe = _LoopbackClient(host, int(port))
    try:
        refused = probe.call(oversized)
    finally:
        probe.close()
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    times = np.asarray([t for result in results for t in result[0]])
    summary = _summary(times, time.perf_counter() - start, len(times))
    summary.update(valid_failed=sum(r[1] for r in results), heavy_answered=sum(r[2] for r in results),
                   light_answered=len(times), oversized_status=refused, clients=clients, heavy_share=heavy_share)
    return summary


_BATCH_SERIES = ("tfrs_batch_size_sum", "tfrs_batch_size_count", "tfrs_batch_queue_seconds_sum",
                  "tfrs_batch_call_seconds_sum")


def _batch_totals(url: str) -> dict[str, float]:
    """The server's running batch totals, read from its ``/metrics``."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=30) as answer:
        lines = answer.read().decode().splitlines()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in lines if line.split(" ")[0] in _BATCH_SERIES}


def _batch_means(before: dict[str, float], after: dict[str, float]) -> dict:
    """Rows per call, milliseconds queued and milliseconds per call over the calls between two readings."""
    calls = after["tfrs_batch_size_count"] - before["tfrs_batch_size_count"]
    mean = {name: (after[name] - before[name]) / max(calls, 1) for name in _BATCH_SERIES}
    return {"calls": int(calls), "rows_per_call": mean["tfrs_batch_size_sum"],
            "queue_ms": mean["tfrs_batch_queue_seconds_sum"] * 1000.0,
            "call_ms": mean["tfrs_batch_call_seconds_sum"] * 1000.0}


def benchmark_serving(model: str | Path, *, clients: tuple[int, ...] = (1, 8, 32), requests: int = 200, k: int = 10,
                      out: str | Path | None = None, server_options: list[str] | tuple[str, ...] = ()) -> dict:
    """Users per second and p50/p99 milliseconds of ``serving_default``: in-process, and over HTTP on loopback
    at each client count with and without server-side batching (the server runs in its own process).

    Args:
        requests: requests per client at each client count (and in-process calls per measurement).
        server_options: more of ``tfrs-pipeline serve``'s options for the server, such as ``--intra-op-threads=1``.
    """
    from tfrs_pipeline.recommender import Recommender

    recommender = Recommender.load(model)
    signature = recommender.signatures["serving_default"]
    users = [str(u) for u in recommender.known_users()]
    results: dict = {"model": str(recommender.path), "k": k, "requests_per_client": requests, "http": {},
                     "server_options": list(server_options)}
    with _collector_paused():
        results["in_process_batch_1"] = _in_process(signature, users, 1, requests, k)
        results["in_process_batch_32"] = _in_process(signature, users, 32, max(requests // 4, 10), k)
    for batching in (False, True):
        label = "batching" if batching else "direct"
        process, url = _start_server(recommender.path, batching, server_options)
        try:
            for count in clients:
                with _collector_paused():
                    results["http"][f"{label}_{count}"] = _http_clients(url, recommender.name, users, count,
                                                                        requests, k, batches=batching)
            if not batching:  # heavy valid requests beside light ones, at the most clients
                with _collector_paused():
                    results["heavy_mix"] = _heavy_mix(url, recommender.name, users, clients[-1],
                                                      max(requests // 4, 10), k)
        finally:
            process.terminate()
            process.wait(timeout=60)
    print(format_serving_benchmark(results, clients))
    write_results(results, out)
    return results


def format_serving_benchmark(results: dict, clients) -> str:
    lines = [f"serving {results['model']} (serving_default, one user per request, k={results['k']}, "
             f"{results['requests_per_client']} requests per client"
             + (f"; server {' '.join(results['server_options'])}" if results.get("server_options") else "") + "):",
             f"  {'':24} {'users/s':>9} {'p50 ms':>8} {'p99 ms':>8}"]
    for name in ("in_process_batch_1", "in_process_batch_32"):
        r = results[name]
        lines.append(f"  {name.replace('_', ' '):24} {r['users_per_second']:9,.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")
    for label in ("direct", "batching"):
        for count in clients:
            r = results["http"][f"{label}_{count}"]
            lines.append(f"  {'HTTP ' + label + f', {count} client' + ('s' if count > 1 else ''):24} "
                         f"{r['users_per_second']:9,.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")
    for count in clients:
        b = results["http"][f"batching_{count}"].get("batches")
        if b:
            lines.append(f"  batches at {count} client{'s' if count > 1 else ''}: {b['rows_per_call']:.1f} rows per call, "
                         f"{b['queue_ms']:.2f} ms from first request to call, {b['call_ms']:.2f} ms per call "
                         f"(means of {b['calls']:,} calls)")
    heavy = results.get("heavy_mix")
    if heavy:
        lines.append(f"  heavy mix at {heavy['clients']} clients ({heavy['heavy_share']:.0%} of requests retrieve "
                     f"100 users x k 1000): {heavy['valid_failed']} valid requests failed of "
                     f"{heavy['light_answered'] + heavy['heavy_answered'] + heavy['valid_failed']:,}; one-user "
                     f"p50 {heavy['p50_ms']:.1f} ms, p99 {heavy['p99_ms']:.1f} ms; 1,024 users x k 1000 answered "
                     f"{heavy['oversized_status']}")
    one = results["http"][f"direct_{clients[0]}"]
    lines.append(f"  HTTP p50 at {clients[0]} client / in-process p50: "
                 f"{one['p50_ms'] / results['in_process_batch_1']['p50_ms']:.2f}x")
    top = results["http"][f"batching_{clients[-1]}"]["users_per_second"]
    lines.append(f"  batching at {clients[-1]} clients / {clients[0]} client throughput: "
                 f"{top / one['users_per_second']:.2f}x without batching at {clients[0]}, "
                 f"{top / results['http'][f'batching_{clients[0]}']['users_per_second']:.2f}x with it")
    return "\n".join(lines)
