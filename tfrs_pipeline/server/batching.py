"""Server-side batching: concurrent requests to one signature merged into one call, as TF Serving's
``--enable_batching`` does.

Requests join a batch when they name the same version and signature, the same scalar
inputs (``k``) and the same row width of list inputs. A batch runs once ``window_ms`` has
passed since its first request arrived, or at once when it holds ``max_rows`` rows, and when
one of ``threads`` batch threads is free (TF Serving's ``num_batch_threads``; TensorFlow already
spreads one call over every core, so more than one mainly overlaps a call with the answers and
new requests of the last); requests that arrive while every thread is busy wait, so batches
grow with the load. As in TF Serving, the batch threads take the next batch from the queue
themselves: a thread whose call returned takes the next waiting batch before it hands the
finished batch's outputs to the event loop, so the model never waits for the event loop
(which may be busy reading requests and writing answers). Each request then gets its own rows
of the outputs. The inputs were checked one by one before they joined; should a batch fail
all the same, each of its requests is run again alone, so that one bad request fails itself
and no other.

Examples:
    >>> batcher = Batcher(run=lambda function, inputs: function(**inputs), window_ms=2.0)  # doctest: +SKIP
    >>> outputs = await batcher.submit(key, function, inputs)  # doctest: +SKIP
    >>> batcher.close()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Pending:
    key: tuple
    function: Callable
    scalars: dict[str, np.ndarray]
    arrived: float
    loop: asyncio.AbstractEventLoop
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.sizes)


class Batcher:
    """Merges concurrent requests into one signature call.

    Args:
        run: ``run(function, inputs) -> outputs`` (NumPy in, NumPy out); called in a batch thread.
        window_ms: how long the first request of a batch waits for others (milliseconds).
        max_rows: rows (users) that close a batch at once.
        threads: batch threads, the batches that may run at the same time.
        on_batch: ``on_batch(rows, queued_seconds, call_seconds)`` after each call that returned:
            its rows, the time from its first request's arrival until a thread started it, and
            the call's own time (for the metrics; called on the event loop).
    """

    def __init__(self, run: Callable, window_ms: float = 2.0, max_rows: int = 256, threads: int = 1,
                 on_batch: Callable[[int, float, float], None] | None = None) -> None:
        if window_ms < 0 or max_rows < 1 or threads < 1:
            raise ValueError(f"window_ms must be >= 0 and max_rows and threads >= 1, got {window_ms}, {max_rows} "
                             f"and {threads}")
        self.run = run
        self.window = window_ms / 1000.0
        self.max_rows = max_rows
        self.threads = threads
        self.on_batch = on_batch
        # Guards the queue; the batch threads wait on it for a batch that is due.
        self._changed = threading.Condition()
        self._queue: deque[_Pending] = deque()  # every batch not yet run, oldest first
        self._open: dict[tuple, _Pending] = {}  # per key, the batch new requests join
        self._workers: list[threading.Thread] = []
        self._closed = False
        #: Calls made and rows sent, for the metrics; batches that failed and were run again request by request.
        self.calls = 0
        self.rows = 0
        self.retried = 0

    async def submit(self, key: tuple, function: Callable, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This request's rows of a batched call's outputs."""
        batched = {name: value for name, value in inputs.items() if value.ndim > 0}
        scalars = {name: value for name, value in inputs.items() if value.ndim == 0}
        widths = tuple(sorted((name, value.shape[1:]) for name, value in batched.items()))
        key = (*key, tuple(sorted((n, int(v)) for n, v in scalars.items())), widths)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._changed:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if not self._workers:
                self._workers = [threading.Thread(target=self._work, name=f"batch-{n}", daemon=True)
                                 for n in range(self.threads)]
                for worker in self._workers:
                    worker.start()
            pending = self._open.get(key)
            started = pending is None or pending.rows >= self.max_rows  # none open, or full: this request starts one
            if started:
                pending = self._open[key] = _Pending(key, function, scalars, time.monotonic(), loop)
                self._queue.append(pending)
            pending.parts.append(batched)
            pending.futures.append(future)
            pending.sizes.append(len(next(iter(batched.values()))) if batched else 1)
            # A waiting thread already sleeps until the oldest batch is due: wake it only for a new
            # batch (the queue may have been empty) or one that is now full.
            if started or pending.rows >= self.max_rows:
                self._changed.notify()
        return await future

    def close(self) -> None:
        """Stops the batch threads once their calls return; batches still queued fail."""
        with self._changed:
            self._closed = True
            left, self._queue = list(self._queue), deque()
            self._open.clear()
            self._changed.notify_all()
        for pending in left:
            self._hand_back(pending, [(None, RuntimeError("the server is shutting down"))] * len(pending.futures),
                            0.0, 0.0)
        for worker in self._workers:
            if worker is not threading.current_thread():
                worker.join()

    def _work(self) -> None:
        """One batch thread: runs due batches until :meth:`close`."""
        pending = self._next(wait=True)
        while pending is not None:
            started = time.monotonic()
            results = self._run(pending)
            finished = time.monotonic()
            # The next due batch is this thread's before the event loop writes the answers.
            following = self._next(wait=False)
            self._hand_back(pending, results, started, finished)
            pending = following or self._next(wait=True)

    def _run(self, pending: _Pending) -> list[tuple[dict | None, BaseException | None]]:
        """Each request's outputs or error: one call for the batch, or one call each if that call failed."""
        try:
            inputs = {name: np.concatenate([part[name] for part in pending.parts]) for name in pending.parts[0]}
            outputs = self.run(pending.function, {**inputs, **pending.scalars})
        except Exception as raised:
            if len(pending.parts) == 1:
                return [(None, raised)]
            self.retried += 1
            return [self._run_one(pending, part) for part in pending.parts]
        results, start = [], 0
        for size in pending.sizes:
            results.append(({name: value[start : start + size] for name, value in outputs.items()}, None))
            start += size
        return results

    def _run_one(self, pending: _Pending, part: dict[str, np.ndarray]) -> tuple[dict | None, BaseException | None]:
        try:
            return self.run(pending.function, {**part, **pending.scalars}), None
        except Exception as raised:
            return None, raised

    def _next(self, wait: bool) -> _Pending | None:
        """Takes the oldest batch once it is due; None when none is due (``wait=False``) or on close."""
        with self._changed:
            while not self._closed:
                if self._queue:
                    pending = self._queue[0]
                    due = pending.arrived + self.window - time.monotonic()
                    if due <= 0 or pending.rows >= self.max_rows:
                        self._queue.popleft()
                        if self._open.get(pending.key) is pending:
                            del self._open[pending.key]
                        self.calls += 1
                        self.rows += pending.rows
                        return pending
                if not wait:
                    return None
                self._changed.wait(due if self._queue else None)
            return None

    def _hand_back(self, pending: _Pending, results: list, started: float, finished: float) -> None:
        try:
            pending.loop.call_soon_threadsafe(self._deliver, pending, results, started, finished)
        except RuntimeError:  # the event loop has closed: nobody is waiting
            pass

    def _deliver(self, pending: _Pending, results: list, started: float, finished: float) -> None:
        """Each request of the batch gets its outputs or its error (on the event loop)."""
        if len(results) == 1 and len(pending.futures) > 1:  # a batch of one call's error, shared
            results = results * len(pending.futures)
        for (outputs, error), future in zip(results, pending.futures):
            if future.done():  # a request that timed out has gone
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(outputs)
        if self.on_batch is not None and started and any(error is None for _, error in results):
            self.on_batch(pending.rows, started - pending.arrived, finished - started)
