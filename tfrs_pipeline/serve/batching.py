"""Server-side batching: concurrent requests to one signature merged into one call, as TF Serving's
``--enable_batching`` does.

Requests join a batch when they name the same version and signature, the same scalar
inputs (``k``) and the same row width of list inputs. A batch runs once ``window_ms`` has
passed since its first request arrived, or at once when it holds ``max_rows`` rows, and when
one of ``threads`` calls is free (TF Serving's ``num_batch_threads``; TensorFlow already spreads
one call over every core, so more than one mainly overlaps a call with the answers and new
requests of the last); requests that arrive while every call is busy wait, so batches grow with
the load. When a call returns, the next waiting batch is handed to a thread before the
finished batch's requests are woken: the model does not sit idle while the event loop writes
their answers. Each request then gets its own rows of the outputs. A failing batch fails
every request in it with the same error (the inputs were checked one by one before they joined).

Example:
    >>> batcher = Batcher(run=lambda function, inputs: function(**inputs), window_ms=2.0)  # doctest: +SKIP
    >>> outputs = await batcher.submit(key, function, inputs)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import functools
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
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.sizes)


class Batcher:
    """Merges concurrent requests into one signature call.

    Args:
        run: ``run(function, inputs) -> outputs`` (NumPy in, NumPy out); called in a worker thread.
        window_ms: how long the first request of a batch waits for others (milliseconds).
        max_rows: rows (users) that close a batch at once.
        threads: batches that may run at the same time.
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
        self._free: asyncio.Semaphore | None = None
        self._queue: deque[_Pending] = deque()  # every batch not yet run, oldest first
        self._open: dict[tuple, _Pending] = {}  # per key, the batch new requests join
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        #: Calls made and rows sent, for the metrics.
        self.calls = 0
        self.rows = 0

    async def submit(self, key: tuple, function: Callable, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This request's rows of a batched call's outputs."""
        batched = {name: value for name, value in inputs.items() if value.ndim > 0}
        scalars = {name: value for name, value in inputs.items() if value.ndim == 0}
        widths = tuple(sorted((name, value.shape[1:]) for name, value in batched.items()))
        key = (*key, tuple(sorted((n, int(v)) for n, v in scalars.items())), widths)
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._free = asyncio.Semaphore(self.threads)
            self._worker = asyncio.get_running_loop().create_task(self._work())
        pending = self._open.get(key)
        if pending is None or pending.rows >= self.max_rows:  # none open, or full: this request starts one
            pending = self._open[key] = _Pending(key, function, scalars, time.monotonic())
            self._queue.append(pending)
        future = asyncio.get_running_loop().create_future()
        pending.parts.append(batched)
        pending.futures.append(future)
        pending.sizes.append(len(next(iter(batched.values()))) if batched else 1)
        self._wake.set()
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                pending = self._queue[0]
                wait = pending.arrived + self.window - time.monotonic()
                if wait > 0 and pending.rows < self.max_rows:
                    await asyncio.sleep(wait)
                    continue  # look again: the oldest batch may have filled up meanwhile
                await self._free.acquire()  # a free call; the batch keeps growing meanwhile
                self._queue.popleft()
                if self._open.get(pending.key) is pending:
                    del self._open[pending.key]
                self._start(pending, loop)

    def _start(self, pending: _Pending, loop: asyncio.AbstractEventLoop) -> None:
        """Hands the batch to a worker thread at once; :meth:`_deliver` runs when it returns."""
        names = list(pending.parts[0])
        inputs = {name: np.concatenate([part[name] for part in pending.parts]) for name in names}
        self.calls += 1
        self.rows += pending.rows
        call = loop.run_in_executor(None, self._timed_run, pending.function, {**inputs, **pending.scalars})
        call.add_done_callback(functools.partial(self._deliver, pending))

    def _timed_run(self, function: Callable, inputs: dict[str, np.ndarray]) -> tuple[dict, float, float]:
        started = time.monotonic()
        outputs = self.run(function, inputs)
        return outputs, started, time.monotonic()

    def _deliver(self, pending: _Pending, call: asyncio.Future) -> None:
        """Frees the call before waking the batch's requests, so that the next batch starts before
        this one's answers are written (the event loop runs what it was given in order)."""
        self._free.release()
        error = asyncio.CancelledError() if call.cancelled() else call.exception()
        if error is not None:  # every request of the batch gets the error
            for future in pending.futures:
                if not future.done():
                    future.set_exception(error)
            return
        outputs, started, finished = call.result()
        start = 0
        for size, future in zip(pending.sizes, pending.futures):
            if not future.done():
                future.set_result({name: value[start : start + size] for name, value in outputs.items()})
            start += size
        if self.on_batch is not None:
            self.on_batch(pending.rows, started - pending.arrived, finished - started)
