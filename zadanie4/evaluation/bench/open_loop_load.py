"""Open-loop HTTP load generator (asyncio + aiohttp) that measures latency from the SCHEDULED send time.

Request ``i`` of a step at rate ``r`` is due at ``start + i / r`` whatever happened to the requests
before it, and its latency is ``response end - due``. A server that stalls therefore gets charged for
every request that should have been sent during the stall (no coordinated omission, as in wrk2),
and a generator that falls behind its schedule shows up as send lag, which is reported so such a
step can be flagged. ``run_closed_loop`` is the max-throughput step: a fixed number of connections
send back to back and latency is measured from the actual send.

Timing uses ``time.perf_counter`` (ns resolution); the event loop's timers only have ~1 ms
resolution, so the last ``spin_ms`` before a due time are spent yielding to the loop
(``asyncio.sleep(0)``, which still processes responses) instead of sleeping: sends then leave
within a few microseconds of their due time. The spin is counted separately from the generator's
busy CPU.

Run alone: ``python -m zadanie4.evaluation.bench.open_loop_load http://127.0.0.1:8000/health/live --rate 300``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zadanie4.evaluation.bench.latency_summary import generator_health, summarize

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_SPIN_MS = 1.0
DEFAULT_DRAIN_S = 30.0
CLOSED_LOOP_SAFETY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request to send: method, absolute URL, optional body (bytes) and headers."""

    method: str
    url: str
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    marker: bytes | None = None  # a response body containing it is counted as "<status> <marker_label>"
    marker_label: str = "marked"


@dataclass
class StepResult:
    """Raw measurements of one step (seconds). ``rate_rps`` None = closed-loop max-throughput step."""

    rate_rps: float | None
    concurrency: int | None
    latencies_s: np.ndarray
    errors: int
    status_counts: dict[str, int]
    send_lags_s: np.ndarray
    window_s: float  # the sending window: schedule length (open loop) or run time (closed loop)
    elapsed_s: float  # including the wait for the last responses
    cpu_s: float  # generator process CPU time during the step
    spin_s: float  # part of the wall time spent yielding before due times (not load-generation work)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Latency summary plus the generator's own health, JSON-ready."""
        stats = summarize(self.latencies_s, self.errors, self.window_s).as_dict()
        busy_cpu = max(self.cpu_s - self.spin_s, 0.0)
        health = generator_health(busy_cpu, self.window_s, self.send_lags_s)
        return {
            "rate_rps": self.rate_rps,
            "concurrency": self.concurrency,
            **stats,
            "status_counts": dict(self.status_counts),
            "window_s": round(self.window_s, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "generator_cpu_share": round(self.cpu_s / self.window_s, 3) if self.window_s > 0 else 0.0,
            "generator_busy_share": health.cpu_share,
            "send_lag_p50_ms": health.send_lag_p50_ms,
            "send_lag_p99_ms": health.send_lag_p99_ms,
            "generator_saturated": health.saturated,
            "generator_warnings": list(health.reasons),
            **self.extra,
        }


class _Recorder:
    """Per-request outcomes of one step (preallocated; index = request number)."""

    def __init__(self, n: int) -> None:
        self.latencies = np.full(n, np.nan)
        self.statuses: Counter[str] = Counter()
        self.errors = 0

    def record(self, i: int, latency_s: float, status: str, ok: bool) -> None:
        self.latencies[i] = latency_s
        self.statuses[status] += 1
        if not ok:
            self.errors += 1


def _session(max_connections: int) -> Any:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections, keepalive_timeout=60)
    # Timeouts are enforced per request from its due time (below), not by aiohttp.
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False, trust_env=False
    )


async def _send(session: Any, spec: RequestSpec) -> str:
    """Send one request, read the whole body; the status code as text (plus the marker label if found)."""
    async with session.request(spec.method, spec.url, data=spec.body, headers=spec.headers) as response:
        body = await response.read()
        status = str(response.status)
    if spec.marker is not None and spec.marker in body:
        return f"{status} {spec.marker_label}"
    return status


def _is_ok(status: str) -> bool:
    return status[:1] == "2"


async def _send_and_release(session: Any, spec: RequestSpec, slots: asyncio.Semaphore) -> str:
    try:
        return await _send(session, spec)
    finally:
        slots.release()


def _retrieve(task: asyncio.Task[str]) -> None:
    """Done callback of an abandoned request: consume its outcome (nobody awaits it any more)."""
    if not task.cancelled():
        task.exception()


async def _timed(
    session: Any,
    spec: RequestSpec,
    i: int,
    due: float,
    timeout_s: float,
    slots: asyncio.Semaphore,
    rec: _Recorder,
    abandoned: set[asyncio.Task[str]],
) -> None:
    """Send ``spec`` once a connection slot is free; latency from ``due``; error "timeout" ``timeout_s`` after it.

    A request still waiting for a slot at its deadline is never sent. One already sent is recorded
    as a timeout at the deadline but left to finish in the background, holding its slot: closing
    its connection would not stop the server's work on it (uvicorn finishes abandoned requests),
    so the server's backlog from this generator stays bounded by the number of slots.
    """
    deadline = due + timeout_s
    try:
        async with asyncio.timeout(max(deadline - time.perf_counter(), 0.0)):
            await slots.acquire()
    except TimeoutError:
        rec.record(i, time.perf_counter() - due, "timeout", ok=False)
        return
    send = asyncio.ensure_future(_send_and_release(session, spec, slots))
    try:
        async with asyncio.timeout(max(deadline - time.perf_counter(), 0.0)):
            status = await asyncio.shield(send)
    except TimeoutError:
        rec.record(i, time.perf_counter() - due, "timeout", ok=False)
        abandoned.add(send)
        send.add_done_callback(abandoned.discard)
        send.add_done_callback(_retrieve)
    except Exception as exc:  # connection refused/reset: an error of the target, counted, never raised
        rec.record(i, time.perf_counter() - due, type(exc).__name__, ok=False)
    else:
        rec.record(i, time.perf_counter() - due, status, ok=_is_ok(status))


async def _prime(session: Any, specs: Sequence[RequestSpec], n: int, timeout_s: float = 30.0) -> None:
    """Open connections and touch caches with ``n`` untimed requests (errors ignored, at most ``timeout_s``)."""
    tasks = [asyncio.ensure_future(_send(session, specs[i % len(specs)])) for i in range(n)]
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    for task in done:
        task.exception()


async def _open_loop(
    specs: Sequence[RequestSpec],
    rate_rps: float,
    duration_s: float,
    *,
    timeout_s: float,
    max_connections: int,
    spin_s: float,
    prime: int,
    drain_s: float,
) -> StepResult:
    n = max(1, round(rate_rps * duration_s))
    interval = 1.0 / rate_rps
    rec = _Recorder(n)
    lags = np.zeros(n)
    spin_total = 0.0
    pending: set[asyncio.Task[None]] = set()
    abandoned: set[asyncio.Task[str]] = set()
    slots = asyncio.Semaphore(max_connections)
    async with _session(max_connections) as session:
        await _prime(session, specs, prime)
        cpu0 = time.process_time()
        start = time.perf_counter() + 0.005
        for i in range(n):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > spin_s:
                await asyncio.sleep(delay - spin_s)
            spin_from = time.perf_counter()
            while time.perf_counter() < due:
                await asyncio.sleep(0)
            now = time.perf_counter()
            spin_total += now - spin_from
            lags[i] = now - due
            task = asyncio.create_task(_timed(session, specs[i % len(specs)], i, due, timeout_s, slots, rec, abandoned))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(set(pending))
        end = time.perf_counter()
        cpu = time.process_time() - cpu0
        if abandoned:  # let the server finish what it was sent (bounded by the slots), then give up
            await asyncio.wait(set(abandoned), timeout=drain_s)
    return StepResult(
        rate_rps=rate_rps,
        concurrency=None,
        latencies_s=rec.latencies,
        errors=rec.errors,
        status_counts=dict(rec.statuses),
        send_lags_s=lags,
        window_s=n * interval,
        elapsed_s=end - start,
        cpu_s=cpu,
        spin_s=spin_total,
    )


async def _closed_loop(
    specs: Sequence[RequestSpec],
    concurrency: int,
    duration_s: float,
    *,
    timeout_s: float,
    prime: int,
) -> StepResult:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors = 0
    counter = 0

    async with _session(concurrency) as session:
        await _prime(session, specs, prime)
        cpu0 = time.process_time()
        start = time.perf_counter()
        stop_at = start + duration_s

        async def worker() -> None:
            nonlocal errors, counter
            while time.perf_counter() < stop_at:
                spec = specs[counter % len(specs)]
                counter += 1
                sent = time.perf_counter()
                try:
                    # No abandoning: the connections bound the server's backlog; the timeout is a safety net.
                    async with asyncio.timeout(max(timeout_s, CLOSED_LOOP_SAFETY_TIMEOUT_S)):
                        status = await _send(session, spec)
                    label, ok = status, _is_ok(status)
                except TimeoutError:
                    label, ok = "timeout", False
                except Exception as exc:
                    label, ok = type(exc).__name__, False
                    await asyncio.sleep(0.01)  # a refused connection must not become a busy loop
                latencies.append(time.perf_counter() - sent)
                statuses[label] += 1
                errors += 0 if ok else 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        end = time.perf_counter()
        cpu = time.process_time() - cpu0
    return StepResult(
        rate_rps=None,
        concurrency=concurrency,
        latencies_s=np.asarray(latencies),
        errors=errors,
        status_counts=dict(statuses),
        send_lags_s=np.zeros(0),
        window_s=end - start,
        elapsed_s=end - start,
        cpu_s=cpu,
        spin_s=0.0,
    )


@contextmanager
def collector_paused() -> Iterator[None]:
    """The measuring process's garbage collector off (after one collection) for the block.

    A full collection holds the GIL over every live object of the process: with the data and samples
    a load run keeps, it stalled the generator's schedule and every request in flight for 40-100 ms,
    which was then measured as the service's latency (counted as send lag or answer time).
    Nests: an inner block (a load step inside a paused scenario) leaves the collector as it found it.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run(coro: Any) -> StepResult:
    """Run one step on uvloop when available (lower per-request overhead than the default loop),
    the collector paused."""
    with collector_paused():
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            return asyncio.run(coro)
        return uvloop.run(coro)


def run_open_loop(
    specs: Sequence[RequestSpec],
    rate_rps: float,
    duration_s: float,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    spin_ms: float = DEFAULT_SPIN_MS,
    prime: int = 8,
    drain_s: float = DEFAULT_DRAIN_S,
) -> StepResult:
    """Send ``rate_rps * duration_s`` requests (cycling through ``specs``) on a fixed schedule.

    At most ``max_connections`` are in flight; a request waiting for a connection is still timed
    from its due time. Requests unanswered ``timeout_s`` after their due time count as errors; those
    already sent are then given up to ``drain_s`` more to finish (off the books) before the step returns.
    """
    if rate_rps <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    if not specs:
        raise ValueError("no requests to send")
    return _run(
        _open_loop(
            specs,
            rate_rps,
            duration_s,
            timeout_s=timeout_s,
            max_connections=max_connections,
            spin_s=spin_ms / 1000.0,
            prime=prime,
            drain_s=drain_s,
        )
    )


def run_closed_loop(
    specs: Sequence[RequestSpec],
    concurrency: int,
    duration_s: float,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    prime: int = 8,
) -> StepResult:
    """Max-throughput step: ``concurrency`` connections send back to back for ``duration_s`` seconds."""
    if concurrency <= 0 or duration_s <= 0:
        raise ValueError("concurrency and duration must be positive")
    if not specs:
        raise ValueError("no requests to send")
    return _run(_closed_loop(specs, concurrency, duration_s, timeout_s=timeout_s, prime=prime))


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: one step against one URL, summary as JSON on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body-file", help="request body (POST); sent with content-type application/json")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (open loop)")
    parser.add_argument("--max", action="store_true", help="closed-loop max-throughput step instead")
    parser.add_argument("--concurrency", type=int, default=16, help="connections of the --max step")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds after the due time")
    parser.add_argument("--spin-ms", type=float, default=DEFAULT_SPIN_MS)
    args = parser.parse_args(argv)
    body = open(args.body_file, "rb").read() if args.body_file else None  # noqa: SIM115
    headers = {"content-type": "application/json"} if body else None
    specs = [RequestSpec(args.method.upper(), args.url, body, headers)]
    if args.max:
        result = run_closed_loop(specs, args.concurrency, args.duration, timeout_s=args.timeout)
    else:
        result = run_open_loop(specs, args.rate, args.duration, timeout_s=args.timeout, spin_ms=args.spin_ms)
    print(json.dumps(result.summary(), indent=2))


if __name__ == "__main__":
    main()
