"""Outermost ASGI middleware: body size limit (413), load shedding (503) and per-request metrics.

Written as a plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which costs ~0.1 ms and a
task per request). For requests that carry a body it checks ``Content-Length`` first and then counts
the streamed bytes (a client may lie or use chunked encoding), buffering at most ``max_body_bytes``
before the app sees the body. Requests to the working endpoints (/recommend, /feedback) above
``max_in_flight`` concurrent ones are answered 503 at once with ``Retry-After``. Under a burst that cap
alone does not bite (the backlog waits outside the process, see :class:`EventLoopAdmission`), so the
overload guard shrinks it while the event loop's thread is saturated: a refusal costs ~0.1-0.3 ms
against ~2 ms for an answer, and the excess is refused in milliseconds instead of queueing for seconds.
``/admin/*`` requests without the right bearer token get 401 before their body is parsed (so a bad
body can never turn an auth failure into a 422).

A refused request's connection is not closed under a client still sending (:func:`_settle_body`):
closing a socket with unread bytes makes the kernel reset the connection, and the client then learned of
the answer only after a TCP retransmission timeout (~200 ms on loopback, seen in 1-2 of 200 10 MB
refusals). A declared body is left to the server, which drops it after the answer; a streamed one is read
and dropped here (up to ``DRAIN_MAX_BYTES`` and ``DRAIN_MAX_S``, the "lingering close" of nginx). The
connection then stays open for the client's next request. Latency and status are recorded per endpoint; the
handler puts the serving variant into ``scope["recsys.variant"]``.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

from zadanie4.prometheus_metrics import ServiceMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VARIANT_SCOPE_KEY = "recsys.variant"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SHED_ENDPOINTS = frozenset({"recommend", "feedback"})
DRAIN_MAX_BYTES = 16 * 1024 * 1024  # a refused body larger than this is not read: the connection is closed
DRAIN_MAX_S = 1.0  # nor is one that takes longer to arrive (a slow sender)


def endpoint_of(path: str) -> str | None:
    """The metrics ``endpoint`` label of a path; None for paths that are not measured (/metrics, /docs, 404s)."""
    if path == "/recommend":
        return "recommend"
    if path == "/feedback":
        return "feedback"
    if path.startswith("/health/"):
        return "health"
    if path == "/model":
        return "model"
    if path.startswith("/admin/"):
        return "admin"
    return None


class RunnableTimeClock:
    """Seconds the opening thread has been running or waiting in the run queue for a CPU (Linux
    ``/proc/thread-self/schedstat``; ``time.thread_time`` elsewhere). Open it on the thread to measure
    (the file stays bound to that thread); ``close()`` releases the file.

    CPU time alone under-reads a saturated loop on shared cores: with the load generator, Redis and
    the service on 2 cores, the loop thread got ~80 % of a core and never reached a 0.9 CPU share while
    its backlog grew by ~1,000 requests a second. Time spent waiting for a CPU is demand as well.
    """

    def __init__(self) -> None:
        self._fd: int | None = None
        try:
            self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            self()
        except (OSError, ValueError):
            self.close()

    def __call__(self) -> float:
        if self._fd is None:
            return time.thread_time()
        run_ns, wait_ns = os.pread(self._fd, 128, 0).split()[:2]
        return (int(run_ns) + int(wait_ns)) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EventLoopAdmission:
    """The open share (0..1) of the in-flight cap, steered by how busy the event loop's thread is.

    Under a burst the backlog does not wait where the service can see it: requests queue in the
    clients' connection pools, in socket buffers and in the kernel's accept queue, while the loop runs
    short iterations and an in-flight counter stays low. What does show is the loop's thread never
    idle. Every ``interval_s`` the guard reads the thread's runnable time (on a CPU or waiting for one,
    :class:`RunnableTimeClock`) and its CPU time over the last ``window`` ticks. The loop is overloaded
    when it was runnable for at least ``max_busy`` of the wall time AND on a CPU for at least
    ``min_cpu_share`` of it: CPU time alone under-reads a saturated loop on shared cores (0.7-0.85 seen
    while its backlog grew), runnable time alone also counts a lightly loaded thread that other
    processes kept off the cores (a 100 ms preemption at 200 req/s then refused canary requests).
    Overloaded, the share is cut (x ``decrease`` per interval the tick spanned), otherwise it grows by
    ``increase`` per interval (AIMD, as TCP steers its window).
    Waiting on I/O (a slow store, a stall) is neither and never counts as overload.
    """

    def __init__(
        self,
        max_busy: float,
        *,
        min_cpu_share: float = 0.6,
        interval_s: float = 0.01,
        window: int = 10,
        decrease: float = 0.5,
        increase: float = 0.01,
        floor: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        runnable_clock: Callable[[], float] | None = None,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.max_busy = max_busy
        self.min_cpu_share = min_cpu_share
        self.interval_s = interval_s
        self.decrease = decrease
        self.increase = increase
        self.floor = floor
        self._clock = clock
        self._given_runnable_clock = runnable_clock
        self._cpu_clock = cpu_clock
        self._share = 1.0
        self._marks: deque[tuple[float, float, float]] = deque(maxlen=window + 1)  # (wall, runnable, cpu)
        self._window_s = window * interval_s
        self._handle: asyncio.TimerHandle | None = None
        self._own_clock: RunnableTimeClock | None = None  # opened by start() when none was given

    @property
    def share(self) -> float:
        """The open share of the in-flight cap (1.0 when the loop keeps up or the guard is stopped)."""
        return self._share if self._handle is not None else 1.0

    def start(self) -> None:
        """Start ticking on the running loop (call it on the loop's thread: the clocks measure that thread)."""
        if self._handle is None:
            if self._given_runnable_clock is None:
                self._own_clock = RunnableTimeClock()
            self._marks.clear()
            self._marks.append(self._mark())
            self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._own_clock is not None:
            self._own_clock.close()
            self._own_clock = None
        self._handle, self._share = None, 1.0

    def busy(self) -> float:
        """Runnable time of the loop's thread / wall time over the last ``window`` intervals (a long last
        tick alone when it spanned more); 0 before two measurements."""
        return self._shares()[0]

    def overloaded(self) -> bool:
        runnable, cpu = self._shares()
        return runnable >= self.max_busy and cpu >= self.min_cpu_share

    def _mark(self) -> tuple[float, float, float]:
        runnable_clock = self._given_runnable_clock or self._own_clock or self._cpu_clock
        return self._clock(), runnable_clock(), self._cpu_clock()

    def _shares(self) -> tuple[float, float]:
        """(runnable, cpu) shares of the wall time over the window."""
        if len(self._marks) < 2:
            return 0.0, 0.0
        wall1, runnable1, cpu1 = self._marks[-1]
        wall0, runnable0, cpu0 = self._marks[0]
        for wall, runnable, cpu in reversed(self._marks):
            if wall1 - wall >= self._window_s:
                wall0, runnable0, cpu0 = wall, runnable, cpu
                break
        if wall1 <= wall0:
            return 0.0, 0.0
        return (runnable1 - runnable0) / (wall1 - wall0), (cpu1 - cpu0) / (wall1 - wall0)

    def _schedule(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        mark = self._mark()  # on the loop's thread: its runnable and CPU time
        # A long loop iteration delays the tick: it counts as every interval it spanned. Lateness alone is
        # no signal: a process preempted by others (2 shared cores) runs its timers late without overload.
        steps = max(1, round((mark[0] - self._marks[-1][0]) / self.interval_s))
        self._marks.append(mark)
        if self.overloaded():
            self._share = max(self.floor, self._share * self.decrease**steps)
        else:
            self._share = min(1.0, self._share + self.increase * steps)
        self._schedule()


def _error_body(detail: str) -> bytes:
    return orjson.dumps({"detail": detail, "errors": []})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _expects_continue(scope: Scope) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in scope.get("headers", ()))


async def _settle_body(scope: Scope, receive: Receive, already_read: int = 0) -> bool:
    """Deal with the unread body of a refused request before its answer; True when the connection can
    carry the answer and stay open.

    * ``Expect: 100-continue`` with nothing read: the client waits for our word and never sends the body
      (curl does this for uploads over 1 MB); the answer closes the connection, whose next bytes are unknown.
    * ``Content-Length`` up to ``DRAIN_MAX_BYTES``: answered at once. Once a response is complete the
      server (uvicorn, both parsers) reads the rest of the declared body itself and drops it, in its
      parser, with no ASGI message and no flow-control pause per chunk: a 10 MB refusal went from ~14 ms
      of loop time to ~5 ms on the client's clock. Beyond the cap: not read, the connection is closed.
    * Streamed (chunked) bodies have no declared end: read and dropped here, up to ``DRAIN_MAX_BYTES``
      (counting ``already_read``) within ``DRAIN_MAX_S``; a longer or slower one closes the connection.
    """
    if scope["method"] not in BODY_METHODS:
        return True
    if already_read == 0 and _expects_continue(scope):
        return False
    declared = _declared_length(scope)
    if declared is not None:
        return declared <= DRAIN_MAX_BYTES
    size = already_read
    try:
        async with asyncio.timeout(DRAIN_MAX_S):
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    return False
                size += len(message.get("body", b""))
                if size > DRAIN_MAX_BYTES:
                    return False
                if not message.get("more_body", False):
                    return True
    except TimeoutError:
        return False


async def _send_error(
    send: Send,
    status: int,
    detail: str,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    close: bool = False,
) -> None:
    """A JSON error answer; ``close`` when the request's body was not read to its end: the connection cannot
    be reused (the unread body would come next on it)."""
    body = _error_body(detail)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RequestLimitsMiddleware:
    """See the module docstring; ``metrics`` may be None (nothing recorded)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_in_flight: int,
        metrics: ServiceMetrics | None,
        min_in_flight: int = 8,
        admin_token: str | None = None,
        admission: EventLoopAdmission | None = None,
    ) -> None:
        self.app = app
        self.admin_token = admin_token.encode() if admin_token else None
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.min_in_flight = min(min_in_flight, max_in_flight)
        self.admission = admission
        self.metrics = metrics
        self.in_flight = 0
        self._budget_since = 0.0  # start of the current start-budget interval (monotonic s)
        self._clients_since: set[Any] = set()  # connections that started a request in it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        endpoint = endpoint_of(scope["path"])
        status_holder = [500]

        async def send_tracking(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        async def refuse(status: int, detail: str, header: tuple[bytes, bytes]) -> None:
            keep_open = await _settle_body(scope, receive)
            await _send_error(send_tracking, status, detail, [header], close=not keep_open)
            self._observe(scope, endpoint, status_holder[0], started)

        shed = endpoint in SHED_ENDPOINTS
        if shed and not self._admitted(scope):
            await refuse(503, "server overloaded, retry shortly", (b"retry-after", b"1"))
            return
        if endpoint == "admin" and not admin_authorized(scope, self.admin_token):
            await refuse(401, "missing or invalid admin bearer token", (b"www-authenticate", b"Bearer"))
            return
        if shed:
            self.in_flight += 1
        try:
            if scope["method"] in BODY_METHODS:
                buffered = await self._read_body(scope, receive, send_tracking)
                if buffered is None:  # 413 already sent
                    return
                receive = _replay(buffered, receive)
            await self.app(scope, receive, send_tracking)
        finally:
            if shed:
                self.in_flight -= 1
            self._observe(scope, endpoint, status_holder[0], started)

    def _admitted(self, scope: Scope) -> bool:
        if self.admission is None:
            return self.in_flight < self.max_in_flight
        # The guard shrinks the in-flight cap: requests read in one loop iteration all start before its
        # next tick, and their work comes due together in the next iteration, so the cap bounds that
        # iteration. A few requests in flight are always admitted: a handful of clients keeping one core
        # busy (closed loop, e.g. the A/B simulator) is full use, not overload.
        share = self.admission.share
        cap = max(self.min_in_flight, self.max_in_flight * share)
        if share >= 1.0:
            return self.in_flight < cap
        # While the guard is closing, the cap also bounds how many connections start requests per interval
        # of the guard: answers that need no await (the popularity fallback while the store's breaker is
        # open) leave nothing in flight, and ~800 of them a second from hundreds of connections kept the
        # loop saturated with 0 refused. A connection already seen in the interval is a closed-loop client
        # going on (a test client, the A/B simulator's few sessions): never refused for the rate.
        now = time.monotonic()
        if now - self._budget_since >= self.admission.interval_s:
            self._budget_since = now
            self._clients_since.clear()
        if self.in_flight >= cap:
            return False
        client = scope.get("client")
        if client not in self._clients_since:
            if len(self._clients_since) >= cap:
                return False
            self._clients_since.add(client)
        return True

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> Message | None:
        """The whole body as one ``http.request`` message, or None after answering 413."""
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(scope, receive, send, already_read=0)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see it
                return message
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                if message.get("more_body", False):
                    await self._too_large(scope, receive, send, already_read=size)
                else:
                    await _send_error(send, 413, self._too_large_detail())
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    def _too_large_detail(self) -> str:
        return f"request body larger than {self.max_body_bytes} bytes"

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, *, already_read: int) -> None:
        keep_open = await _settle_body(scope, receive, already_read)
        await _send_error(send, 413, self._too_large_detail(), close=not keep_open)

    def _observe(self, scope: Scope, endpoint: str | None, status: int, started: float) -> None:
        if endpoint is None or self.metrics is None:
            return
        variant = scope.get(VARIANT_SCOPE_KEY) if endpoint == "recommend" else None
        self.metrics.observe_request(endpoint, variant, status, time.perf_counter() - started)


def admin_authorized(scope: Scope, token: bytes | None) -> bool:
    """True when the request carries ``Authorization: Bearer <token>``; always False without a token."""
    if token is None:
        return False
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, given = value.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)
    return False


def _replay(first: Message, receive: Receive) -> Receive:
    """A receive() that returns the buffered body once, then defers to the server (disconnects)."""
    pending: list[Message] = [first]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay
