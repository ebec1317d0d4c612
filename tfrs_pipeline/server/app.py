"""The HTTP application: TensorFlow Serving's routes over :class:`ModelVersions`, served by uvicorn,
with the people's routes and the operators' beside them.

* ``GET /v1/models/NAME[/versions/N|/labels/L][/metadata]``, ``POST ...:predict``: TensorFlow
  Serving's REST API (the protocol in :mod:`~tfrs_pipeline.server.rest`).
* ``GET /``, ``/recommend``, ``/similar``, ``/explain``, ``/rated``, ``/movies``, ``/examples``: for
  people (:mod:`~tfrs_pipeline.server.people`).
* ``GET /healthz``: 200 while a version is available, 503 otherwise; ``GET /metrics``: Prometheus
  text, and one access-log line per request (:mod:`~tfrs_pipeline.server.telemetry`).

Model calls run in worker threads with no lock around them (TensorFlow's signatures are
thread-safe); with batching on, concurrent requests to one signature share one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys

import numpy as np
import tensorflow as tf
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tfrs_pipeline.server import rest
from tfrs_pipeline.server.batching import Batcher
from tfrs_pipeline.server.guard import Guard, content_security_policy
from tfrs_pipeline.server.people import PeopleRoutes, json_response, page_html
from tfrs_pipeline.server.rest import BadRequest, Limits, NotFound
from tfrs_pipeline.server.telemetry import AccessLog, Metrics
from tfrs_pipeline.server.versions import ModelVersions

log = logging.getLogger("tfrs_pipeline.server")


async def _within(awaitable, seconds: float):
    """``awaitable``'s result, or ``asyncio.TimeoutError`` after ``seconds``.

    ``asyncio.timeout`` (Python 3.11) arms a timer on the current task; ``asyncio.wait_for``
    before 3.12 wraps the awaitable in a task of its own, one more task per request.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def _error(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


def run_signature(function, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Calls a signature on NumPy inputs; errors raised in the graph become a 400.

    Raises:
        BadRequest: TensorFlow refused an argument (InvalidArgumentError).
    """
    specs = function.structured_input_signature[1]
    tensors = {name: tf.constant(value, dtype=specs[name].dtype) for name, value in inputs.items()}
    try:
        outputs = function(**tensors)
    except tf.errors.InvalidArgumentError as error:
        first = (error.message.strip().splitlines() or [""])[0][:300]
        raise BadRequest(f"the model refused the request: {first}") from None
    return {name: tensor.numpy() for name, tensor in outputs.items()}


class ServerApp:
    """The application over one model base.

    Args:
        versions: the model's versions (started by the caller; stopped when the app shuts down).
        limits: what one request may ask for.
        batching: merge concurrent requests to one signature into one call.
        batch_window_ms: how long a batch waits for more requests (milliseconds).
        max_batch_rows: rows that close a batch at once.
        batch_threads: batches that may run at the same time.
        hosts: the ``Host`` names answered (:func:`~tfrs_pipeline.server.guard.allowed_hosts`;
            default: any).
    """

    def __init__(self, versions: ModelVersions, limits: Limits | None = None, *, batching: bool = False,
                 batch_window_ms: float = 2.0, max_batch_rows: int = 256, batch_threads: int = 1,
                 hosts: list[str] | None = None) -> None:
        self.versions = versions
        self.limits = limits or Limits()
        self.batcher = Batcher(run_signature, batch_window_ms, max_batch_rows, batch_threads) if batching else None
        self.metrics = Metrics(versions, self.batcher)
        people = PeopleRoutes(self._call_newest, lambda: self._serving()[1], self.limits)
        routes = [
            Route("/v1/models/{rest:path}", _answered(self.models), methods=["GET", "POST"]),
            *(Route(path, _answered(getattr(people, name)), methods=["GET"]) for path, name in (
                ("/", "page"), ("/recommend", "recommend"), ("/explain", "explain"), ("/movies", "movies"),
                ("/rated", "rated"), ("/examples", "examples"), ("/similar", "similar"))),
            Route("/healthz", _answered(self.healthz), methods=["GET"]),
            Route("/metrics", _answered(self.prometheus), methods=["GET"]),
        ]
        handlers = {NotFound: _answer_error, BadRequest: _answer_error, Exception: _answer_error}
        self.app = Starlette(routes=routes, lifespan=self._lifespan, exception_handlers=handlers)
        self.app.add_middleware(Guard, hosts=hosts or ["*"], policy=content_security_policy(page_html()))
        self.app.add_middleware(AccessLog, metrics=self.metrics)  # added last: outermost, so it logs refusals too

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        yield
        if self.batcher is not None:
            await run_in_threadpool(self.batcher.close)
        await run_in_threadpool(self.versions.stop)

    # -- TensorFlow Serving's routes --------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        parsed = rest.parse_model_path(request.url.path)
        if parsed is None:
            raise NotFound(f"no route {request.url.path}")
        if parsed.name != self.versions.name:
            raise NotFound(f"model {parsed.name!r} not found; this server serves {self.versions.name!r}")
        if request.method == "GET" and parsed.verb == "status":
            return json_response(self.versions.status(parsed.version, parsed.label))
        if request.method == "GET" and parsed.verb == "metadata":
            state = self.versions.get(parsed.version, parsed.label)
            return json_response(rest.metadata(self.versions.name, state.version, state.model.path))
        if request.method == "POST" and parsed.verb == "predict":
            return await self.predict(request, parsed)
        if parsed.verb in ("classify", "regress"):
            raise BadRequest(f":{parsed.verb} needs a classify or regress signature; this model answers :predict")
        if request.method == "GET":
            raise NotFound(f"GET {request.url.path} is not a route; GET /v1/models/NAME[/metadata] or "
                           "POST /v1/models/NAME:predict")
        return _error(f"{request.method} {request.url.path} is not a route; POST /v1/models/NAME:predict", 405)

    def _serving(self, version: int | None = None, label: str | None = None):
        """The version a request names (or the newest) and its loaded model.

        Raises:
            NotFound: no such version, or it was unloaded between the lookup and now.
        """
        state = self.versions.get(version, label)
        model = state.model
        if model is None:
            raise NotFound(f"model {self.versions.name!r} version {state.version} was just unloaded; send it again")
        return state, model

    async def predict(self, request: Request, parsed: rest.ModelPath) -> Response:
        state, model = self._serving(parsed.version, parsed.label)
        body = rest.decode_body(await self._body(request))
        decoded = rest.parse_predict(body, model.signatures, self.limits)
        outputs = await self._call((state.version, decoded.signature_name), model.signatures[decoded.signature_name],
                                   decoded.inputs)
        # Encoded in a worker thread: a large answer must not hold up the event loop, and so every other request.
        encoded = await run_in_threadpool(rest.encode_predict, outputs, decoded.rows)
        return Response(encoded, media_type="application/json")

    async def _body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BadRequest(f"the request body is {int(declared):,} bytes; the limit is {limit:,}", 413)
        chunks, size = [], 0

        async def read():
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BadRequest(f"the request body is over the limit of {limit:,} bytes", 413)
                chunks.append(chunk)

        try:
            await _within(read(), self.limits.timeout_seconds)
        except asyncio.TimeoutError:
            raise BadRequest(f"the request body did not arrive within {self.limits.timeout_seconds:g} s", 408) from None
        return b"".join(chunks)

    async def _call(self, key: tuple, function, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.batcher is not None:
            call = self.batcher.submit(key, function, inputs)
        else:
            call = run_in_threadpool(run_signature, function, inputs)
        try:
            return await _within(call, self.limits.timeout_seconds)
        except asyncio.TimeoutError:
            raise BadRequest(f"the model did not answer within {self.limits.timeout_seconds:g} s", 504) from None

    async def _call_newest(self, signature: str, inputs: dict) -> dict[str, np.ndarray]:
        """``signature`` of the newest available version on ``inputs``, looked up once.

        Raises:
            BadRequest: (404) that version has no such signature (exported by an earlier release).
        """
        state, model = self._serving()
        function = model.signatures.get(signature)
        if function is None:
            raise BadRequest(f"this model version has no {signature} signature (exported by an earlier release)", 404)
        return await self._call((state.version, signature), function, inputs)

    async def healthz(self, request: Request) -> Response:
        available = [s.version for s in self.versions.available()]
        body = {"status": "ok" if available else "unavailable", "model": self.versions.name,
                "version": str(available[0]) if available else None, "versions": [str(v) for v in available]}
        return json_response(body, 200 if available else 503)

    async def prometheus(self, request: Request) -> Response:
        return self.metrics.render()


def _answered(endpoint):
    """``endpoint``, answering any exception itself.

    Starlette hands an unexpected exception to its outermost middleware, which answers 500 and
    then raises it again to the server, and uvicorn closes the connection: a client's next
    request on that keep-alive connection would be lost. Answered here, the 500 is an answer
    like any other and the connection stays usable.
    """

    @functools.wraps(endpoint)
    async def answered(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as error:
            return await _answer_error(request, error)

    return answered


async def _answer_error(request: Request, error: Exception) -> Response:
    """TensorFlow Serving's error body for every failure: 404, 400/408/413/504, or 500 for our own bugs."""
    if isinstance(error, NotFound):
        return _error(str(error), 404)
    if isinstance(error, BadRequest):
        response = _error(str(error), error.status)
        if error.status == 413:  # the rest of the body is not read: the connection ends with this answer
            response.headers["connection"] = "close"
        return response
    if isinstance(error, ClientDisconnect):  # the client went away mid-body: no one to answer, nothing broken
        log.info("%s %s: the client disconnected before its request body arrived", request.method, request.url.path)
        return _error("the client disconnected", 499)  # nginx's code for it; counted apart from the 5xx
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return _error(f"internal error ({type(error).__name__}); the server log has the details", 500)


