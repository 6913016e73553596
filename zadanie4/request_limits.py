"""Outermost ASGI middleware: body size limit (413), load shedding (503) and per-request metrics.

Written as a plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which costs ~0.1 ms and a
task per request). For requests that carry a body it checks ``Content-Length`` first and then counts
the streamed bytes (a client may lie or use chunked encoding), buffering at most ``max_body_bytes``
before the app sees the body. Requests to the working endpoints (/recommend, /feedback) above
``max_in_flight`` concurrent ones are answered 503 at once with ``Retry-After`` so an overload burst
is shed quickly instead of queueing. In-flight requests only count what the app has accepted: under a
burst the backlog waits in the event loop itself, before any middleware runs. So, when a
:class:`EventLoopLag` is given (opt-in, ``max_event_loop_lag_ms``), the working endpoints are also shed
while it says the loop runs its timers late (a saturated loop): a shed answer costs microseconds, the
loop drains its backlog and the refusals stay fast instead of every request waiting its turn.
``/admin/*`` requests without the right bearer token get 401 before their body is even read (so a bad
body can never turn an auth failure into a 422). Latency and status are recorded per endpoint; the
handler puts the serving variant into ``scope["recsys.variant"]``.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
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


class EventLoopLag:
    """Whether the event loop is saturated: its last ``streak`` ticks of an ``interval_s`` timer all ran
    later than ``max_lag_s``.

    One slow request or a pause (a garbage collection, a background refresh) makes a single late
    tick and does not count: the loop is free again the moment it ends. A backlog makes every tick late.
    """

    def __init__(
        self,
        max_lag_s: float,
        *,
        interval_s: float = 0.005,
        streak: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_lag_s = max_lag_s
        self.interval_s = interval_s
        self.streak = streak
        self._clock = clock
        self._late_ticks = 0
        self._due: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    @property
    def saturated(self) -> bool:
        return self._due is not None and self._late_ticks >= self.streak

    def start(self) -> None:
        if self._handle is None:
            self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._due = None, None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = self._clock() + self.interval_s
        self._handle = loop.call_later(self.interval_s, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        late = self._due is not None and self._clock() - self._due > self.max_lag_s
        self._late_ticks = self._late_ticks + 1 if late else 0
        self._schedule(loop)


def _error_body(detail: str) -> bytes:
    return orjson.dumps({"detail": detail, "errors": []})


async def _send_error(send: Send, status: int, detail: str, extra_headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = _error_body(detail)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra_headers,
    ]
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
        admin_token: str | None = None,
        loop_lag: EventLoopLag | None = None,
    ) -> None:
        self.app = app
        self.admin_token = admin_token.encode() if admin_token else None
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.loop_lag = loop_lag
        self.metrics = metrics
        self.in_flight = 0

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

        shed = endpoint in SHED_ENDPOINTS
        if shed and (self.in_flight >= self.max_in_flight or self._loop_saturated()):
            await _send_error(send_tracking, 503, "server overloaded, retry shortly", [(b"retry-after", b"1")])
            self._observe(scope, endpoint, status_holder[0], started)
            return
        if endpoint == "admin" and not admin_authorized(scope, self.admin_token):
            await _send_error(
                send_tracking, 401, "missing or invalid admin bearer token", [(b"www-authenticate", b"Bearer")]
            )
            self._observe(scope, endpoint, status_holder[0], started)
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

    def _loop_saturated(self) -> bool:
        # With nothing else in flight a late loop is one slow request that just ended, not a backlog.
        return self.in_flight > 0 and self.loop_lag is not None and self.loop_lag.saturated

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> Message | None:
        """The whole body as one ``http.request`` message, or None after answering 413."""
        too_large = f"request body larger than {self.max_body_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    await _send_error(send, 413, too_large)
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
                await _send_error(send, 413, too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

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
