"""The load generators' lean HTTP client: keep-alive reuse, closed and broken connections, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from zadanie4.evaluation.reliability.raw_http import NoAnswer, RawHttpClient, encode_request

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server running ``handler`` per connection; yields (base URL, peer ports seen)."""
    peers: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[1])
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", peers
    finally:
        server.close()


async def _keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        body = head.split(b" ", 2)[1]  # echo the request target
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()


async def test_requests_reuse_one_keep_alive_connection_and_get_their_own_answers() -> None:
    async with _server(_keep_alive) as (url, peers):
        client = RawHttpClient(max_connections=4)
        answers = []
        for i in range(5):
            address, raw = encode_request(f"{url}/r?i={i}")
            answers.append(await client.request(address, raw, timeout_s=2))
        client.close()
    assert answers == [(200, f"/r?i={i}".encode()) for i in range(5)]
    assert len(peers) == 1


async def test_concurrent_requests_never_exceed_the_connection_limit() -> None:
    async with _server(_keep_alive) as (url, peers):
        client = RawHttpClient(max_connections=3)
        address, raw = encode_request(f"{url}/x")
        answers = await asyncio.gather(*(client.request(address, raw, timeout_s=2) for _ in range(20)))
        client.close()
    assert answers == [(200, b"/x")] * 20
    assert len(peers) <= 3


async def test_a_connection_close_answer_is_not_reused() -> None:
    async def close_after_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async with _server(close_after_one) as (url, peers):
        client = RawHttpClient(max_connections=2)
        address, raw = encode_request(f"{url}/x")
        statuses = [(await client.request(address, raw, timeout_s=2))[0] for _ in range(3)]
        client.close()
    assert statuses == [503, 503, 503]
    assert len(peers) == 3


async def test_no_answer_and_a_late_answer_are_errors_and_free_their_connection() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # then close without answering

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)

    async with _server(hang_up) as (url, _):
        client = RawHttpClient(max_connections=1)
        address, raw = encode_request(f"{url}/x")
        with pytest.raises(NoAnswer):
            await client.request(address, raw, timeout_s=2)
        with pytest.raises(NoAnswer):  # the slot was freed: a second request gets its own try
            await client.request(address, raw, timeout_s=2)
        client.close()
    async with _server(never_answer) as (url, _):
        client = RawHttpClient(max_connections=1)
        address, raw = encode_request(f"{url}/x")
        with pytest.raises(TimeoutError):
            await client.request(address, raw, timeout_s=0.2)
        with pytest.raises(TimeoutError):
            await client.request(address, raw, timeout_s=0.2)
        client.close()


async def test_prewarm_opens_served_idle_connections() -> None:
    async with _server(_keep_alive) as (url, peers):
        client = RawHttpClient(max_connections=4)
        await client.prewarm(f"{url}/warm", 4)
        address, raw = encode_request(f"{url}/x")
        answers = await asyncio.gather(*(client.request(address, raw, timeout_s=2) for _ in range(4)))
        client.close()
    assert answers == [(200, b"/x")] * 4
    assert len(peers) == 4  # no connection opened beyond the warm ones


def test_encode_request_builds_http_1_1_bytes() -> None:
    address, raw = encode_request(
        "http://127.0.0.1:8000/feedback?x=1", "POST", b'{"a":1}', {"content-type": "application/json"}
    )
    assert address == ("127.0.0.1", 8000)
    assert raw == (
        b"POST /feedback?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\ncontent-type: application/json\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}'
    )
    with pytest.raises(ValueError, match="only http://"):
        encode_request("https://example.org/")
