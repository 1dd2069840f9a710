"""The upstream parser's end of a response, fed any way the bytes may arrive: the response is
exactly the declared one, and a connection that received a byte past its end never goes back to
the pool (hypothesis: random bodies, framings, trailing bytes and read boundaries)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.errors import BadGateway, UnusableResponse
from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.http.upstream_connection import UpstreamConnection
from api_gateway.types import Response

ADDRESS = ("127.0.0.1", 1)
SMUGGLED = b"HTTP/1.1 200 OK\r\nX-Smuggled: yes\r\nContent-Length: 3\r\n\r\nbad"


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


def exchange(
    loop: asyncio.AbstractEventLoop, pieces: list[bytes], settings: PoolSettings | None = None
) -> tuple[asyncio.Future[Response], Transport, UpstreamPool]:
    pool = UpstreamPool(loop, settings or PoolSettings())
    pool.close()  # no sweeps: the test drives the connection by hand
    connection = UpstreamConnection(pool, ADDRESS)
    transport = Transport()
    connection.connection_made(transport)
    future = connection.send(b"GET / HTTP/1.1\r\n\r\n", b"", False, 5.0, "GET")
    for piece in pieces:
        if transport.closed:
            break
        connection.data_received(piece)
    if transport.closed:
        connection.connection_lost(None)  # as the loop reports a closed transport, later
    return future, transport, pool


def content(loop: asyncio.AbstractEventLoop, response: Response) -> bytes:
    """The body, read to its end (a chunked one streams once it spans reads)."""
    body = response.body
    if isinstance(body, bytes):
        return body

    async def read() -> bytes:
        return b"".join([chunk async for chunk in body])

    return loop.run_until_complete(asyncio.wait_for(read(), 5))


def framed(body: bytes, chunked: bool) -> bytes:
    if chunked:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:7], body[7:]) if c)
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if a < b]


@given(
    body=st.binary(max_size=40),
    chunked=st.booleans(),
    extra=st.one_of(st.just(SMUGGLED), st.binary(min_size=1, max_size=30)),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_a_response_ends_where_its_framing_says_and_what_follows_ends_the_connection(
    loop: asyncio.AbstractEventLoop, body: bytes, chunked: bool, extra: bytes, cuts: list[int]
) -> None:
    future, transport, pool = exchange(loop, split(framed(body, chunked) + extra, cuts))

    response = future.result()
    assert (response.status, content(loop, response)) == (200, body)
    assert (b"x-smuggled", b"yes") not in response.headers
    if extra.strip(b"\r\n"):  # CR and LF alone are skipped by llhttp, as RFC 9112 §2.2 allows
        assert transport.closed
        assert not any(pool.idle.values())


def test_a_clean_response_keeps_the_connection(loop: asyncio.AbstractEventLoop) -> None:
    future, transport, pool = exchange(loop, [framed(b"ok", False)])

    assert future.result().body == b"ok"
    assert not transport.closed
    assert len(pool.idle[ADDRESS]) == 1


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nxx",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
def test_an_unsolicited_101_is_an_unusable_response(
    loop: asyncio.AbstractEventLoop, head: bytes
) -> None:
    future, transport, _ = exchange(loop, [head])

    with pytest.raises(UnusableResponse):
        future.result()
    assert transport.closed


def test_fields_over_either_cap_are_refused(loop: asyncio.AbstractEventLoop) -> None:
    settings = PoolSettings(max_head_bytes=2048, max_head_fields=3)
    lines = b"".join(b"X-%d: v\r\n" % n for n in range(4))
    many, _, _ = exchange(loop, [b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n"], settings)
    big, _, _ = exchange(loop, [b"HTTP/1.1 200 OK\r\nX: " + b"a" * 3000 + b"\r\n\r\n"], settings)
    endless, _, _ = exchange(loop, [b"HTTP/1.1 200 OK\r\nX: "] + [b"a" * 1000] * 3, settings)

    for future in (many, big, endless):
        with pytest.raises(UnusableResponse):
            future.result()


def test_garbage_instead_of_a_response_is_still_a_bad_gateway(
    loop: asyncio.AbstractEventLoop,
) -> None:
    future, transport, _ = exchange(loop, [b"\x00garbage\r\n\r\n"])

    with pytest.raises(BadGateway) as caught:
        future.result()
    assert not isinstance(caught.value, UnusableResponse)  # that one may be retried
    assert transport.closed
