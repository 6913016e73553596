"""Outermost ASGI middleware: body size limit (413), load shedding (503) and per-request metrics.

Written as a plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which costs ~0.1 ms and a
task per request). For requests that carry a body it checks ``Content-Length`` first and then counts
the streamed bytes (a client may lie or use chunked encoding), buffering at most ``max_body_bytes``
before the app sees the body. Requests to the working endpoints (/recommend, /feedback) above
``max_in_flight`` concurrent ones are answered 503 at once with ``Retry-After``. Under a burst that cap
alone does not bite (the backlog waits outside the process, see :mod:`zadanie4.api.overload_guard`), so the
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
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import orjson

from zadanie4.api.overload_guard import EventLoopAdmission
from zadanie4.observability.prometheus_metrics import ServiceMetrics

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
