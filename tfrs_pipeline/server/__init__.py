"""Serving over HTTP with TensorFlow Serving's REST contract: Starlette on uvicorn.

* :mod:`~tfrs_pipeline.server.versions`: :class:`ModelVersions`, the versions of a model base
  loaded in the background, warmed up, and served by number or label.
* :mod:`~tfrs_pipeline.server.rest`: TensorFlow Serving's paths, request bodies, answers and limits.
* :mod:`~tfrs_pipeline.server.batching`: concurrent requests merged into one signature call.
* :mod:`~tfrs_pipeline.server.app`: the application: TensorFlow Serving's routes, and the others mounted.
* :mod:`~tfrs_pipeline.server.people`: the page and the JSON routes it asks (``/recommend``, ``/similar``, ...).
* :mod:`~tfrs_pipeline.server.telemetry`: the Prometheus metrics and the access log.
* :mod:`~tfrs_pipeline.server.guard`: security headers and the ``Host`` check.
* :mod:`~tfrs_pipeline.server.protocol`: the HTTP connection, with header limits and timeouts.

The server process imports TensorFlow and the client alone: no TFRS, no training code.

Examples:
    >>> server = make_server(model_path, port=0)  # saved_models/NAME, any free port on 127.0.0.1
    >>> server.start()  # in a background thread; server.run() serves in the foreground
    >>> server.url  # doctest: +ELLIPSIS
    'http://127.0.0.1:...'
    >>> server.stop()
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from pathlib import Path

import uvicorn

from tfrs_pipeline.errors import ConfigError
from tfrs_pipeline.model_dir import ModelDir
from tfrs_pipeline.server import guard
from tfrs_pipeline.server.app import ServerApp
from tfrs_pipeline.server.protocol import LimitedHttpProtocol
from tfrs_pipeline.server.rest import Limits
from tfrs_pipeline.server.versions import ModelVersions

#: Python's thread switch interval while serving (its default is 0.005 s).
SWITCH_INTERVAL_SECONDS = 0.0005

__all__ = ["HttpServer", "Limits", "ModelVersions", "ServerApp", "make_server", "set_tensorflow_threads",
           "tensorflow_threads"]


class HttpServer:
    """A bound socket and the uvicorn server that answers on it.

    Args:
        application: the application.
        sock: a bound, listening socket.
        graceful_seconds: how long a stopping server waits for requests in flight.
    """

    def __init__(self, application: ServerApp, sock: socket.socket, graceful_seconds: float = 30.0) -> None:
        self.application = application
        self.versions = application.versions
        self.socket = sock
        config = uvicorn.Config(application.app, log_config=None, access_log=False, lifespan="on",
                                timeout_keep_alive=5, timeout_graceful_shutdown=graceful_seconds, backlog=2048,
                                http=LimitedHttpProtocol)
        self.uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self.socket.getsockname()[0]

    @property
    def port(self) -> int:
        return self.socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def run(self) -> None:
        """Serves until SIGTERM or Ctrl-C; requests in flight are answered before it returns."""
        # The event loop and the threads calling TensorFlow share the GIL; Python's default 5 ms
        # switch interval makes a thread whose TensorFlow call just returned wait behind the loop.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        try:
            self.uvicorn.run(sockets=[self.socket])  # its lifespan stops the version watcher
        finally:
            self.socket.close()

    def start(self) -> None:
        """Serves in a background thread (tests, benchmarks); returns once the server answers."""
        self._thread = threading.Thread(target=self.run, name="http-server", daemon=True)
        self._thread.start()
        while not self.uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError("the HTTP server stopped while starting")
            self._thread.join(0.01)

    def stop(self) -> None:
        """Stops a server started with :meth:`start`, after the requests in flight."""
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=60)


def set_tensorflow_threads(intra_op: int | None = None, inter_op: int | None = None) -> None:
    """Sizes TensorFlow's thread pools for this process, as TensorFlow Serving's
    ``--tensorflow_intra_op_parallelism`` and ``--tensorflow_inter_op_parallelism`` do (None:
    TensorFlow's choice, one thread per core). Call it before the first model loads.

    Raises:
        ConfigError: TensorFlow has started its thread pools already.
    """
    import tensorflow as tf

    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as error:
        raise ConfigError(f"TensorFlow's threads can only be set before it starts: {error}") from None


def tensorflow_threads() -> str:
    """TensorFlow's thread pool sizes, as set (``"1 intra-op, default inter-op"``)."""
    import tensorflow as tf

    sizes = (tf.config.threading.get_intra_op_parallelism_threads(),
             tf.config.threading.get_inter_op_parallelism_threads())
    return ", ".join(f"{size or 'default'} {name}-op" for size, name in zip(sizes, ("intra", "inter")))


def make_server(model: str | Path, host: str = "127.0.0.1", port: int = 8501, *, version_policy="latest",
                labels_path: str | Path | None = None, poll_seconds: float = 2.0, limits: Limits | None = None,
                batching: bool = False, batch_window_ms: float = 2.0, max_batch_rows: int = 256,
                batch_threads: int = 1, allowed_hosts: list[str] | tuple[str, ...] = ()) -> HttpServer:
    """A server for ``saved_models/NAME`` (every version, per the policy) or ``saved_models/NAME/VERSION``
    (that version alone), bound and with its first version loaded; ``port=0`` picks a free port.

    Requests must name the server's own host (its address, and on a loopback address
    ``localhost``); ``allowed_hosts`` adds others (see :mod:`~tfrs_pipeline.server.guard`).

    Raises:
        ModelError: nothing there to serve.
        ConfigError: the address cannot be bound (busy port, unknown host).
    """
    candidates = ModelDir.candidates(model)  # one clear error for a folder that holds no model
    base = candidates[0].base
    if len(candidates) == 1 and Path(model).resolve() == candidates[0].path.resolve():
        version_policy = [candidates[0].version]  # a version folder given: serve that version
    versions = ModelVersions(base, version_policy, labels_path, poll_seconds)
    sock = _bind(host, port)
    try:
        application = ServerApp(versions, limits, batching=batching, batch_window_ms=batch_window_ms,
                                max_batch_rows=max_batch_rows, batch_threads=batch_threads,
                                hosts=guard.allowed_hosts(host, list(allowed_hosts)))
        versions.start()
    except BaseException:
        sock.close()
        raise
    return HttpServer(application, sock)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on such sockets (else Nagle adds 40 ms per answer).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except socket.gaierror as error:
        raise ConfigError(f"cannot serve on host {host!r}: not a known address ({error.strerror}); "
                          "use an IP address such as 127.0.0.1 or a resolvable host name") from None
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        hint = "; choose another --port or stop the server using it" if getattr(error, "errno", None) == errno.EADDRINUSE else ""
        raise ConfigError(f"cannot serve on {host}:{port}: {reason}{hint}") from None
    sock.set_inheritable(True)
    return sock
