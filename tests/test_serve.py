"""The HTTP server: TensorFlow Serving's REST shapes, browser-friendly routes, clear 400s."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from tfrs_pipeline.serve import make_server


@pytest.fixture(scope="module")
def server(trained):
    server = make_server(trained.path.parent, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.model.name
    server.shutdown()
    server.server_close()


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_model_status_and_health(server):
    base, name = server
    assert _get(f"{base}/v1/models/{name}")[1]["model_version_status"][0]["state"] == "AVAILABLE"
    assert _get(f"{base}/healthz")[1]["status"] == "ok"


def test_predict_columnar_and_row_formats(server):
    base, name = server
    status, body = _post(f"{base}/v1/models/{name}:predict", {"inputs": {"user_id": ["1", "2"], "k": 3}})
    assert status == 200 and len(body["outputs"]["movie_ids"]) == 2 and len(body["outputs"]["titles"][0]) == 3
    status, body = _post(f"{base}/v1/models/{name}:predict",
                         {"signature_name": "similar_movies", "instances": [{"movie_id": "1", "k": 2}]})
    assert status == 200 and len(body["predictions"][0]["movie_ids"]) == 2


def test_recommend_route_lists_movies_and_flags_unknown_users(server):
    base, _ = server
    status, body = _get(f"{base}/recommend?user_id=1&k=4")
    assert status == 200 and body["known_user"] is True and len(body["movies"]) == 4
    assert set(body["movies"][0]) == {"movie_id", "title", "predicted_rating", "retrieval_score"}
    assert _get(f"{base}/recommend?user_id=stranger&k=2")[1]["known_user"] is False


def test_bad_requests_get_400_with_a_message(server):
    base, name = server
    status, body = _post(f"{base}/v1/models/{name}:predict", {"inputs": {"user_id": ["1"]}})
    assert status == 400 and "missing ['k']" in body["error"]
    status, body = _post(f"{base}/v1/models/{name}:predict", {"signature_name": "nope", "inputs": {}})
    assert status == 400 and "unknown signature 'nope'" in body["error"]
    status, body = _post(f"{base}/v1/models/{name}:predict", {"inputs": {"user_id": ["1"], "k": "ten"}})
    assert status == 400 and "input 'k'" in body["error"]
