"""A lean HTTP/1.1 client for the load generators: keep-alive connections, one request at a time each.

aiohttp costs ~0.3-0.5 ms of Python per request; at the ~2,000 requests/s of the overload burst the
generator's own event loop fell behind by hundreds of ms, and that wait was counted as the service's
latency. Here a request is a pre-built byte string written to an idle connection and the answer is
parsed by httptools (the C parser uvicorn uses), so a request costs a few tens of µs of Python.

What it does not do (nor need to, against our own service on loopback): TLS, redirects, chunked
request bodies, proxies. A connection whose answer is late past the timeout, malformed or cut is
closed and never reused.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from urllib.parse import urlsplit

import httptools


class NoAnswer(Exception):
    """The request got no complete HTTP answer (refused, reset, cut, malformed)."""


def encode_request(
    url: str, method: str = "GET", body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[tuple[str, int], bytes]:
    """((host, port), the request's bytes) for an ``http://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// URLs with a host are supported: {url!r}")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.hostname}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return (parts.hostname, port), head + (body or b"")


class _Connection(asyncio.Protocol):
    """One TCP connection; :meth:`exchange` sends a request and waits for its whole answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reusable = True
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(NoAnswer(f"malformed answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(NoAnswer("connection closed before the answer"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self.parser.get_status_code(), b"".join(self._body)))

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self._body = []
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)


class _Pool:
    """The connections to one (host, port): idle ones are reused, at most ``limit`` open; a request
    beyond that waits for a connection (that wait counts in its time, as a real client's would)."""

    def __init__(self, address: tuple[str, int], limit: int) -> None:
        self.address = address
        self.limit = limit
        self.open = 0
        self.idle: deque[_Connection] = deque()
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()

    async def acquire(self) -> _Connection:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection
            self.open -= 1
        if self.open >= self.limit:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                handed = await waiter  # a connection, or None: a slot to open one in
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed over just as the request timed out
                    given = waiter.result()
                    if given is None:
                        self._free_slot()
                    else:
                        self.release(given)
                raise
            if handed is not None:
                return handed
        else:
            self.open += 1
        try:
            _, connection = await asyncio.get_running_loop().create_connection(_Connection, *self.address)
        except BaseException:
            self._free_slot()
            raise
        return connection

    async def prewarm(self, n: int, raw: bytes, timeout_s: float) -> None:
        """Open up to ``n`` connections and make one request (``raw``) on each, so the server has
        accepted and served them all (a connection only queued in the kernel's accept backlog is not
        warm); they stay idle for reuse."""
        loop = asyncio.get_running_loop()

        async def one() -> _Connection:
            _, connection = await loop.create_connection(_Connection, *self.address)
            await connection.exchange(raw)
            return connection

        wanted = max(0, min(n, self.limit) - self.open)
        self.open += wanted
        results = await asyncio.gather(
            *(asyncio.wait_for(one(), timeout_s) for _ in range(wanted)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, _Connection) and result.reusable and not result.closed:
                self.idle.append(result)
            else:
                if isinstance(result, _Connection):
                    result.close()
                self.open -= 1

    def release(self, connection: _Connection) -> None:
        if connection.reusable and not connection.closed:
            while self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(connection)
                    return
            self.idle.append(connection)
            return
        connection.close()
        self._free_slot()

    def _free_slot(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter
                return
        self.open -= 1

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class RawHttpClient:
    """Keep-alive connection pools per (host, port), at most ``max_connections`` open to each."""

    def __init__(self, max_connections: int = 64) -> None:
        self.max_connections = max_connections
        self._pools: dict[tuple[str, int], _Pool] = {}

    async def prewarm(self, url: str, n: int, timeout_s: float = 10.0) -> None:
        """Open ``n`` connections to ``url``'s server, each served one GET ``url`` (see :meth:`_Pool.prewarm`)."""
        address, raw = encode_request(url)
        await self._pool(address).prewarm(n, raw, timeout_s)

    async def request(self, address: tuple[str, int], raw: bytes, timeout_s: float) -> tuple[int, bytes]:
        """(status, body) of one request; :class:`NoAnswer` or ``TimeoutError`` when there is none."""
        pool = self._pool(address)
        async with asyncio.timeout(timeout_s):
            connection = await pool.acquire()
            try:
                return await connection.exchange(raw)
            except BaseException:
                connection.reusable = False
                raise
            finally:
                pool.release(connection)

    def _pool(self, address: tuple[str, int]) -> _Pool:
        pool = self._pools.get(address)
        if pool is None:
            pool = self._pools[address] = _Pool(address, self.max_connections)
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
