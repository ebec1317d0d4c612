"""Serving over HTTP: loads the pipeline SavedModel (:class:`~tfrs_pipeline.client.Recommender`) and answers JSON.

The server process imports TensorFlow and the client alone: no TFRS, no training code.

The REST surface follows TensorFlow Serving's, so clients can move between the two:

* ``GET  /v1/models/NAME`` -> version status.
* ``POST /v1/models/NAME:predict`` with ``{"signature_name": ..., "inputs": {...}}``
  (columnar, answered as ``{"outputs": {...}}``) or ``{"instances": [{...}, ...]}``
  (row format, answered as ``{"predictions": [...]}``; scalar inputs such as ``k`` are
  taken from the first instance).
* ``GET /recommend?user_id=ID&k=10`` and ``GET /similar?movie_id=ID&k=10``: the same
  answers as lists of movies, for people with a browser or curl.
* ``GET /healthz``.

Bad requests get status 400 and ``{"error": "..."}``.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import tensorflow as tf

from tfrs_pipeline.client import Recommender
from tfrs_pipeline.errors import ConfigError
from tfrs_pipeline.metrics import as_str


def _jsonable(value: np.ndarray):
    if value.dtype.kind in "OS":
        return as_str(value).tolist()
    if value.dtype.kind == "f":
        return np.where(np.isfinite(value), value, None).tolist()
    return value.tolist()


class ModelServer:
    """One loaded pipeline SavedModel and the signature calls the HTTP handler makes."""

    def __init__(self, model_path: str | Path) -> None:
        self.recommender = Recommender.load(model_path)
        self.path = self.recommender.path
        self.name = self.recommender.name
        self.version = str(self.recommender.version)
        self.signatures = self.recommender.signatures
        self._lock = threading.Lock()

    def predict(self, signature_name: str, inputs: dict) -> dict[str, np.ndarray]:
        """Runs a signature on JSON inputs; raises ValueError with a message for the client."""
        if signature_name not in self.signatures:
            raise ValueError(f"unknown signature {signature_name!r}; this model has {sorted(self.signatures)}")
        function = self.signatures[signature_name]
        expected = function.structured_input_signature[1]
        missing = sorted(set(expected) - set(inputs))
        extra = sorted(set(inputs) - set(expected))
        if missing or extra:
            raise ValueError(f"signature {signature_name!r} takes inputs {sorted(expected)}; "
                             f"missing {missing}, unexpected {extra}")
        tensors = {}
        for name, spec in expected.items():
            try:
                tensors[name] = tf.constant(inputs[name], dtype=spec.dtype)
            except (TypeError, ValueError) as error:
                raise ValueError(f"input {name!r}: expected {spec.dtype.name} of shape {spec.shape}, "
                                 f"got {inputs[name]!r} ({error})") from None
            if not spec.shape.is_compatible_with(tensors[name].shape):
                raise ValueError(f"input {name!r}: expected shape {spec.shape}, got {tensors[name].shape}")
        with self._lock:  # one TensorFlow call at a time keeps latency predictable on small machines
            outputs = function(**tensors)
        return {name: tensor.numpy() for name, tensor in outputs.items()}


def make_handler(server_model: ModelServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
            pass

        def _send(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):  # noqa: N802 - the stdlib's name
            url = urlparse(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            try:
                if url.path == "/healthz":
                    return self._send(200, {"status": "ok", "model": server_model.name, "version": server_model.version})
                if url.path == f"/v1/models/{server_model.name}":
                    return self._send(200, {"model_version_status": [
                        {"version": server_model.version, "state": "AVAILABLE", "status": {"error_code": "OK"}}]})
                if url.path == "/recommend":
                    out = server_model.predict("serving_default", {"user_id": [_required(query, "user_id")],
                                                                   "k": int(query.get("k", 10))})
                    return self._send(200, _movies(out, ["movie_ids", "titles", "predicted_ratings", "retrieval_scores"],
                                                   known=("known_user", bool(out["known_user"][0]))))
                if url.path == "/similar":
                    out = server_model.predict("similar_movies", {"movie_id": [_required(query, "movie_id")],
                                                                  "k": int(query.get("k", 10))})
                    return self._send(200, _movies(out, ["movie_ids", "titles", "scores"],
                                                   known=("known_movie", bool(out["known_movie"][0]))))
                return self._send(404, {"error": f"no route {url.path}"})
            except ValueError as error:
                return self._send(400, {"error": str(error)})

        def do_POST(self):  # noqa: N802 - the stdlib's name
            url = urlparse(self.path)
            prefix = f"/v1/models/{server_model.name}"
            if url.path not in (f"{prefix}:predict", f"{prefix}/versions/{server_model.version}:predict"):
                return self._send(404, {"error": f"no route {url.path}; POST {prefix}:predict"})
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the request body must be a JSON object")
                signature = body.get("signature_name", "serving_default")
                if "inputs" in body:
                    outputs = server_model.predict(signature, body["inputs"])
                    return self._send(200, {"outputs": {k: _jsonable(v) for k, v in outputs.items()}})
                if "instances" in body:
                    return self._send(200, {"predictions": _predict_rows(server_model, signature, body["instances"])})
                raise ValueError('the request needs "inputs" (columnar) or "instances" (rows)')
            except json.JSONDecodeError as error:
                return self._send(400, {"error": f"request body is not JSON: {error}"})
            except ValueError as error:
                return self._send(400, {"error": str(error)})

    return Handler


def _required(query: dict, name: str) -> str:
    if not query.get(name):
        raise ValueError(f"query parameter {name!r} is required")
    return query[name]


def _movies(outputs: dict, columns: list[str], known: tuple[str, bool]) -> dict:
    names = {"movie_ids": "movie_id", "titles": "title", "predicted_ratings": "predicted_rating",
             "retrieval_scores": "retrieval_score", "scores": "score"}
    rows = [dict(zip((names[c] for c in columns), values))
            for values in zip(*(_jsonable(outputs[c][0]) for c in columns))]
    return {known[0]: known[1], "movies": rows}


def _predict_rows(server_model: ModelServer, signature: str, instances: list) -> list:
    if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
        raise ValueError('"instances" must be a non-empty list of objects')
    expected = server_model.signatures.get(signature)
    if expected is None:
        raise ValueError(f"unknown signature {signature!r}; this model has {sorted(server_model.signatures)}")
    specs = expected.structured_input_signature[1]
    inputs = {name: (instances[0].get(name) if spec.shape.rank == 0 else [i.get(name) for i in instances])
              for name, spec in specs.items()}
    outputs = server_model.predict(signature, inputs)
    return [{name: _jsonable(value[row]) if value.ndim > 1 else _jsonable(value[row : row + 1])[0]
             for name, value in outputs.items()} for row in range(len(instances))]


def make_server(model_path: str | Path, host: str = "127.0.0.1", port: int = 8501) -> ThreadingHTTPServer:
    """A ready (not yet serving) HTTP server for the model; ``port=0`` picks a free port."""
    server_model = ModelServer(model_path)
    try:
        server = ThreadingHTTPServer((host, port), make_handler(server_model))
    except socket.gaierror as error:
        raise ConfigError(f"cannot serve on host {host!r}: not a known address ({error.strerror}); "
                          "use an IP address such as 127.0.0.1 or a resolvable host name") from None
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        hint = "; choose another --port or stop the server using it" if getattr(error, "errno", None) == errno.EADDRINUSE else ""
        raise ConfigError(f"cannot serve on {host}:{port}: {reason}{hint}") from None
    server.model = server_model
    return server
