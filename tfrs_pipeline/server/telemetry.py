"""What the server tells its operators: Prometheus metrics and one access-log line per request.

* :class:`Metrics`: requests by route and status, latency histograms, requests in flight, each
  version's state, and the batcher's batches (``GET /metrics``).
* :class:`AccessLog`: ASGI middleware that logs each request and counts it in :class:`Metrics`.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.responses import Response

from tfrs_pipeline.server import rest
from tfrs_pipeline.server.batching import Batcher
from tfrs_pipeline.server.rest import BadRequest
from tfrs_pipeline.server.versions import AVAILABLE, END, LOADING, UNLOADING, ModelVersions

access_log = logging.getLogger("tfrs_pipeline.access")

_STATES = (LOADING, AVAILABLE, UNLOADING, END)

#: Histogram buckets (seconds) for what takes milliseconds.
_FAST_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

#: Distinct paths whose metrics route label is remembered (paths come from clients: bounded).
_ROUTE_CACHE_SIZE = 1024


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


class AccessLog:
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
