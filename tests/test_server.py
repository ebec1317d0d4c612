"""The HTTP server: TensorFlow Serving's REST contract, versions loaded while it runs, limits, load and faults.

Every server here binds to 127.0.0.1 on a free port; every loop is bounded in count and time.
"""

from __future__ import annotations

import concurrent.futures
import gc
import http.client
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tfrs_pipeline.server import make_server
from tfrs_pipeline.server.rest import Limits

LIMITS = Limits(max_body_bytes=64 * 1024, max_batch=64, max_list=50, max_k=1000, max_answer=20_000, timeout_seconds=20)


@pytest.fixture(scope="module")
def base(trained, tmp_path_factory):
    """A model base of our own holding version 1 (a copy of the trained model), for tests that add versions."""
    folder = tmp_path_factory.mktemp("served") / "movies"
    shutil.copytree(trained.path, folder / "1")
    return folder


@pytest.fixture(scope="module")
def server(base):
    server = make_server(base, port=0, limits=LIMITS, poll_seconds=0.2)
    server.start()
    yield server
    server.stop()


class Client:
    """One keep-alive connection; answers are (status, parsed JSON body, raw text)."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def request(self, method: str, path: str, body=None, raw: bytes | None = None):
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        self.connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        text = response.read().decode()
        parsed = json.loads(text) if response.getheader("Content-Type", "").startswith("application/json") else None
        return response.status, parsed, text

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def client(server):
    client = Client(server.url)
    yield client
    client.close()


def _predict(client, name="movies", **body):
    return client.request("POST", f"/v1/models/{name}:predict", body)


# -- TensorFlow Serving's contract -------------------------------------------------------------------


def test_model_status_version_and_metadata(client):
    status, body, _ = client.request("GET", "/v1/models/movies")
    assert status == 200
    assert body["model_version_status"][0] == {"version": "1", "state": "AVAILABLE",
                                               "status": {"error_code": "OK", "error_message": ""}}
    assert client.request("GET", "/v1/models/movies/versions/1")[0] == 200
    status, body, _ = client.request("GET", "/v1/models/movies/versions/9")
    assert status == 404 and "no version 9" in body["error"]
    status, body, _ = client.request("GET", "/v1/models/movies/metadata")
    assert status == 200 and body["model_spec"] == {"name": "movies", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["user_id"]["dtype"] == "DT_STRING" and signature["inputs"]["k"]["dtype"] == "DT_INT32"
    assert {"movie_ids", "titles", "predicted_ratings", "known_user"} <= set(signature["outputs"])
    status, body, _ = client.request("GET", "/v1/models/other")
    assert status == 404 and "'other' not found" in body["error"]


def test_predict_columnar_and_row_formats(client):
    status, body, _ = _predict(client, inputs={"user_id": ["1", "2"], "k": 3})
    assert status == 200 and len(body["outputs"]["movie_ids"]) == 2 and len(body["outputs"]["titles"][0]) == 3
    status, body, _ = _predict(client, signature_name="similar_movies",
                               instances=[{"movie_id": "1", "k": 2}, {"movie_id": "2", "k": 2}])
    assert status == 200 and [len(row["movie_ids"]) for row in body["predictions"]] == [2, 2]
    assert isinstance(body["predictions"][0]["known_movie"], bool)
    status, body, _ = client.request("POST", "/v1/models/movies/versions/1:predict",
                                     {"inputs": {"user_id": ["1"], "k": 1}})
    assert status == 200


def test_row_format_with_different_k_is_refused_with_how_to_send_it(client):
    status, body, _ = _predict(client, instances=[{"user_id": "1", "k": 3}, {"user_id": "2", "k": 5}])
    assert status == 400 and "send one request per k" in body["error"] and '"inputs"' in body["error"]
    status, body, _ = _predict(client, inputs={"user_id": ["1"], "k": 2}, instances=[{"user_id": "1", "k": 2}])
    assert status == 400 and "both" in body["error"]


@pytest.mark.parametrize("body,status,expected", [
    ({"inputs": {"user_id": ["1"], "k": -1}}, 400, "k must be between 1 and 1,000, got -1"),
    ({"inputs": {"user_id": ["1"], "k": 1001}}, 400, "k must be between 1 and 1,000"),
    ({"inputs": {"user_id": ["1"]}}, 400, "missing ['k']"),
    ({"inputs": {"user_id": ["1"], "k": "ten"}}, 400, "input 'k' must be an integer"),
    ({"inputs": {"user_id": [1], "k": 2}}, 400, "1 is not a string"),
    ({"inputs": {"user_id": ["1"] * 65, "k": 2}}, 400, "the limit is 64 per request"),
    ({"signature_name": "nope", "inputs": {}}, 404, "signature 'nope' not found"),
    ({"signature_name": "recommend_excluding",
      "inputs": {"user_id": ["1", "2"], "exclude_movie_ids": [["1"], ["2", "3"]], "k": 2}}, 400, 'pad shorter rows'),
    ({"inputs": {"user_id": ["1"], "k": 2}, "extra": 1}, 400, "unknown request field"),
    ({"signature_name": "retrieve", "inputs": {"user_id": ["1"] * 64, "k": 1000}}, 400,
     "the answer would hold 64,000 movies (64 rows x k 1,000); the limit is 20,000 (--max-answer)"),
])
def test_bad_predict_requests_get_tf_serving_codes_and_a_message(client, body, status, expected):
    got, answer, _ = _predict(client, **body)
    assert (got, expected in answer["error"]) == (status, True), answer


def test_bodies_that_are_not_json_or_too_large(client):
    status, body, _ = client.request("POST", "/v1/models/movies:predict", raw=b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    status, body, _ = client.request("POST", "/v1/models/movies:predict", raw=b" " * (LIMITS.max_body_bytes + 1))
    assert status == 413 and "65,536" in body["error"]


def test_non_finite_scores_are_written_as_tf_serving_writes_them(client, trained):
    # k above what a user has left: the tail of retrieve's scores is -inf.
    catalog = len(trained.data.movies)
    status, body, text = _predict(client, signature_name="retrieve", inputs={"user_id": ["1"], "k": catalog})
    assert status == 200 and "-Infinity" in text and "null" not in text
    assert math.isinf(body["outputs"]["retrieval_scores"][0][-1])


def test_float_outputs_read_back_as_the_models_float32_values(client, base):
    import numpy as np
    import tensorflow as tf

    status, body, text = _predict(client, inputs={"user_id": ["1", "2"], "k": 5})
    expected = tf.saved_model.load(str(base / "1")).signatures["serving_default"](
        user_id=tf.constant(["1", "2"]), k=tf.constant(5))
    for name in ("scores", "predicted_ratings", "retrieval_scores"):
        assert np.array_equal(np.asarray(body["outputs"][name], np.float32), expected[name].numpy()), name
    assert body["outputs"]["titles"] == [[t.decode() for t in row] for row in expected["titles"].numpy()]
    # The shortest decimal of each float32, not the 17 digits of its float64 widening.
    value = next(v for v in expected["predicted_ratings"].numpy().ravel() if str(v) != repr(float(v)))
    assert str(value) in text and repr(float(value)) not in text


def test_a_post_to_an_unknown_route_does_not_leak_its_body_into_the_next_request(client):
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    status, _, _ = client.request("POST", "/nowhere", raw=smuggled)
    assert status in (404, 405)
    status, body, _ = client.request("GET", "/v1/models/movies")  # same connection: its own answer, nothing else
    assert status == 200 and "model_version_status" in body


# -- signatures for new users and exclusions ---------------------------------------------------------------


def test_recommend_from_history_and_per_call_exclusions(client, trained):
    status, body, _ = _predict(client, signature_name="recommend_from_history",
                               inputs={"movie_ids": [["1", "2", "3"], ["nope", "", ""]], "k": 5})
    assert status == 200 and body["outputs"]["history_known"] == [3, 0]
    first = body["outputs"]["movie_ids"][0]
    assert len(first) == 5 and not {"1", "2", "3"} & set(first)
    status, base, _ = _predict(client, inputs={"user_id": ["1"], "k": 3})
    excluded = base["outputs"]["movie_ids"][0][:2]
    status, body, _ = _predict(client, signature_name="recommend_excluding",
                               inputs={"user_id": ["1"], "exclude_movie_ids": [excluded], "k": 3})
    assert status == 200 and not set(excluded) & set(body["outputs"]["movie_ids"][0])
    assert len(body["outputs"]["movie_ids"][0]) == 3 and body["outputs"]["known_user"] == [True]
    status, body, _ = client.request("GET", "/recommend?history=1,2&k=4")
    assert status == 200 and body["history_known"] == 2 and len(body["movies"]) == 4
    status, body, _ = client.request("GET", f"/recommend?user_id=1&k=3&exclude={','.join(excluded)}")
    assert status == 200 and not set(excluded) & {m["movie_id"] for m in body["movies"]}


def test_a_known_users_new_ratings_change_the_list_over_http(client, trained):
    train = trained.split.train
    rated = train.loc[train["user_id"].astype(str) == "1", "movie_id"].astype(str).tolist()
    status, before, _ = client.request("GET", "/recommend?user_id=1&k=5")
    new = before["movies"][0]["movie_id"]  # user 1 goes on to rate their first recommendation
    status, after, _ = client.request("GET", f"/recommend?user_id=1&k=5&history={new}")
    assert status == 200 and after["known_user"] is True and after["history_known"] == len(set(rated)) + 1
    assert new not in {m["movie_id"] for m in after["movies"]} and len(after["movies"]) == 5
    status, body, _ = _predict(client, signature_name="recommend_with_history",
                               inputs={"user_id": ["1", ""], "movie_ids": [[new], [new]],
                                       "exclude_movie_ids": [[""], [""]], "k": 5})
    assert status == 200 and body["outputs"]["movie_ids"][0] == [m["movie_id"] for m in after["movies"]]
    assert body["outputs"]["history_known"] == [len(set(rated)) + 1, 1] and body["outputs"]["known_user"] == [True, False]
    # A visitor who brings user 1's training movies and the new one: user 1's list.
    status, visitor, _ = client.request("GET", f"/recommend?history={','.join(rated + [new])}&k=5")
    assert [m["movie_id"] for m in visitor["movies"]] == [m["movie_id"] for m in after["movies"]]
    assert "known_user" not in visitor


def test_browser_routes_health_and_metrics(client, caplog):
    with caplog.at_level(logging.INFO, logger="tfrs_pipeline.access"):
        status, body, _ = client.request("GET", "/recommend?user_id=1&k=4")
        # The line is written once the answer has gone out: wait for it (bounded).
        _wait_for(lambda: any('"GET /recommend" 200' in r.getMessage() and r.getMessage().endswith(" ms")
                              for r in caplog.records if r.name == "tfrs_pipeline.access"), seconds=10)
    assert status == 200 and body["known_user"] is True and len(body["movies"]) == 4
    assert set(body["movies"][0]) == {"movie_id", "title", "ranker_score", "predicted_rating", "retrieval_score"}
    ranker_scores = [movie["ranker_score"] for movie in body["movies"]]
    assert ranker_scores == sorted(ranker_scores, reverse=True)  # the list's order, shown beside each movie
    status, body, _ = client.request("GET", "/recommend?user_id=stranger&k=2")  # as Python and the command line
    assert status == 404 and "allow_unknown=true" in body["error"]
    assert client.request("GET", "/recommend?user_id=stranger&k=2&allow_unknown=true")[1]["known_user"] is False
    assert client.request("GET", "/recommend?user_id=1&allow_unknown=maybe")[0] == 400
    status, body, _ = client.request("GET", "/similar?movie_id=1&k=3")
    # The Python table's column name; "score", its name before this release, stays for one release.
    assert status == 200 and all(-1 <= m["similarity"] == m["score"] <= 1 for m in body["movies"])
    status, body, _ = client.request("GET", "/rated?user_id=1&k=3")
    assert status == 200 and body["known_user"] is True and len(body["movies"]) == 3
    assert [m["rating"] for m in body["movies"]] == sorted((m["rating"] for m in body["movies"]), reverse=True)
    status, body, _ = client.request("GET", "/examples")
    assert status == 200 and len(body["user_ids"]) == 5
    status, body, _ = client.request("GET", "/recommend?user_id=1&k=-5")
    assert status == 400 and "k must be an integer between 1 and 1,000" in body["error"]
    assert client.request("GET", "/healthz")[1]["status"] == "ok"
    status, _, text = client.request("GET", "/metrics")
    assert status == 200
    assert 'tfrs_requests_total{method="GET",route="/recommend",status="200"}' in text
    assert 'tfrs_request_seconds_bucket{le="0.1",route="/recommend"}' in text
    assert 'tfrs_model_version_state{model="movies",state="AVAILABLE",version="1"} 1.0' in text


def test_the_page_for_people_is_served_whole_with_nothing_from_elsewhere(client):
    status, _, text = client.request("GET", "/")
    assert status == 200 and "<title>tfrs-pipeline" in text
    for element in ('id="user-id"', 'id="recommend-user"', 'id="movie-search"', 'id="recommend-history"',
                    'id="results"', 'id="similar"'):
        assert element in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # no external scripts, styles or fonts


def test_title_search_and_explanations_over_http(client, trained):
    from tfrs_pipeline.recommender import Recommender

    catalog = Recommender.load(trained.path).catalog
    title = catalog.loc[catalog["movie_id"] == "7", "title"].iloc[0]
    status, body, _ = client.request("GET", f"/movies?q={urllib.parse.quote(title.upper()[:-7])}&k=50")
    assert status == 200 and {"movie_id": "7", "title": title} in body["movies"] and len(body["movies"]) <= 50
    assert client.request("GET", "/movies?q=7")[1]["movies"][0]["movie_id"] == "7"  # an id is found too
    assert client.request("GET", "/movies")[0] == 400
    listed = [m["movie_id"] for m in client.request("GET", "/recommend?user_id=1&k=3")[1]["movies"]]
    status, body, _ = client.request("GET", f"/explain?user_id=1&movie_id={','.join(listed)}&k=2")
    assert status == 200 and body["known_user"] is True and [row["movie_id"] for row in body["movies"]] == listed
    for row in body["movies"]:
        assert len(row["because"]) <= 2 and all(b["title"] and 0 <= b["share"] <= 1 for b in row["because"])


def test_get_routes_keep_the_list_limit_of_predict(client):
    too_many = ",".join(str(i) for i in range(LIMITS.max_list + 1))
    for path in (f"/recommend?history={too_many}", f"/recommend?user_id=1&exclude={too_many}",
                 f"/explain?user_id=1&movie_id={too_many}"):
        status, body, _ = client.request("GET", path)
        assert status == 400 and f"the limit is {LIMITS.max_list:,}" in body["error"], path


# -- load and faults -----------------------------------------------------------------------------------------

MIXED = [  # (body, status every answer must have)
    ({"inputs": {"user_id": ["1"], "k": 10}}, 200),
    ({"instances": [{"user_id": "2", "k": 5}]}, 200),
    ({"signature_name": "similar_movies", "inputs": {"movie_id": ["3"], "k": 4}}, 200),
    ({"inputs": {"user_id": ["1"], "k": -1}}, 400),
    ({"inputs": {"user_id": "1", "k": 3}}, 400),
    ({"signature_name": "missing", "inputs": {}}, 404),
    (None, 400),  # a body that is not JSON
    (b'{"inputs": {"user_id": ["\\ud800"], "k": 3}}', 400),  # a lone surrogate: it failed its whole batch
    (b'{"inputs": {"user_id": ["1"], "k": Infinity}}', 400),
    (b'{"inputs": {"user_id": ["1"], "k": 1e400}}', 400),
    ({"inputs": {"user_id": ["4"], "k": 3}}, 200),
]


def _hammer(url: str, worker: int, requests: int) -> list[tuple[int, int]]:
    client = Client(url, timeout=60)
    seen = []
    try:
        for i in range(requests):
            body, expected = MIXED[(worker + i) % len(MIXED)]
            raw = b"{oops" if body is None else body if isinstance(body, bytes) else None
            body = None if raw is not None else body
            status, answer, _ = client.request("POST", "/v1/models/movies:predict", body=body, raw=raw)
            seen.append((status, expected))
    finally:
        client.close()
    return seen


@pytest.mark.parametrize("batching,threads", [(False, 1), (True, 1), (True, 2)],
                         ids=["direct", "batching", "batching-2-threads"])
def test_32_concurrent_clients_get_no_5xx_and_no_dropped_connection(base, batching, threads):
    server = make_server(base, port=0, limits=LIMITS, batching=batching, batch_window_ms=2, batch_threads=threads)
    server.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            results = [f.result(timeout=120) for f in [pool.submit(_hammer, server.url, w, 8) for w in range(32)]]
        metrics = Client(server.url).request("GET", "/metrics")[2]
    finally:
        server.stop()
    answers = [pair for result in results for pair in result]
    assert len(answers) == 32 * 8  # every request answered: a reset or drop would have raised
    assert [got for got, expected in answers if got != expected] == []
    if batching:
        batcher = server.application.batcher
        assert batcher.calls < batcher.rows  # some requests shared a call
        # Each call's rows, queueing and call time are in the metrics, one observation per call.
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                  if line.startswith("tfrs_batch_") and not line.startswith("tfrs_batch_size_bucket")}
        assert 0 < values["tfrs_batch_size_count"] <= batcher.calls
        assert values["tfrs_batch_size_count"] < values["tfrs_batch_size_sum"] <= batcher.rows
        assert values["tfrs_batch_queue_seconds_count"] == values["tfrs_batch_call_seconds_count"] == \
            values["tfrs_batch_size_count"]
        assert values["tfrs_batch_call_seconds_sum"] > 0


def test_a_silent_client_does_not_block_others(server, client):
    silent = socket.create_connection((server.host, server.port), timeout=10)
    half = socket.create_connection((server.host, server.port), timeout=10)
    try:
        half.sendall(b"POST /v1/models/movies:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
        start = time.perf_counter()
        status, _, _ = _predict(client, inputs={"user_id": ["1"], "k": 2})
        assert status == 200 and time.perf_counter() - start < 10
    finally:
        silent.close()
        half.close()


def test_a_body_that_never_arrives_gets_408_and_the_limit_in_the_message(base):
    server = make_server(base / "1", port=0, limits=Limits(timeout_seconds=1.0))
    server.start()
    try:
        connection = socket.create_connection((server.host, server.port), timeout=30)
        connection.sendall(b"POST /v1/models/movies:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n\r\n{")
        answer = connection.recv(65536)
        connection.close()
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer


def _wait_for(condition, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _publish(source: Path, target: Path) -> None:
    """Copies a version in as `train` publishes one: written under a staging name, then renamed."""
    staging = target.with_name(f".{target.name}.partial")
    shutil.copytree(source, staging)
    staging.rename(target)


def test_new_versions_are_picked_up_and_broken_ones_leave_the_old_one_serving(base, server, client):
    (base / ".4.partial").mkdir()  # a version being written is never looked at
    _publish(base / "1", base / "2")
    _wait_for(lambda: client.request("GET", "/healthz")[1]["version"] == "2")

    def states():
        return {s["version"]: s["state"] for s in client.request("GET", "/v1/models/movies")[1]["model_version_status"]}

    # The latest policy unloads the older version (UNLOADING, then END) once the new one is available.
    _wait_for(lambda: states() == {"2": "AVAILABLE", "1": "END"}, seconds=30)

    broken = base / ".3.partial"
    shutil.copytree(base / "1", broken)
    variables = next((broken / "variables").glob("variables.data-*"))
    variables.write_bytes(variables.read_bytes()[:100])
    broken.rename(base / "3")
    status = _wait_for(lambda: next((s for s in client.request("GET", "/v1/models/movies")[1]["model_version_status"]
                                     if s["version"] == "3" and s["state"] == "END"), None))
    assert status["status"]["error_code"] == "UNKNOWN" and "variables" in status["status"]["error_message"]
    assert client.request("GET", "/healthz")[1]["version"] == "2"
    assert _predict(client, inputs={"user_id": ["1"], "k": 2})[0] == 200
    assert client.request("GET", "/v1/models/movies/versions/3")[1]["model_version_status"][0]["state"] == "END"
    assert not any(s["version"] == "4" for s in client.request("GET", "/v1/models/movies")[1]["model_version_status"])


def test_version_policy_all_and_labels(base, tmp_path):
    labels = tmp_path / "labels.toml"
    labels.write_text("[labels]\nstable = 1\ncanary = 2\n")
    bases = tmp_path / "movies"
    for version in ("1", "2"):
        shutil.copytree(base / "1", bases / version)
    server = make_server(bases, port=0, version_policy="all", labels_path=labels, poll_seconds=0.2)
    server.start()
    client = Client(server.url)
    try:
        states = client.request("GET", "/v1/models/movies")[1]["model_version_status"]
        assert {s["version"]: s["state"] for s in states} == {"1": "AVAILABLE", "2": "AVAILABLE"}
        status, body, _ = client.request("GET", "/v1/models/movies/labels/canary")
        assert status == 200 and body["model_version_status"][0]["version"] == "2"
        body = {"inputs": {"user_id": ["1"], "k": 2}}
        assert client.request("POST", "/v1/models/movies/labels/stable:predict", body)[0] == 200
        status, answer, _ = client.request("POST", "/v1/models/movies/labels/nope:predict", body)
        assert status == 404 and "no label 'nope'" in answer["error"]
        assert client.request("GET", "/v1/models/movies/labels/stable/metadata")[1]["model_spec"]["version"] == "1"
    finally:
        client.close()
        server.stop()


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(base, tmp_path):
    command = [sys.executable, "-m", "tfrs_pipeline.cli", "serve", "--model-base", str(base), "--port", "0",
               "--version-policy", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        line = process.stdout.readline()  # "serving ... on http://127.0.0.1:PORT ..."
        url = next(word for word in line.split() if word.startswith("http://"))
        host, port = url.removeprefix("http://").split(":")
        body = json.dumps({"inputs": {"user_id": ["1"], "k": 3}}).encode()
        connection = socket.create_connection((host, int(port)), timeout=30)
        connection.sendall(b"POST /v1/models/movies:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        connection.sendall(body[5:])
        answer = b""
        while b"movie_ids" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        connection.close()
        assert answer.startswith(b"HTTP/1.1 200") and b'"movie_ids"' in answer
        # uvicorn re-raises the signal once shut down, so the exit status still says SIGTERM.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=30)
    assert "Application shutdown complete" in stderr


@pytest.mark.slow
def test_tensorflow_thread_pools_are_sized_as_asked(base):
    # TF Serving's --tensorflow_intra_op_parallelism and --tensorflow_inter_op_parallelism.
    command = [sys.executable, "-m", "tfrs_pipeline.cli", "serve", "--model", str(base / "1"), "--port", "0",
               "--intra-op-threads", "1", "--inter-op-threads", "3"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        line = process.stdout.readline()
        assert "TensorFlow threads: 1 intra-op, 3 inter-op" in line
        url = next(word for word in line.split() if word.startswith("http://"))
        with urllib.request.urlopen(url + "/healthz", timeout=30) as answer:
            assert answer.status == 200
    finally:
        process.kill()
        process.communicate(timeout=30)


def test_exported_graphs_hold_only_stock_tensorflow_ops(trained):
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    folders = [trained.path] + [trained.model_dir.stage(s) for s in ("query_tower", "candidate_tower", "index", "ranking")]
    for folder in folders:
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((folder / "saved_model.pb").read_bytes())
        graph = proto.meta_graphs[0].graph_def
        functions = {f.signature.name for f in graph.library.function}
        ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
        ops -= functions
        assert ops, folder
        foreign = sorted(op for op in ops if op in ("PyFunc", "EagerPyFunc", "PyFuncStateless")
                         or op.startswith("Scann") or op_def_registry.get(op) is None)
        assert foreign == [], f"{folder}: {foreign}"


@pytest.mark.slow
def test_the_exported_model_answers_without_this_package(trained):
    from conftest import run_tensorflow_only

    out = run_tensorflow_only(f"""
import tensorflow as tf
model = tf.saved_model.load({str(trained.path)!r})
out = model.signatures["recommend_from_history"](movie_ids=tf.constant([["1", "2"]]), k=tf.constant(3))
print(out["history_known"].numpy()[0], out["movie_ids"].shape)
""")
    assert out.split()[:1] == ["2"]



def test_a_version_copied_in_by_hand_is_tried_again_once_the_copy_is_complete(base, tmp_path):
    from tfrs_pipeline.server.versions import AVAILABLE, END, ModelVersions

    folder = tmp_path / "movies" / "1"
    folder.mkdir(parents=True)
    shutil.copy(base / "1" / "saved_model.pb", folder)  # the copy has only begun
    versions = ModelVersions(folder.parent)
    versions.refresh()
    assert [(s.version, s.state) for s in versions.states()] == [(1, END)]
    versions.refresh()  # unchanged: not tried again
    shutil.rmtree(folder)
    shutil.copytree(base / "1", folder)
    versions.refresh()
    assert [(s.version, s.state) for s in versions.states()] == [(1, AVAILABLE)]


def test_full_garbage_collections_leave_out_what_the_served_version_holds(base, tmp_path):
    # A full collection walks every object Python tracks: with TensorFlow and the demo model that took
    # 210-250 ms, a pause for every request in flight. Objects alive when a version was loaded are frozen
    # out of it, and handed back when versions change, so a replaced version is still collected.
    from tfrs_pipeline.server.versions import AVAILABLE, END, ModelVersions

    models = tmp_path / "movies"
    shutil.copytree(base / "1", models / "1")
    versions = ModelVersions(models)
    try:
        versions.refresh()
        frozen = gc.get_freeze_count()
        assert len(gc.get_objects()) < frozen / 10
        for version in (2, 3):
            _publish(base / "1", models / str(version))
            versions.refresh()
        assert [(s.version, s.state) for s in versions.states()] == [(3, AVAILABLE), (2, END), (1, END)]
        # The two versions replaced did not stay frozen (each was tens of thousands of objects).
        assert gc.get_freeze_count() < frozen + 20_000, (frozen, gc.get_freeze_count())
    finally:
        versions.stop()
    assert gc.get_freeze_count() == 0


def test_a_damaged_newest_version_at_start_leaves_the_one_before_it_serving(base, tmp_path):
    from tfrs_pipeline.server.versions import AVAILABLE, END, ModelVersions

    shutil.copytree(base / "1", tmp_path / "movies" / "1")
    broken = tmp_path / "movies" / "2"
    shutil.copytree(base / "1", broken)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    versions = ModelVersions(tmp_path / "movies")
    versions.start()
    try:
        assert [(s.version, s.state) for s in versions.states()] == [(2, END), (1, AVAILABLE)]
        assert "MANIFEST" in versions.states()[0].error or "cannot be loaded" in versions.states()[0].error
        assert versions.get().version == 1
    finally:
        versions.stop()


@pytest.mark.parametrize("threads", [1, 2])
def test_batches_run_one_at_a_time_or_side_by_side_as_configured(threads):
    import asyncio
    import threading

    import numpy as np

    from tfrs_pipeline.server.batching import Batcher

    first_running, release = threading.Event(), threading.Event()
    overlapped = []

    def run(function, inputs):
        if inputs["x"][0] == 0:  # the first batch holds its call until released
            first_running.set()
            release.wait(10)
        else:
            overlapped.append(not release.is_set())
            release.set()
        return {"y": inputs["x"] * 2}

    async def scenario():
        batcher = Batcher(run, window_ms=0.0, threads=threads)
        first = asyncio.ensure_future(batcher.submit(("a",), None, {"x": np.array([0])}))
        await asyncio.to_thread(first_running.wait, 10)
        second = asyncio.ensure_future(batcher.submit(("a",), None, {"x": np.array([1])}))
        if threads == 1:
            await asyncio.sleep(0.2)
            assert not second.done()  # waits for the one call there is
            release.set()
        return await asyncio.wait_for(asyncio.gather(first, second), 10)

    answers = asyncio.run(scenario())
    assert [a["y"].tolist() for a in answers] == [[0], [2]]
    assert overlapped == [threads == 2]  # with two threads the second batch ran while the first held its call


def test_a_waiting_batch_starts_before_the_last_batchs_answers_are_written():
    # With one call at a time, the model must not sit idle while the event loop writes the
    # answers of the batch that just finished: the next batch's call starts first.
    import asyncio
    import threading

    import numpy as np

    from tfrs_pipeline.server.batching import Batcher

    first_running, release = threading.Event(), threading.Event()

    def run(function, inputs):
        if inputs["x"][0] == 0:
            first_running.set()
            release.wait(10)
        return {"y": inputs["x"] * 2}

    async def scenario():
        batcher = Batcher(run, window_ms=0.0, threads=1)

        async def first_request():
            await batcher.submit(("a",), None, {"x": np.array([0])})
            return batcher.calls == 2  # when this request could write its answer: the second call was handed out

        first = asyncio.ensure_future(first_request())
        await asyncio.to_thread(first_running.wait, 10)
        second = asyncio.ensure_future(batcher.submit(("a",), None, {"x": np.array([1])}))
        await asyncio.sleep(0.05)  # the second batch is queued behind the busy call
        release.set()
        return await asyncio.wait_for(asyncio.gather(first, second), 10)

    second_handed_out_first, answer = asyncio.run(scenario())
    assert second_handed_out_first
    assert answer["y"].tolist() == [2]


def test_the_batch_thread_starts_the_next_batch_while_the_event_loop_is_busy():
    # The batch threads take due batches themselves: a loop busy reading requests and writing
    # answers (here: blocked outright) does not hold the model idle.
    import asyncio
    import threading

    import numpy as np

    from tfrs_pipeline.server.batching import Batcher

    first_running, release, second_running = threading.Event(), threading.Event(), threading.Event()

    def run(function, inputs):
        if inputs["x"][0] == 0:
            first_running.set()
            release.wait(10)
        else:
            second_running.set()
        return {"y": inputs["x"] * 2}

    async def scenario():
        batcher = Batcher(run, window_ms=0.0, threads=1)
        first = asyncio.ensure_future(batcher.submit(("a",), None, {"x": np.array([0])}))
        await asyncio.to_thread(first_running.wait, 10)
        second = asyncio.ensure_future(batcher.submit(("a",), None, {"x": np.array([1])}))
        await asyncio.sleep(0.05)  # the second batch is queued behind the busy call
        release.set()
        started_while_blocked = second_running.wait(5)  # blocks the event loop
        answers = await asyncio.wait_for(asyncio.gather(first, second), 10)
        batcher.close()
        return started_while_blocked, answers

    started_while_blocked, answers = asyncio.run(scenario())
    assert started_while_blocked
    assert [a["y"].tolist() for a in answers] == [[0], [2]]


def test_closing_the_batcher_fails_queued_requests_and_ends_its_threads():
    import asyncio

    import numpy as np

    from tfrs_pipeline.server.batching import Batcher

    calls = []

    async def scenario():
        batcher = Batcher(lambda function, inputs: calls.append(inputs) or inputs, window_ms=60_000.0, threads=2)
        waiting = asyncio.ensure_future(batcher.submit(("a",), None, {"x": np.array([0])}))
        await asyncio.sleep(0.05)  # queued: its window has a minute to run
        await asyncio.to_thread(batcher.close)
        with pytest.raises(RuntimeError, match="shutting down"):
            await asyncio.wait_for(waiting, 10)
        with pytest.raises(RuntimeError, match="closed"):
            await batcher.submit(("a",), None, {"x": np.array([1])})
        return batcher

    batcher = asyncio.run(scenario())
    assert calls == []
    assert len(batcher._workers) == 2 and not any(worker.is_alive() for worker in batcher._workers)


def test_a_failing_batch_fails_only_the_request_that_fails_and_the_batch_thread_serves_the_next():
    import asyncio

    import numpy as np

    from tfrs_pipeline.server.batching import Batcher

    def run(function, inputs):
        if inputs["x"].min() < 0:
            raise ValueError("negative x")
        return {"y": inputs["x"] * 2}

    async def scenario():
        batcher = Batcher(run, window_ms=50.0, threads=1)
        failing = [asyncio.ensure_future(batcher.submit(("a",), None, {"x": np.array([x])})) for x in (-1, 3)]
        failed = await asyncio.wait_for(asyncio.gather(*failing, return_exceptions=True), 10)
        # Rows of another width are another batch: the one thread still takes it.
        after = await asyncio.wait_for(batcher.submit(("a",), None, {"x": np.array([[4, 5]])}), 10)
        batcher.close()

        return failed, after, batcher.retried

    failed, after, retried = asyncio.run(scenario())
    # The batch failed as a whole; run again request by request, only the bad one fails.
    assert isinstance(failed[0], ValueError) and "negative x" in str(failed[0])
    assert failed[1]["y"].tolist() == [6] and retried == 1
    assert after["y"].tolist() == [[8, 10]]


def test_a_full_batch_runs_at_once_without_waiting_for_its_window():
    import asyncio

    import numpy as np

    from tfrs_pipeline.server.batching import Batcher

    async def scenario():
        batcher = Batcher(lambda function, inputs: inputs, window_ms=60_000.0, max_rows=3, threads=1)
        rows = [asyncio.ensure_future(batcher.submit(("a",), None, {"x": np.array([x])})) for x in (0, 1)]
        await asyncio.sleep(0.05)  # the thread now sleeps until the batch's window ends, a minute on
        waited = not any(task.done() for task in rows)
        rows.append(asyncio.ensure_future(batcher.submit(("a",), None, {"x": np.array([2])})))
        done, _ = await asyncio.wait(rows, timeout=10)
        batcher.close()
        return waited, [task.result()["x"].tolist() for task in rows] if len(done) == 3 else None, batcher.calls

    waited, answers, calls = asyncio.run(scenario())
    assert waited
    assert answers == [[0], [1], [2]] and calls == 1  # its third row filled it: one call within seconds, not a minute


def test_every_answer_carries_security_headers_and_another_host_is_refused(server):
    import urllib.request

    from tfrs_pipeline.server.guard import allowed_hosts

    for path in ("/", "/healthz", "/no-such-route"):
        try:
            answer = urllib.request.urlopen(server.url + path, timeout=30)
        except urllib.error.HTTPError as error:
            answer = error
        assert answer.headers["X-Content-Type-Options"] == "nosniff" and answer.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    host, port = server.url.removeprefix("http://").split(":")
    for name, status in ((f"{host}:{port}", 200), (f"localhost:{port}", 200), ("rebound.example:80", 421),
                         ("", 421), ("[::1", 421)):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.putrequest("GET", "/healthz", skip_host=True)
        if name:
            connection.putheader("Host", name)
        connection.endheaders()
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        assert answer.status == status, (name, body)
        if status == 421:
            assert b"--allowed-hosts" in body and answer.headers["X-Frame-Options"] == "DENY"
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "::1"]
    assert allowed_hosts("0.0.0.0") == ["*"] and allowed_hosts("0.0.0.0", ["shop.example"]) == ["0.0.0.0", "shop.example"]


def test_a_client_that_leaves_mid_body_is_logged_as_such_not_as_a_server_error(server, caplog):
    import logging
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    with caplog.at_level(logging.INFO):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/models/movies:predict HTTP/1.1\r\nHost: " + host.encode()
                         + b"\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"inputs\": ")
        _wait_for(lambda: any('" 499 ' in r.getMessage() for r in caplog.records), seconds=10)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("tfrs_pipeline")]
    assert any("disconnected before its request body arrived" in r.getMessage() for r in caplog.records)
