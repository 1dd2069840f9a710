"""The server connection's phases: the table, and a connection walked through it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api_gateway.errors import GatewayError
from api_gateway.http.connections import Connections
from api_gateway.http.server import HttpConnection, ServerBounds
from api_gateway.http.server_phases import (
    BUSY,
    CLOSED,
    ENDING,
    IDLE,
    NAMES,
    NEW,
    READING,
    TRANSITIONS,
    TUNNEL,
    ImpossibleTransition,
    allowed,
)
from api_gateway.types import Request, Response


class Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else None


class App:
    async def handle(self, request: Request) -> Response:
        return Response(200, [], b"ok")

    def reject(self, error: GatewayError, peer_ip: str) -> Response:
        return Response(error.status, [], b"")


def test_the_packed_table_is_the_readable_one() -> None:
    for old in range(len(NAMES)):
        for new in range(len(NAMES)):
            assert allowed(old, new) == (new in TRANSITIONS[old]), (NAMES[old], NAMES[new])


def test_nothing_leaves_closed_and_ending_leads_only_there_or_to_a_tunnel() -> None:
    assert TRANSITIONS[CLOSED] == (CLOSED,)
    assert TRANSITIONS[ENDING] == (CLOSED, TUNNEL)
    assert TRANSITIONS[TUNNEL] == ()  # the transport is the tunnel's
    assert all(CLOSED in TRANSITIONS[phase] for phase in (NEW, IDLE, READING, BUSY, ENDING))


def test_an_impossible_transition_raises() -> None:
    loop = asyncio.new_event_loop()
    try:
        connection = HttpConnection(App(), ServerBounds(), Connections(loop), 0)
        with pytest.raises(ImpossibleTransition, match="from NEW to BUSY"):
            connection.to(BUSY)
        connection.to(CLOSED)
        with pytest.raises(ImpossibleTransition):
            connection.to(READING)
    finally:
        loop.close()


def walk(*reads: bytes) -> tuple[list[int], Transport]:
    """The phases a connection goes through: after connection_made, and after each read and
    the loop turns that answer it."""
    loop = asyncio.new_event_loop()
    try:
        connections = Connections(loop)
        connection = HttpConnection(App(), ServerBounds(), connections, 0)
        transport = Transport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        seen = [connection.phase]
        for data in reads:
            connection.data_received(data)
            seen.append(connection.phase)
            for _ in range(3):
                loop.run_until_complete(asyncio.sleep(0))
            seen.append(connection.phase)
        connection.connection_lost(None)
        seen.append(connection.phase)
        loop.run_until_complete(asyncio.sleep(0))  # the connection's task ends, cancelled
        connections._sweeper.cancel()  # type: ignore[union-attr]
        return seen, transport
    finally:
        loop.close()


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def test_a_keep_alive_request_goes_busy_then_idle() -> None:
    seen, transport = walk(GET, GET)
    assert seen == [NEW, BUSY, IDLE, BUSY, IDLE, CLOSED]
    assert transport.written.count(b"HTTP/1.1 200") == 2 and not transport.closed


def test_a_head_arriving_is_reading() -> None:
    seen, _ = walk(b"GET / HTTP/1.1\r\n")
    assert seen == [NEW, READING, READING, CLOSED]


def test_a_closing_request_ends_the_connection() -> None:
    seen, transport = walk(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert seen == [NEW, BUSY, CLOSED, CLOSED]
    assert b"connection: close" in transport.written and transport.closed


def test_a_protocol_error_is_answered_then_the_connection_ends() -> None:
    seen, transport = walk(GET + b"BAD\r\n\r\n")
    assert seen == [NEW, ENDING, CLOSED, CLOSED]
    assert transport.written.count(b"HTTP/1.1 ") == 2 and transport.closed
    assert not transport.aborted
