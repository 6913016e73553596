"""Refused requests never close the connection under a client still sending: a declared body is left to
the server, which drops it after the answer; a streamed body is read to its end before the answer; bodies
too large or too slow to drain, and bodies the client holds back for ``100-continue``, close it instead."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from zadanie4.api import request_limits
from zadanie4.api.request_limits import RequestLimitsMiddleware
from zadanie4.evaluation.reliability.harness import InProcessService

pytestmark = pytest.mark.anyio
LIMIT = 4096
TOKEN = "s3cret"


class Client:
    """An ASGI peer that streams ``chunks`` as the body and records what the middleware answers."""

    def __init__(self, chunks: list[bytes], *, delay_s: float = 0.0) -> None:
        self.chunks = chunks
        self.delay_s = delay_s
        self.read = 0  # chunks the server has taken
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.read += 1
        body = self.chunks[self.read - 1]
        return {"type": "http.request", "body": body, "more_body": self.read < len(self.chunks)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def closes(self) -> bool:
        return (b"connection", b"close") in self.sent[0]["headers"]


async def _never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app must not see a refused request")


def _scope(
    path: str, *, content_length: int | None = None, token: str | None = None, expect_continue: bool = False
) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if expect_continue:
        headers.append((b"expect", b"100-continue"))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


async def _call(scope: dict[str, Any], client: Client) -> None:
    app = RequestLimitsMiddleware(
        _never_called, max_body_bytes=LIMIT, max_in_flight=64, metrics=None, admin_token=TOKEN
    )
    await app(scope, client.receive, client.send)


async def test_declared_oversized_body_is_answered_413_at_once_on_an_open_connection() -> None:
    # given a 10 x 64 KiB body declared by Content-Length
    chunks = [b"x" * 65536] * 10
    client = Client(chunks)
    # when it is posted to /recommend
    await _call(_scope("/recommend", content_length=len(chunks) * 65536), client)
    # then 413 before any chunk is read, on a connection kept open (the server drops the declared rest)
    assert client.status == 413
    assert client.read == 0
    assert not client.closes


async def test_a_client_waiting_for_100_continue_gets_413_and_a_closed_connection() -> None:
    client = Client([b"x" * 65536] * 10)
    await _call(_scope("/recommend", content_length=10 * 65536, expect_continue=True), client)
    assert client.status == 413
    assert client.read == 0  # asking for the body would send "100 Continue"
    assert client.closes  # the body was never sent: the connection's next bytes are unknown


async def test_streamed_oversized_body_is_drained_then_413() -> None:
    client = Client([b"x" * 3000] * 8)  # no Content-Length: the limit trips on the second chunk
    await _call(_scope("/feedback"), client)
    assert client.status == 413
    assert client.read == 8
    assert not client.closes


async def test_admin_without_token_drains_a_streamed_body_before_401() -> None:
    client = Client([b"x" * 1000] * 5)
    await _call(_scope("/admin/products", token="wrong"), client)
    assert client.status == 401
    assert client.read == 5
    assert not client.closes


async def test_body_declared_larger_than_the_drain_cap_is_not_read_and_closes(monkeypatch) -> None:
    monkeypatch.setattr(request_limits, "DRAIN_MAX_BYTES", 100_000)
    client = Client([b"x" * 65536] * 4)
    await _call(_scope("/recommend", content_length=4 * 65536), client)
    assert client.status == 413
    assert client.read == 0
    assert client.closes


async def test_streamed_body_beyond_the_drain_cap_stops_reading_and_closes(monkeypatch) -> None:
    monkeypatch.setattr(request_limits, "DRAIN_MAX_BYTES", 100_000)
    client = Client([b"x" * 30_000] * 10)
    await _call(_scope("/feedback"), client)
    assert client.status == 413
    assert client.read == 4  # 120,000 bytes > the cap: no more reads
    assert client.closes


async def test_slow_sender_is_not_waited_for_past_the_drain_deadline(monkeypatch) -> None:
    monkeypatch.setattr(request_limits, "DRAIN_MAX_S", 0.05)
    client = Client([b"x" * 3000] * 100, delay_s=0.01)
    await _call(_scope("/feedback"), client)
    assert client.status == 413
    assert client.read < 100
    assert client.closes


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _read_response(sock: socket.socket) -> bytes:
    """One response's head and JSON/`ok` body (both carry Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(v for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n")) if k.lower() == b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_a_real_server_drops_the_refused_declared_body_and_serves_the_next_request(parser: str) -> None:
    # given uvicorn serving the middleware (limit 4 KiB) on a loopback port
    app = RequestLimitsMiddleware(_ok, max_body_bytes=LIMIT, max_in_flight=64, metrics=None)
    with InProcessService(app, http=parser) as service:
        with socket.create_connection(("127.0.0.1", service.port), timeout=5) as sock:
            # when a 2 MB declared body is posted, then a second request follows on the same connection
            body = b"x" * 2_000_000
            sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            first = _read_response(sock)
            sock.sendall(b"GET /recommend?user_id=1 HTTP/1.1\r\nHost: t\r\n\r\n")
            second = _read_response(sock)
        # then the first is 413 without closing, and the connection carries the next answer
        assert first.startswith(b"HTTP/1.1 413")
        assert b"connection: close" not in first.lower()
        assert second.startswith(b"HTTP/1.1 200")
