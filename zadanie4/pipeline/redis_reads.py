"""Online-store reads of ``/recommend`` done on the event loop itself: no thread hand-off per request.

Handing a blocking read to a thread costs more than the read: on one core the event loop and the
reading thread pass the GIL back and forth (~0.2-0.5 ms of CPU per request measured, and under load
the thread waits for the GIL behind other requests, which pushed reads past their budget). Redis on
loopback answers in ~50 µs, so the service writes the commands itself and awaits the replies:

* one TCP connection, requests pipelined on it (Redis answers in order; a FIFO of waiters matches
  replies to requests, parsed by hiredis, the C parser redis-py uses too);
* the bytes sent and the decoding are the feature reader's own (``user_command`` / ``decode_user``,
  ``user_products_command`` / ``decode_user_products`` of zadanie2's ``RedisFeatureReader``), so both
  paths read exactly the same values;
* every request has a deadline (the request's feature budget): past it the caller gets
  ``TimeoutError`` at once; its replies are still consumed when they come, so the connection stays
  usable. A connection whose oldest reply is overdue by more than the store's read timeout is
  dropped and a new one is opened (a hung Redis must not keep a dead connection forever).

The circuit breaker, the budget and the fallback stay in :class:`zadanie4.pipeline.feature_reads.GuardedFeatureReader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import hiredis

CONNECT_TIMEOUT_S = 1.0


@runtime_checkable
class RedisRowCodec(Protocol):
    """What the event-loop path needs from the feature reader (zadanie2's ``RedisFeatureReader``)."""

    timeout_s: float

    @property
    def connection_parts(self) -> dict[str, object]: ...

    def user_command(self, user_id: int) -> bytes: ...

    def decode_user(self, raws: Sequence[bytes | None]) -> dict[str, Any] | None: ...

    def user_products_command(self, user_id: int, product_ids: Sequence[int]) -> bytes: ...

    def decode_user_products(
        self, product_ids: Sequence[int], replies: Sequence[Sequence[bytes | None]]
    ) -> dict[int, dict[str, Any]]: ...


class RedisReplyError(Exception):
    """Redis answered a command with an error (e.g. NOAUTH, LOADING)."""


class _Waiter:
    __slots__ = ("expected", "future", "replies", "sent_at")

    def __init__(self, future: asyncio.Future[list[Any]], expected: int, sent_at: float) -> None:
        self.future = future
        self.expected = expected
        self.replies: list[Any] = []
        self.sent_at = sent_at


class _RespConnection(asyncio.Protocol):
    """One Redis connection; replies are matched to waiters in the order the requests were written."""

    def __init__(self) -> None:
        self._parser = hiredis.Reader()
        self._waiters: deque[_Waiter] = deque()
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser, waiters = self._parser, self._waiters
        parser.feed(data)
        while True:
            try:
                reply = parser.gets()
            except hiredis.ProtocolError as exc:
                self.abort(exc)
                return
            if reply is False:
                return
            if not waiters:  # a reply nobody asked for: the stream is out of step
                self.abort(RuntimeError("unexpected reply from Redis"))
                return
            head = waiters[0]
            head.replies.append(reply)
            if len(head.replies) == head.expected:
                waiters.popleft()
                if not head.future.done():  # done = its caller gave up (deadline): the replies are dropped
                    head.future.set_result(head.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"Redis connection lost ({exc or 'closed by the server'})")
        while self._waiters:
            future = self._waiters.popleft().future
            if not future.done():
                future.set_exception(error)

    def send(self, packet: bytes, expected: int, now: float) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            future.set_exception(ConnectionError("Redis connection is closed"))
            return future
        self._waiters.append(_Waiter(future, expected, now))
        self._transport.write(packet)
        return future

    def overdue(self, now: float, limit_s: float) -> bool:
        """True when the oldest request has waited more than ``limit_s`` for its replies."""
        return bool(self._waiters) and now - self._waiters[0].sent_at > limit_s

    def abort(self, exc: BaseException | None = None) -> None:
        if self._transport is not None:
            self._transport.abort()  # connection_lost fails the waiters
        self.closed = True


def _expire(future: asyncio.Future[Any], budget_ms: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"no reply from Redis within {budget_ms:.0f} ms"))


class EventLoopRedisReads:
    """``read_user_and_pairs`` over one pipelined connection of the running event loop (see module doc).

    ``clock`` is the monotonic clock of the caller's deadlines (seconds). Raises ``TimeoutError`` when
    the deadline passes, ``ConnectionError``/``OSError`` when Redis is unreachable, ``RedisReplyError``
    when it answers with an error.
    """

    def __init__(self, codec: RedisRowCodec, clock: Callable[[], float] = time.monotonic) -> None:
        self.codec = codec
        parts = codec.connection_parts
        self._host = str(parts["host"])
        self._port = int(parts["port"])  # type: ignore[call-overload]
        self._db = int(parts["db"])  # type: ignore[call-overload]
        self._username = parts.get("username")
        self._password = parts.get("password")
        self._ssl = bool(parts.get("ssl"))
        self._stale_after_s = max(float(codec.timeout_s), 0.001)
        self._clock = clock
        self._connection: _RespConnection | None = None
        self._connecting: asyncio.Task[_RespConnection] | None = None

    async def read_user_and_pairs(
        self, user_id: int, deadline: float, pair_products: Callable[[dict[str, Any]], Sequence[int]]
    ) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
        """The user row, then the pair rows of ``pair_products(row)``: two round trips, one deadline."""
        codec = self.codec
        (raws,) = await self._request(codec.user_command(user_id), 1, deadline)
        row = codec.decode_user(raws)
        if row is None:
            return None, {}
        products = list(pair_products(row))
        if not products:
            return row, {}
        if self._clock() >= deadline:
            raise TimeoutError("no time left for the pair rows")
        replies = await self._request(codec.user_products_command(user_id, products), len(products), deadline)
        return row, codec.decode_user_products(products, replies)

    async def _request(self, packet: bytes, expected: int, deadline: float) -> list[Any]:
        loop = asyncio.get_running_loop()
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise TimeoutError("no time left for the online store")
        connection = await self._ready_connection(remaining)
        future = connection.send(packet, expected, loop.time())
        timer = loop.call_later(max(deadline - self._clock(), 0.0), _expire, future, remaining * 1000)
        try:
            replies = await future
        finally:
            timer.cancel()
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise RedisReplyError(str(reply))
        return replies

    async def _ready_connection(self, remaining: float) -> _RespConnection:
        connection = self._connection
        if connection is not None and not connection.closed:
            if not connection.overdue(asyncio.get_running_loop().time(), self._stale_after_s):
                return connection
            connection.abort()  # Redis stopped answering on it: start over on a fresh connection
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
            self._connecting.add_done_callback(_retrieve)  # every waiter may have given up already
        # shield: a caller running out of budget must not cancel the connect other callers wait for
        return await asyncio.wait_for(asyncio.shield(self._connecting), remaining)

    async def _connect(self) -> _RespConnection:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self._ssl else None
        _, connection = await asyncio.wait_for(
            loop.create_connection(_RespConnection, self._host, self._port, ssl=context), CONNECT_TIMEOUT_S
        )
        handshake = []
        if self._password is not None:
            auth = [b"AUTH", *([str(self._username).encode()] if self._username else []), str(self._password).encode()]
            handshake.append(_command(auth))
        if self._db:
            handshake.append(_command([b"SELECT", str(self._db).encode()]))
        if handshake:
            try:
                replies = await asyncio.wait_for(
                    connection.send(b"".join(handshake), len(handshake), loop.time()), CONNECT_TIMEOUT_S
                )
            except BaseException:
                connection.abort()
                raise
            errors = [str(r) for r in replies if isinstance(r, hiredis.ReplyError)]
            if errors:
                connection.abort()
                raise RedisReplyError("; ".join(errors))
        self._connection = connection
        return connection

    def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.abort()
            self._connection = None


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _command(parts: Sequence[bytes]) -> bytes:
    """One RESP command."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def event_loop_reads_for(reader: object, clock: Callable[[], float] = time.monotonic) -> EventLoopRedisReads | None:
    """The event-loop path for a reader that can provide it (direct Redis), else None (thread path)."""
    try:
        return EventLoopRedisReads(reader, clock) if isinstance(reader, RedisRowCodec) else None
    except Exception:  # e.g. a URL the event-loop path cannot parse: keep the thread path
        return None
