"""Online-store reads on the request path: off the event loop, under a deadline, behind a circuit breaker.

The feature reader (zadanie2) is synchronous and may block (a slow or stopped Redis). Each read runs
in a small dedicated thread pool and the request waits at most until its deadline; a read that is
still queued when its deadline passes is skipped instead of hitting the store late. With direct
Redis, the request's reads are instead awaited on the event loop (``zadanie4.pipeline.redis_reads``:
no thread hand-off, same deadline, breaker and failures). After
``failures`` consecutive failures the breaker opens and reads fail at once for ``cooldown_s``
seconds (requests are served from the fallback without waiting), then one more failure reopens it
and one success closes it. So a dead store costs each request microseconds, a slow one at most the
budget, and the event loop never blocks on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from zadanie4.dependencies import FeatureReader
from zadanie4.pipeline.redis_reads import EventLoopRedisReads

T = TypeVar("T")
FailureKind = Literal["error", "timeout"]


class StoreFailure(Exception):
    """An online-store read failed (``kind='error'``) or missed its deadline (``kind='timeout'``)."""

    def __init__(self, kind: FailureKind, message: str, *, skipped: bool = False) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.skipped = skipped  # True when the store was not even tried (breaker open)


def failure_kind(exc: BaseException) -> FailureKind:
    """``timeout`` for timeout-like exceptions (by type or name, e.g. FeatureStoreTimeout), else ``error``."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "timeout" if any("Timeout" in cls.__name__ for cls in type(exc).__mro__) else "error"


class CircuitBreaker:
    """Consecutive-failure breaker; thread-safe; ``clock`` in seconds (monotonic)."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures_to_open = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return self._clock() < self._open_until

    def record_success(self) -> None:
        if self._consecutive:
            with self._lock:
                self._consecutive = 0

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._consecutive >= self.failures_to_open:
                self._open_until = self._clock() + self.cooldown_s
                self._consecutive = self.failures_to_open - 1  # after the cooldown one failure reopens


class GuardedFeatureReader:
    """Async, deadline-bounded access to a blocking :class:`FeatureReader` (see module doc)."""

    def __init__(
        self,
        reader: FeatureReader,
        *,
        threads: int = 32,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        loop_reads: EventLoopRedisReads | None = None,
    ) -> None:
        self.reader = reader
        self.breaker = breaker or CircuitBreaker(5, 1.0, clock)
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="feature-read")
        self.loop_reads = loop_reads  # when set, read_user_and_pairs runs on the event loop (no thread hop)

    async def read_user(self, user_id: int, deadline: float) -> dict[str, Any] | None:
        """The user's stored user_stats row (None for an unknown user) or StoreFailure."""
        return await self._call(self.reader.read_user, (user_id,), deadline)

    async def read_user_products(
        self, user_id: int, product_ids: Sequence[int], deadline: float
    ) -> dict[int, dict[str, Any]]:
        """user_product_interactions rows for ``product_ids`` (missing pairs absent) or StoreFailure."""
        if not product_ids:
            return {}
        return await self._call(self.reader.read_user_products, (user_id, list(product_ids)), deadline)

    async def read_user_and_pairs(
        self, user_id: int, deadline: float, pair_products: Callable[[dict[str, Any]], Sequence[int]]
    ) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
        """The user row, then the pair rows of ``pair_products(row)``, under one deadline.

        With ``loop_reads`` (direct Redis) both reads are awaited on the event loop; otherwise they
        share ONE thread hop (handing work to a thread costs ~0.1-0.3 ms of event-loop time). The
        pair read is skipped when the deadline passed after the user read.
        """
        if self.loop_reads is not None:
            return await self._await_store(
                self.loop_reads.read_user_and_pairs, (user_id, deadline, pair_products), deadline
            )

        def both() -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
            row = self.reader.read_user(user_id)
            if row is None:
                return None, {}
            products = list(pair_products(row))
            if not products:
                return row, {}
            if self._clock() >= deadline:
                raise StoreFailure("timeout", "no time left for the pair rows")
            return row, self.reader.read_user_products(user_id, products)

        return await self._call(both, (), deadline)

    async def _call(self, function: Callable[..., T], args: tuple[Any, ...], deadline: float) -> T:
        if self.breaker.is_open:
            raise StoreFailure("error", "online store skipped: circuit breaker open", skipped=True)
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise StoreFailure("timeout", "no time left for the online store")
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._run_before, deadline, function, args)
        try:
            result = await asyncio.wait_for(future, remaining)
        except TimeoutError as exc:
            self.breaker.record_failure()
            raise StoreFailure("timeout", f"online store slower than its {remaining * 1000:.0f} ms budget") from exc
        except StoreFailure:
            self.breaker.record_failure()
            raise
        except Exception as exc:
            self.breaker.record_failure()
            raise StoreFailure(failure_kind(exc), f"online store read failed: {type(exc).__name__}") from exc
        self.breaker.record_success()
        return result

    async def _await_store(self, function: Callable[..., Awaitable[T]], args: tuple[Any, ...], deadline: float) -> T:
        """Like :meth:`_call` for a read done on the event loop: same breaker, budget and failures."""
        if self.breaker.is_open:
            raise StoreFailure("error", "online store skipped: circuit breaker open", skipped=True)
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise StoreFailure("timeout", "no time left for the online store")
        try:
            result = await function(*args)
        except TimeoutError as exc:
            self.breaker.record_failure()
            raise StoreFailure("timeout", f"online store slower than its {remaining * 1000:.0f} ms budget") from exc
        except Exception as exc:
            self.breaker.record_failure()
            raise StoreFailure(failure_kind(exc), f"online store read failed: {type(exc).__name__}") from exc
        self.breaker.record_success()
        return result

    def _run_before(self, deadline: float, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._clock() >= deadline:  # waited in the queue past the deadline: don't load the store for nothing
            raise StoreFailure("timeout", "online store read skipped: deadline passed in the queue")
        return function(*args)

    def close(self) -> None:
        """Stop the threads (queued reads are cancelled) and close the reader."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.loop_reads is not None:
            self.loop_reads.close()
        with contextlib.suppress(Exception):  # closing a broken connection must not fail the shutdown
            self.reader.close()
