"""The upstream connection's phases: the table allows exactly the moves it lists, an exchange
walks them in order, and a move the table does not allow raises instead of being taken for the
peer's fault."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from api_gateway.errors import UpstreamTimeout
from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.http.upstream_connection import ConnectionGone, UpstreamConnection
from api_gateway.http.upstream_phases import (
    ALLOWED,
    AWAITING_HEAD,
    CLOSED,
    CONNECTING,
    DONE,
    IDLE,
    NAMES,
    READING_BODY,
    SWITCHED,
    TRANSITIONS,
    ImpossibleTransition,
    moved,
)

ADDRESS = ("127.0.0.1", 1)
GET = b"GET / HTTP/1.1\r\nhost: upstream\r\n\r\n"
PHASES = range(len(NAMES))


class Socket(asyncio.Transport):
    """A transport that keeps what is written and only says it closes."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Endless:
    """A request body that never ends."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield b"x"
            await asyncio.sleep(0.01)

    def abort(self) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture
def pool(loop: asyncio.AbstractEventLoop) -> UpstreamPool:
    upstream_pool = UpstreamPool(loop, PoolSettings())
    upstream_pool.close()  # no sweeps: each test drives its connection by hand
    return upstream_pool


def connected(pool: UpstreamPool) -> tuple[UpstreamConnection, Socket]:
    connection = UpstreamConnection(pool, ADDRESS)
    assert connection.phase == CONNECTING
    socket = Socket()
    connection.connection_made(socket)
    return connection, socket


@pytest.mark.parametrize("current", PHASES, ids=NAMES)
def test_the_table_allows_exactly_the_moves_it_lists(current: int) -> None:
    for new in PHASES:
        if new in TRANSITIONS[current]:
            assert moved(current, new) == new
        else:
            with pytest.raises(ImpossibleTransition, match=f"from {NAMES[current]} to"):
                moved(current, new)


def test_every_phase_can_close_and_a_closed_connection_stays_closed() -> None:
    assert set(TRANSITIONS) == set(PHASES) and ALLOWED < 1 << 63  # an i64 when compiled
    assert all(CLOSED in TRANSITIONS[phase] for phase in PHASES if phase != CLOSED)
    assert TRANSITIONS[CLOSED] == ()


def test_an_exchange_walks_the_phases_and_ends_back_in_the_pool(pool: UpstreamPool) -> None:
    connection, socket = connected(pool)
    assert connection.phase == IDLE
    future = connection.send(GET, b"", False, 5.0, "GET")
    assert (connection.phase, socket.written) == (AWAITING_HEAD, [GET])

    connection.data_received(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert connection.phase == AWAITING_HEAD  # an interim head: the final one is awaited
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nab")
    assert connection.phase == READING_BODY and future.done()  # a large body streams
    connection.data_received(b"c" * 99998)

    assert connection.phase == IDLE and pool.idle[ADDRESS] == [connection]
    assert not socket.closing


def test_a_response_not_to_be_reused_ends_done_and_closes(pool: UpstreamPool) -> None:
    connection, socket = connected(pool)
    future = connection.send(GET, b"", False, 5.0, "GET")
    connection.data_received(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")

    assert future.result().body == b"ok"
    assert (connection.phase, socket.closing) == (DONE, True)
    connection.connection_lost(None)
    assert connection.phase == CLOSED and not any(pool.idle.values())


def test_an_answer_before_the_streamed_body_is_out_ends_the_connection(
    loop: asyncio.AbstractEventLoop, pool: UpstreamPool
) -> None:
    async def scenario() -> tuple[int, bool]:
        connection, socket = connected(pool)
        future = connection.send(GET, Endless(), True, 5.0, "POST")
        await asyncio.sleep(0.03)
        assert connection.sending and connection.phase == AWAITING_HEAD
        connection.data_received(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        assert connection.sender is not None
        await asyncio.gather(connection.sender, return_exceptions=True)
        return (await future).status, socket.closing

    assert loop.run_until_complete(scenario()) == (413, True)
    assert not any(pool.idle.values())  # the request was cut short: the upstream is out of step


def test_an_aborted_exchange_fails_and_closes(pool: UpstreamPool) -> None:
    connection, socket = connected(pool)
    future = connection.send(GET, b"", False, 5.0, "GET")

    connection.abort(UpstreamTimeout("the upstream did not answer in time"))

    with pytest.raises(UpstreamTimeout):
        future.result()
    assert socket.closing and connection not in pool.busy
    connection.connection_lost(None)
    assert connection.phase == CLOSED


def test_a_connection_lost_before_the_request_went_out_is_gone_not_out_of_step(
    pool: UpstreamPool,
) -> None:
    connection, socket = connected(pool)
    connection.connection_lost(None)

    with pytest.raises(ConnectionGone):
        connection.send(GET, b"", False, 5.0, "GET")
    assert connection.phase == CLOSED and socket.written == []


def test_an_impossible_move_in_a_parser_callback_raises_and_is_not_a_bad_gateway(
    pool: UpstreamPool,
) -> None:
    connection, _ = connected(pool)
    connection.send(GET, b"", False, 5.0, "GET")
    connection.phase = SWITCHED  # out of step on purpose: a final head cannot follow a 101

    with pytest.raises(ImpossibleTransition, match="from SWITCHED to READING_BODY"):
        connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
