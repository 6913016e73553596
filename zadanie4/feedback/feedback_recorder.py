"""Feedback from the shop: written durably first, then counted, given to exploration and to real-time updates.

A 200 on ``/feedback`` means every event of the request is in the durable log (:mod:`zadanie4.feedback.
feedback_log`). Only then is each new event counted per variant, handed to ``on_stored`` (the new-product
explorer's click and impression counts) and queued for zadanie2's real-time feature update. A worker thread
applies those updates at most once per interval: an update recomputes whole users in pandas (GIL-bound for
~0.1 s), so batching bounds its share of the CPU whatever the feedback rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zadanie4.feedback.feedback_log import FeedbackLog, FeedbackRecord, open_feedback_log, variant_of
from zadanie4.observability.prometheus_metrics import ServiceMetrics
from zadanie4.settings import ServeSettings

log = logging.getLogger(__name__)
REALTIME_BATCH_EVENTS = 5000  # most feedback events coalesced into one real-time feature update

ProductFacts = Callable[[int], tuple[int | None, float | None]]
"""product id -> (category id, price), None where unknown: what the real-time update needs besides the event."""


class FeedbackUnavailable(Exception):
    """The feedback log could not write; nothing of the batch is acknowledged."""


@dataclass
class FeedbackOutcome:
    results: list[tuple[str, bool]]  # (event_id, stored now)

    @property
    def stored(self) -> int:
        return sum(1 for _, new in self.results if new)

    @property
    def duplicates(self) -> int:
        return len(self.results) - self.stored


class FeedbackRecorder:
    """The feedback path of one service instance: durable log, counters, real-time update worker."""

    def __init__(
        self,
        settings: ServeSettings,
        metrics: ServiceMetrics,
        *,
        on_stored: Callable[[int, str], None],
        product_facts: ProductFacts,
        feedback_log: FeedbackLog | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.log: FeedbackLog | None = feedback_log
        self._on_stored = on_stored
        self._product_facts = product_facts
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="feedback-write")
        self._realtime_queue: queue.Queue[Any] = queue.Queue(maxsize=settings.feedback_queue_size)
        self._realtime_thread: threading.Thread | None = None

    def open_log(self) -> None:
        """Open the configured log (Redis Stream, else SQLite) unless one was given; on failure
        ``/feedback`` answers 503 until it can write, while recommendations keep working."""
        if self.log is not None:
            return
        s = self.settings
        try:
            self.log = open_feedback_log(
                redis_url=s.redis_url,
                sqlite_path=s.resolved_feedback_sqlite_path,
                stream=s.feedback_stream,
                dedupe_ttl_s=s.feedback_dedupe_ttl_s,
                timeout_s=s.redis_timeout_s,
            )
        except Exception as exc:
            log.error("feedback log unavailable: %s", exc)

    async def record(self, records: Sequence[FeedbackRecord]) -> FeedbackOutcome:
        """Write durably (off the loop), then count, update exploration and queue the real-time update."""
        feedback_log = self.log
        if feedback_log is None:
            for r in records:
                self.metrics.count_feedback(r.event_type, "failed")
            raise FeedbackUnavailable("feedback log is not available")
        loop = asyncio.get_running_loop()
        try:
            flags = await loop.run_in_executor(self._executor, feedback_log.append, records)
        except Exception as exc:
            log.error("feedback write failed: %s", exc)
            for r in records:
                self.metrics.count_feedback(r.event_type, "failed")
            raise FeedbackUnavailable(f"feedback store unavailable ({type(exc).__name__})") from exc
        stored: list[FeedbackRecord] = []
        for record, new in zip(records, flags, strict=True):
            if new:
                stored.append(record)
                self.metrics.count_feedback(record.event_type, "stored", record.variant)
                self._on_stored(record.product_id, record.event_type)
            else:
                self.metrics.count_feedback(record.event_type, "duplicate")
        if stored and self._realtime_thread is not None:
            try:
                self._realtime_queue.put_nowait([self._with_product_facts(r.as_dict()) for r in stored])
            except queue.Full:
                log.warning("real-time feature update queue full: %d events left to the batch path", len(stored))
            self.metrics.set_queue_size("feedback", self._realtime_queue.qsize())
        return FeedbackOutcome([(r.event_id, new) for r, new in zip(records, flags, strict=True)])

    def _with_product_facts(self, record: dict[str, Any]) -> dict[str, Any]:
        record["category_id"], record["price"] = self._product_facts(int(record["product_id"]))
        return record

    def start_realtime_worker(self, update: Callable[[Sequence[Mapping[str, Any]]], None] | None) -> None:
        """Apply stored events to the online features in the background (no-op when updates are off)."""
        if update is None or not self.settings.realtime_updates:
            return

        interval_s = self.settings.realtime_update_interval_s

        def run() -> None:
            last = 0.0
            while True:
                batch = self._realtime_queue.get()
                if batch is None:
                    return
                wait_s = last + interval_s - time.monotonic()  # at most one update per interval
                if wait_s > 0:
                    time.sleep(wait_s)
                last = time.monotonic()
                stop = False
                while len(batch) < REALTIME_BATCH_EVENTS:  # coalesce what queued up meanwhile: one update call
                    try:
                        more = self._realtime_queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.extend(more)
                try:
                    update(batch)
                except Exception:  # the durable log has the events; the update is best effort
                    log.warning("real-time feature update failed", exc_info=True)
                self.metrics.set_queue_size("feedback", self._realtime_queue.qsize())
                if stop:
                    return

        self._realtime_thread = threading.Thread(target=run, name="realtime-feature-update", daemon=True)
        self._realtime_thread.start()

    def stop(self) -> None:
        """Let the worker finish its batch, wait for writes in progress, close the log."""
        if self._realtime_thread is not None:
            with contextlib.suppress(queue.Full):
                self._realtime_queue.put_nowait(None)
            self._realtime_thread.join(timeout=2.0)
        self._executor.shutdown(wait=True)
        if self.log is not None:
            self.log.close()


def feedback_records(events: Sequence[Mapping[str, Any]]) -> list[FeedbackRecord]:
    """API events (dicts of validated fields) -> records with variant and a UTC ISO timestamp."""
    now = datetime.now(UTC)
    out = []
    for e in events:
        stamp = e.get("timestamp") or now
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        recommendation_id = e.get("recommendation_id")
        out.append(
            FeedbackRecord(
                event_id=e["event_id"],
                user_id=int(e["user_id"]),
                product_id=int(e["product_id"]),
                event_type=e["event_type"],
                recommendation_id=recommendation_id,
                variant=variant_of(recommendation_id),
                timestamp=stamp.astimezone(UTC).isoformat(),
            )
        )
    return out
