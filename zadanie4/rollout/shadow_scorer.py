"""Shadow scoring: the challenger ranks a copy of live requests off the request path.

A request served by the champion puts a :class:`ShadowJob` (the inputs it already read plus the
served product ids) into a bounded queue with ``put_nowait``; a full queue drops the job (counted),
so the request never waits. One background thread takes jobs, asks the challenger for its list and
records overlap@k with the served list and the challenger's latency. Any exception of the challenger
is counted and swallowed. The response never depends on the shadow. Turning the shadow off drops
the jobs still queued.

The challenger's work is Python and shares the GIL with the event loop, so the worker starts a job
only while no request is being served (``busy()`` false), and hands the GIL over before every job:
the shadow uses the service's idle time and leaves the live requests' latency alone; under sustained
load the queue fills and jobs are dropped.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zadanie4.observability.prometheus_metrics import ServiceMetrics

log = logging.getLogger(__name__)
_STOP = object()
ERROR_LOG_EVERY_S = 60.0  # a failing challenger fails on every job: one traceback a minute, the rest counted


@dataclass(frozen=True)
class ShadowJob:
    """Everything the challenger needs to rank like the champion did, with no I/O."""

    user_id: int
    k: int
    served_product_ids: tuple[int, ...]
    inputs: Any  # opaque to the scorer: passed to the score function as is
    challenger: Any  # the challenger model at the time of the request


def overlap_at_k(served: Sequence[int], shadow: Sequence[int], k: int) -> float:
    """|top-k served ∩ top-k shadow| / k, in [0, 1] (1.0 for two empty lists)."""
    if k <= 0:
        return 1.0
    return len(set(served[:k]) & set(shadow[:k])) / k


class ShadowScorer:
    """Bounded queue + one worker thread; ``score`` maps a job to the challenger's product ids, best first."""

    def __init__(
        self,
        score: Callable[[ShadowJob], Sequence[int]],
        metrics: ServiceMetrics,
        max_queue: int = 256,
        busy: Callable[[], bool] = lambda: False,
        idle_poll_s: float = 0.0005,
    ) -> None:
        self._score = score
        self._metrics = metrics
        self._busy = busy
        self._idle_poll_s = idle_poll_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._error_logged_at: float | None = None
        self._thread: threading.Thread | None = None
        self.completed = 0  # jobs finished (scored or failed): lets tests wait for the worker

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
            self._thread.start()

    def submit(self, job: ShadowJob) -> bool:
        """Queue a job without waiting; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._metrics.count_shadow_skipped("dropped")
            return False
        self._metrics.set_queue_size("shadow", self._queue.qsize())
        return True

    @property
    def queue_size(self) -> int:
        return self._queue.qsize()

    def discard_queued(self) -> int:
        """Drop the jobs still waiting (counted as dropped); the one being scored finishes.

        Turning the shadow off must stop the challenger's work: a slow challenger's backlog (up to
        ``max_queue`` jobs) would otherwise go on being scored for minutes after the operator's "off".
        """
        discarded = self._drain()
        for _ in range(discarded):
            self._metrics.count_shadow_skipped("dropped")
        self._metrics.set_queue_size("shadow", self._queue.qsize())
        return discarded

    def _drain(self) -> int:
        drained = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return drained
            drained += 1

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            # Sleep before looking: with a backlog the worker would go from job to job holding the GIL, and
            # a request that has arrived (its loop thread waiting for the GIL, not yet counted as busy) would
            # wait for the interpreter's forced switch (5 ms). The sleep hands the GIL over first.
            time.sleep(self._idle_poll_s)
            while self._busy():  # wait for a moment without live requests
                time.sleep(self._idle_poll_s)
            self._process(job)
            self._metrics.set_queue_size("shadow", self._queue.qsize())

    def _process(self, job: ShadowJob) -> None:
        started = time.perf_counter()
        try:
            shadow_ids = list(self._score(job))
            elapsed = time.perf_counter() - started
            k = len(job.served_product_ids) or job.k
            self._metrics.observe_shadow(overlap_at_k(job.served_product_ids, shadow_ids, k), elapsed)
        except Exception:  # the challenger may fail in any way: contain it, count it, keep serving
            self._metrics.count_shadow_skipped("error")
            now = time.monotonic()
            if self._error_logged_at is None or now - self._error_logged_at >= ERROR_LOG_EVERY_S:
                # Formatting a traceback per job held the GIL against live requests and flooded the log.
                self._error_logged_at = now
                log.warning(
                    "shadow scoring failed (further failures for %.0f s only counted in recsys_shadow_requests_total)",
                    ERROR_LOG_EVERY_S,
                    exc_info=True,
                )
        finally:
            self.completed += 1

    def stop(self, timeout_s: float = 0.5) -> None:
        """Stop the worker after the job it is on (queued jobs are discarded)."""
        if self._thread is None:
            return
        self._drain()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        self._thread.join(timeout_s)
        self._thread = None
