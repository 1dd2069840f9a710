"""How an upstream exchange leaves its ordinary course: the parser stopping before the end of a
read (a bug of ours, a protocol switch, a refusal, bytes past the end), the switch a WebSocket
handshake asked for, a deadline passing, and a request body that streams out from a task of its
own. Functions of the connection (``upstream_connection.py``), kept apart so that file holds the
ordinary exchange alone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from api_gateway.errors import (
    THE_SERVICE,
    BadGateway,
    GatewayError,
    StreamIdleTimeout,
    UnusableResponse,
    UpstreamTimeout,
)
from api_gateway.http import wire
from api_gateway.http.upstream_phases import DONE, SWITCHED, ImpossibleTransition
from api_gateway.types import BodySource, Response, Switched

if TYPE_CHECKING:
    from api_gateway.http.upstream_connection import UpstreamConnection

log = logging.getLogger("api_gateway.http")


def parser_stopped(connection: UpstreamConnection, exc: Exception) -> bool:
    """The parser stopped before the end of ``data``: whether the exchange goes on."""
    if isinstance(exc.__context__, ImpossibleTransition):
        raise exc.__context__  # a bug of ours, raised in a callback: never the peer's fault
    if connection.phase == SWITCHED:
        # Only a WebSocket handshake asks for an upgrade: a 101 to anything else is an
        # answer to a question not asked, and no one is there to take the tunnel over.
        connection.abort(UnusableResponse(f"{THE_SERVICE} switched protocols without being asked"))
        return False
    if connection.refusal is not None:
        connection.abort(connection.refusal)
        return False
    if connection.phase == DONE:
        # Bytes after a complete response (a second response, more body, garbage): the
        # response stands as declared; the connection is out of step and must not be reused.
        connection.reusable = False
        return True
    # What the parser disliked is for the operator (with the instance), not for the client.
    if log.isEnabledFor(logging.DEBUG):
        host, port = connection.address
        log.debug("invalid response from %s:%d: %s", host, port, exc)
    connection.abort(BadGateway(f"{THE_SERVICE} sent an invalid response"))
    return False


def switch(connection: UpstreamConnection, rest: bytes) -> None:
    """The upstream switched protocols as asked: the connection leaves the pool for good,
    its transport (reading paused until the tunnel takes it) and what followed the 101's
    head go to the client's side (``Response.switched``)."""
    connection.pool.busy.discard(connection)
    transport = connection.transport
    future = connection.future
    if transport is None or future is None or future.done():
        connection.close()
        return
    transport.pause_reading()
    response = Response(101, connection.head.headers, b"")
    response.switched = Switched(transport, rest)
    future.set_result(response)


def timed_out(connection: UpstreamConnection) -> GatewayError:
    """What the deadline's passing means: no answer, or a stream gone quiet."""
    if connection.stream is not None:
        return StreamIdleTimeout(f"{THE_SERVICE}'s stream was quiet too long")
    return UpstreamTimeout(f"{THE_SERVICE} did not answer in time")


async def send_body(connection: UpstreamConnection, body: BodySource, chunked: bool) -> None:
    flow = connection.flow
    try:
        async for data in body:
            if not data:
                continue
            connection.write(wire.chunk(data) if chunked else data)
            if flow.write_paused:
                await flow.drain()
        if chunked:
            connection.write(wire.LAST_CHUNK)
        connection.sending = False
        connection.deadline = connection.loop.time() + connection.timeout_s
    except GatewayError as error:
        connection.abort(error)
    except OSError:
        connection.abort(BadGateway("the client's request body could not be forwarded"))
