"""Wall time and peak resident memory of each phase of a run (what ``metrics.json`` records under ``training``)."""

from __future__ import annotations

import contextlib
import sys
import time


def peak_rss_mib(usage=None) -> float:
    """Peak resident memory, MiB: this process's so far, or that of ``usage`` (a ``resource``
    usage record, such as a finished child's from ``os.wait4``); 0 where the platform does not say."""
    if usage is None:
        try:
            import resource
        except ImportError:  # Windows
            return 0.0
        usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


class Phases:
    """Wall seconds of each phase of a run, and the process's peak resident memory when it ended.

    Examples:
        >>> phases = Phases()
        >>> with phases("data"):
        ...     pass
        >>> sorted(phases.record["data"])
        ['peak_rss_mib', 'seconds']
    """

    def __init__(self) -> None:
        self.record: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.record[name] = {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


class Steps:
    """The ``[i/n]`` of the log's phase lines: each phase the run goes through is counted once."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    @classmethod
    def of(cls, config) -> Steps:
        """Data, split, retrieval, rating model, export and evaluation; with the list ranker its item-item
        model and its training; with ``retrieval.refit`` the refit (``config``: a ``PipelineConfig``)."""
        return cls(6 + 2 * bool(config.ranker.enabled) + bool(config.retrieval.refit))

    def __call__(self, text: str) -> str:
        self.done = min(self.done + 1, self.total)
        return f"[{self.done}/{self.total}] {text}"
