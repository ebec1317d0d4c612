"""The HTTP application: Starlette routes over :class:`ModelVersions`, served by uvicorn.

Routes (TensorFlow Serving's, in :mod:`~tfrs_pipeline.server.rest`, plus a few for people):

* ``GET /v1/models/NAME[/versions/N|/labels/L][/metadata]``, ``POST ...:predict``.
* ``GET /recommend?user_id=ID&k=10[&exclude=ID,ID]``, ``GET /recommend?history=ID,ID&k=10``
  (a visitor the model has not seen, from the movies they just rated),
  ``GET /similar?movie_id=ID&k=10``: lists of movies with titles.
* ``GET /explain?user_id=ID&movie_id=ID,ID&k=3``: the user's rated movies behind each movie;
  ``GET /rated?user_id=ID&k=10``: the user's highest-rated training movies;
  ``GET /movies?q=TEXT``: catalog movies whose title holds the text; ``GET /examples``: a few
  user ids the model knows.
* ``GET /``: a page for people: pick a user or type a few movies, see recommendations, titles,
  predicted ratings and why, and similar movies.
* ``GET /healthz``: 200 while a version is available, 503 otherwise.
* ``GET /metrics``: Prometheus text (requests by route and status, latency histograms,
  version states, batches).

Model calls run in worker threads with no lock around them (TensorFlow's signatures are
thread-safe); with batching on, concurrent requests to one signature share one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.resources
import logging
import sys
import time

import numpy as np
import pandas as pd
import tensorflow as tf
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tfrs_pipeline.recommender import split_ids
from tfrs_pipeline.server import rest
from tfrs_pipeline.server.batching import Batcher
from tfrs_pipeline.server.guard import Guard, content_security_policy
from tfrs_pipeline.server.rest import BadRequest, Limits, NotFound
from tfrs_pipeline.server.versions import AVAILABLE, END, LOADING, UNLOADING, ModelVersions

access_log = logging.getLogger("tfrs_pipeline.access")
log = logging.getLogger("tfrs_pipeline.server")

_STATES = (LOADING, AVAILABLE, UNLOADING, END)

#: Histogram buckets (seconds) for what takes milliseconds.
_FAST_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

#: Distinct paths whose metrics route label is remembered (paths come from clients: bounded).
_ROUTE_CACHE_SIZE = 1024


async def _within(awaitable, seconds: float):
    """``awaitable``'s result, or ``asyncio.TimeoutError`` after ``seconds``.

    ``asyncio.timeout`` (Python 3.11) arms a timer on the current task; ``asyncio.wait_for``
    before 3.12 wraps the awaitable in a task of its own, one more task per request.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def _json(body: dict, status: int = 200) -> Response:
    return Response(rest.encode(body), status_code=status, media_type="application/json")


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


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


def _flag(query, name: str) -> bool:
    """A true/false query parameter (absent: false)."""
    value = query.get(name, "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise BadRequest(f"query parameter {name!r} must be true or false, got {value[:40]!r}")
    return value in ("true", "1")


class Metrics:
    """The Prometheus metrics of one server (its own registry, so several servers can share a process)."""

    def __init__(self, versions: ModelVersions, batcher: Batcher | None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tfrs_requests", "HTTP requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("tfrs_request_seconds", "Seconds from request to answer", ["route"],
                                 buckets=_FAST_BUCKETS + (0.5, 1, 2.5, 5, 10), registry=self.registry)
        self.in_flight = Gauge("tfrs_requests_in_flight", "Requests being answered", registry=self.registry)
        self.registry.register(_VersionStates(versions))
        if batcher is not None:
            Gauge("tfrs_batch_calls", "Signature calls made by the batcher", registry=self.registry
                  ).set_function(lambda: batcher.calls)
            Gauge("tfrs_batch_rows", "Rows sent in batched calls", registry=self.registry
                  ).set_function(lambda: batcher.rows)
            # What --batch-window-ms and --batch-threads are tuned by.
            sizes = Histogram("tfrs_batch_size", "Rows per batched call", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                              registry=self.registry)
            queued = Histogram("tfrs_batch_queue_seconds", "Seconds from a batch's first request until its call "
                               "started (the window, then waiting for a free call)", buckets=_FAST_BUCKETS,
                               registry=self.registry)
            calls = Histogram("tfrs_batch_call_seconds", "Seconds of each batched signature call",
                              buckets=_FAST_BUCKETS, registry=self.registry)

            def on_batch(rows: int, queued_seconds: float, call_seconds: float) -> None:
                sizes.observe(rows)
                queued.observe(queued_seconds)
                calls.observe(call_seconds)

            batcher.on_batch = on_batch

        self._children: dict[tuple[str, str, int], tuple] = {}
        self._routes: dict[str, str] = {}

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        """Counts one answered request and its latency under its route's label."""
        route = self._routes.get(path)
        if route is None:
            route = _route_of(path)
            if len(self._routes) < _ROUTE_CACHE_SIZE:
                self._routes[path] = route
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:  # label lookups validate and lock: once per distinct label set
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                               self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _VersionStates:
    """Prometheus collector: ``tfrs_model_version_state``, read from the versions at each scrape."""

    def __init__(self, versions: ModelVersions) -> None:
        self.versions = versions

    def collect(self):
        family = GaugeMetricFamily("tfrs_model_version_state", "1 for each version's current state",
                                   labels=["model", "version", "state"])
        for state in self.versions.states():
            for name in _STATES:
                family.add_metric([self.versions.name, str(state.version), name], float(state.state == name))
        yield family


def _route_of(path: str) -> str:
    """A bounded set of route labels for the metrics (never raw paths)."""
    if path.startswith("/v1/models/"):
        try:
            parsed = rest.parse_model_path(path)
        except BadRequest:
            parsed = None
        if parsed is None:
            return "/v1/models/other"
        where = "/versions/N" if parsed.version is not None else "/labels/L" if parsed.label else ""
        return {"status": f"/v1/models/NAME{where}", "metadata": f"/v1/models/NAME{where}/metadata"}.get(
            parsed.verb, f"/v1/models/NAME{where}:{'predict' if parsed.verb == 'predict' else 'other'}")
    return path if path in ("/recommend", "/similar", "/healthz", "/metrics") else "other"


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
        routes = [
            Route("/v1/models/{rest:path}", _answered(self.models), methods=["GET", "POST"]),
            Route("/", _answered(self.page), methods=["GET"]),
            Route("/recommend", _answered(self.recommend), methods=["GET"]),
            Route("/explain", _answered(self.explain), methods=["GET"]),
            Route("/movies", _answered(self.movies), methods=["GET"]),
            Route("/rated", _answered(self.rated), methods=["GET"]),
            Route("/examples", _answered(self.examples), methods=["GET"]),
            Route("/similar", _answered(self.similar), methods=["GET"]),
            Route("/healthz", _answered(self.healthz), methods=["GET"]),
            Route("/metrics", _answered(self.prometheus), methods=["GET"]),
        ]
        handlers = {NotFound: _answer_error, BadRequest: _answer_error, Exception: _answer_error}
        self.app = Starlette(routes=routes, lifespan=self._lifespan, exception_handlers=handlers)
        self.app.add_middleware(Guard, hosts=hosts or ["*"], policy=content_security_policy(_page()))
        self.app.add_middleware(_AccessLog, metrics=self.metrics)  # added last: outermost, so it logs refusals too

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
            return _json(self.versions.status(parsed.version, parsed.label))
        if request.method == "GET" and parsed.verb == "metadata":
            state = self.versions.get(parsed.version, parsed.label)
            return _json(rest.metadata(self.versions.name, state.version, state.model.path))
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

    # -- routes for people ------------------------------------------------------------------------

    async def recommend(self, request: Request) -> Response:
        """A user's list (``user_id``), a visitor's (``history`` alone), or a user's with the movies rated
        since training (``user_id`` and ``history``); ``exclude`` leaves movies out of any of them."""
        query = request.query_params
        k = self._k(query)
        user = query.get("user_id") or None
        if user is None and "history" not in query:
            raise BadRequest("query parameter 'user_id' or 'history' is required")
        history = self._id_list(query["history"], "history") if "history" in query else None
        exclude = self._id_list(query["exclude"], "exclude") if "exclude" in query else None
        if history is not None and (user is not None or exclude is not None):
            signature = "recommend_with_history"
            inputs = {"user_id": np.array([user or ""], object), "movie_ids": np.array([history], object),
                      "exclude_movie_ids": np.array([exclude or [""]], object)}
        elif history is not None:
            signature, inputs = "recommend_from_history", {"movie_ids": np.array([history], object)}
        elif exclude is not None:
            signature = "recommend_excluding"
            inputs = {"user_id": np.array([user], object), "exclude_movie_ids": np.array([exclude], object)}
        else:
            signature, inputs = "serving_default", {"user_id": np.array([user], object)}
        allow_unknown = _flag(query, "allow_unknown")
        out = await self._get_call(signature, {**inputs, "k": np.int32(k)})
        known = {name: rest.jsonable(out[name][0]) for name in ("known_user", "history_known") if name in out}
        if user is None:
            known.pop("known_user", None)
        elif not allow_unknown and not known["known_user"] and not known.get("history_known"):
            raise BadRequest(f"user_id {user!r} is not in the model's training data (ids are matched as text, exactly "
                             "as in the training data); allow_unknown=true answers with what the model serves such "
                             "users (well-rated popular movies), history= scores a visitor from their movies", 404)
        # Best first by the ranker's score, which orders the list; the predicted rating is not the order.
        return _json(_movies(out, ["movie_ids", "titles", "scores", "predicted_ratings", "retrieval_scores"], known,
                             {"scores": "ranker_score"}))

    async def similar(self, request: Request) -> Response:
        query = request.query_params
        inputs = {"movie_id": np.array([_required(query, "movie_id")], object), "k": np.int32(self._k(query))}
        out = await self._get_call("similar_movies", inputs)
        return _json(_movies(out, ["movie_ids", "titles", "scores"], {"known_movie": bool(out["known_movie"][0])}))

    async def explain(self, request: Request) -> Response:
        """For one user and each movie: the user's rated movies behind it, with their shares."""
        query = request.query_params
        user = _required(query, "user_id")
        movies = self._id_list(_required(query, "movie_id"), "movie_id")
        inputs = {"user_id": np.array([user] * len(movies), object), "movie_id": np.array(movies, object),
                  "k": np.int32(self._k(query, default="3"))}
        out = await self._get_call("explain", inputs)
        rows = []
        for movie, ids, titles, shares in zip(movies, *(rest.jsonable(out[name]) for name in
                                                        ("movie_ids", "titles", "shares"))):
            because = [{"movie_id": i, "title": title, "share": share}
                       for i, title, share in zip(ids, titles, shares) if i]
            rows.append({"movie_id": movie, "because": because})
        return _json({"known_user": bool(out["known_user"][0]), "movies": rows})

    async def movies(self, request: Request) -> Response:
        """The catalog movie whose id is the text, then those whose title holds it (case-insensitive); ``k`` at most."""
        query = request.query_params
        text = _required(query, "q").strip().lower()
        k = self._k(query)
        catalog = self._serving()[1].catalog
        by_id = catalog["movie_id"].str.lower() == text
        by_title = catalog["title"].str.lower().str.contains(text, regex=False) & ~by_id
        found = pd.concat([catalog[by_id], catalog[by_title]]).head(k)  # the movie with that id first
        return _json({"movies": found.to_dict("records")})

    async def rated(self, request: Request) -> Response:
        """The user's highest-rated training movies, best first (none for a user the model never saw)."""
        query = request.query_params
        inputs = {"user_id": np.array([_required(query, "user_id")], object), "k": np.int32(self._k(query))}
        if "rated_movies" not in self._serving()[1].signatures:
            raise BadRequest("this model version has no rated_movies signature (exported by an earlier release)", 404)
        out = await self._get_call("rated_movies", inputs)
        return _json(_movies(out, ["movie_ids", "titles", "ratings"], {"known_user": bool(out["known_user"][0])},
                             {"ratings": "rating"}))

    async def examples(self, request: Request) -> Response:
        """A few user ids the model knows, for a person who has none at hand."""
        return _json({"user_ids": self._serving()[1].known_users()[:5]})

    async def page(self, request: Request) -> Response:
        return Response(_page(), media_type="text/html; charset=utf-8")

    def _id_list(self, text: str, name: str) -> list[str]:
        """A query parameter's comma-separated ids: at least one, at most ``--max-list`` (as ``:predict``)."""
        ids = split_ids(text)
        if not ids:
            raise BadRequest(f"query parameter {name!r} must list movie ids separated by commas")
        if len(ids) > self.limits.max_list:
            raise BadRequest(f"query parameter {name!r} lists {len(ids):,} ids; the limit is {self.limits.max_list:,}")
        return ids

    def _k(self, query, default: str = "10") -> int:
        text = query.get("k", default)
        digits = text.lstrip("-")
        if not (digits.isascii() and digits.isdigit()) or not 1 <= int(text) <= self.limits.max_k:
            raise BadRequest(f"k must be an integer between 1 and {self.limits.max_k:,}, got {text!r}")
        return int(text)

    async def _get_call(self, signature: str, inputs: dict) -> dict[str, np.ndarray]:
        state, model = self._serving()
        return await self._call((state.version, signature), model.signatures[signature], inputs)

    async def healthz(self, request: Request) -> Response:
        available = [s.version for s in self.versions.available()]
        body = {"status": "ok" if available else "unavailable", "model": self.versions.name,
                "version": str(available[0]) if available else None, "versions": [str(v) for v in available]}
        return _json(body, 200 if available else 503)

    async def prometheus(self, request: Request) -> Response:
        return self.metrics.render()


@functools.cache
def _page() -> bytes:
    """The page for people (``page.html`` beside this module): plain HTML and JavaScript, nothing fetched
    from elsewhere, so it works offline."""
    return (importlib.resources.files("tfrs_pipeline.server") / "page.html").read_bytes()


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


def _required(query, name: str) -> str:
    if not query.get(name):
        raise BadRequest(f"query parameter {name!r} is required")
    return query[name]


def _movies(outputs: dict, columns: list[str], known: dict, renamed: dict | None = None) -> dict:
    names = {"movie_ids": "movie_id", "titles": "title", "predicted_ratings": "predicted_rating",
             "retrieval_scores": "retrieval_score", "scores": "score", **(renamed or {})}
    values = [rest.jsonable(outputs[c][0]) for c in columns]
    rows = [dict(zip((names[c] for c in columns), row)) for row in zip(*values)]
    rows = [row for row in rows if row["movie_id"]]  # past the movies left: empty slots
    return {**known, "movies": rows}


class _AccessLog:
    """ASGI middleware: one access-log line and the request metrics per HTTP request."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500
        self.metrics.in_flight.inc()

        async def send_with_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            seconds = time.perf_counter() - start
            self.metrics.in_flight.dec()
            self.metrics.observe(scope["path"], scope["method"], status, seconds)
            client = scope.get("client") or ("-", 0)
            access_log.info('%s "%s %s" %d %.1f ms', client[0], scope["method"], scope["path"], status,
                            seconds * 1000.0)
