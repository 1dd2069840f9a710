"""A paused event loop at a deadline the gateway keeps for a client: an aggregate's sources, a
client connection's head and keep-alive deadlines.

The loop is blocked with ``time.sleep`` inside an I/O callback, where a heavy request would block
it, while the peer's bytes arrive and for longer than the deadline. When it resumes, the loop runs
its due timers before it reads: the bytes that came in time are in the socket, unread. Without
the loop-pause rule (``timers.py``) an aggregate whose sources had answered was a 504, and a
client's next request, sent in time on a keep-alive connection, was lost with the connection.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import uvloop
from support.raw_upstream import Drip, RawUpstream
from support.stalls import stall_trigger, until

from api_gateway.aggregation.aggregate import Aggregate
from api_gateway.aggregation.fetch import Fetcher
from api_gateway.config.loader import build, default_document
from api_gateway.errors import GatewayError
from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.http.server import Connections, HttpConnection, ServerBounds
from api_gateway.http.server_phases import ENDING
from api_gateway.timers import MAX_EXTENSIONS
from api_gateway.types import Claims, Request, Response
from api_gateway.upstream.instances import ServiceInstances
from api_gateway.upstream.service import UpstreamService

SECRETS = {"access_secret": "a" * 32, "refresh_secret": "a" * 32}
BOUND_MS = 500  # the aggregate's deadline
STALL_S = 1.2  # more than two deadlines: a few heavy requests in a row
ANSWER_DELAY_S = 0.05  # the service answers this long after the request: during the stall
WRITTEN_WAIT_S = 5.0


@pytest.fixture
def service() -> Iterator[RawUpstream]:
    upstream = RawUpstream()
    yield upstream
    upstream.stop()


def json_reply(document: object) -> bytes:
    body = orjson.dumps(document)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


# An aggregate's deadline.


def event_details(upstream: RawUpstream) -> Any:
    document = default_document()
    document["jwt"].update(SECRETS)
    for name in ("event", "venue", "ticket", "marketplace"):
        document["services"][name]["url"] = upstream.url
    document["aggregates"]["event-details"]["timeout_ms"] = BOUND_MS
    return build(document)


def test_an_aggregate_whose_source_answered_during_a_stall_is_answered(
    service: RawUpstream,
) -> None:
    """The event answers within the deadline, while the loop is stalled past it: the answer is
    in the socket when the aggregate's timer fires. The venue, which needs the event's answer,
    starts after the deadline and gets the same extension."""
    event_path = "/api/v1/events/e1"
    service.script(event_path, Drip(b"", 1, ANSWER_DELAY_S), json_reply({"venueId": "v1"}))
    service.script("/api/v1/venues/v1", json_reply({"id": "v1"}))
    service.script("/api/v1/tickets/events/e1/availability", json_reply({"available": 3}))
    service.script("/api/v1/marketplace/listings", json_reply([]))
    config = event_details(service)

    def stall() -> None:
        deadline = time.monotonic() + WRITTEN_WAIT_S
        while not any(e.written for e in service.requests_for(event_path)):
            assert time.monotonic() < deadline, "the service never answered"
            time.sleep(0.005)
        time.sleep(STALL_S)

    async def story() -> Any:
        loop = asyncio.get_running_loop()

        def clock_ms() -> float:
            return loop.time() * 1000

        pool = UpstreamPool(loop, PoolSettings())
        services = {
            name: UpstreamService(c, ServiceInstances(name, c.instances), random.Random(1))
            for name, c in config.services.items()
        }
        [aggregate_config] = [a for a in config.aggregates if a.name == "event-details"]
        aggregate = Aggregate(
            aggregate_config, "/api/v1/aggregate", Fetcher(services, pool, clock_ms), clock_ms
        )
        request = Request("GET", b"/api/v1/aggregate/events/e1", [], b"", "127.0.0.1")
        request.path = "/api/v1/aggregate/events/e1"
        request.claims = Claims("u1", "t1", "customer", "", 0.0)
        trigger = await stall_trigger(stall)
        answer = asyncio.ensure_future(aggregate(request))
        await until(lambda: bool(service.requests_for(event_path)) or answer.done())
        trigger.send(b"x")
        try:
            return orjson.loads((await answer).body)  # type: ignore[arg-type]
        finally:
            pool.close()
            trigger.close()

    document = uvloop.run(story())
    assert document["meta"]["complete"] is True, document
    assert document["data"]["event"] == {"venueId": "v1"}
    assert document["data"]["venue"] == {"id": "v1"}


# A client connection's head and keep-alive deadlines (swept once a second).

CLIENT_BOUND_S = 0.5  # header and keep-alive timeouts
CLIENT_STALL_S = 1.7  # past the deadline and past a sweep (once a second) after it
READ_TIMEOUT_S = 5.0
HEAD = b"GET /next HTTP/1.1\r\nHost: gateway.test\r\n"


class Answering:
    """The application behind the server: answers every request with its target."""

    async def handle(self, request: Request) -> Response:
        if not isinstance(request.body, bytes):
            try:
                async for _ in request.body:  # a body still arriving is read to its end
                    pass
            except GatewayError as error:  # as the gateway answers it: a 408 for a slow body
                return Response(error.status, [], b"")
        return Response(200, [], request.target)

    def reject(self, error: GatewayError, peer_ip: str) -> Response:
        return Response(error.status, [], b"")


class Served:
    """A server on loopback with short client deadlines, and one client connection to it."""

    def __init__(self, connections: Connections, server: asyncio.Server, client: socket.socket):
        self.connections, self.server, self.client = connections, server, client

    @classmethod
    async def start(cls) -> Served:
        loop = asyncio.get_running_loop()
        connections = Connections(loop)
        bounds = ServerBounds(
            header_timeout_s=CLIENT_BOUND_S,
            keep_alive_timeout_s=CLIENT_BOUND_S,
            body_timeout_s=CLIENT_BOUND_S,
        )
        server = await loop.create_server(
            lambda: HttpConnection(Answering(), bounds, connections, 0), "127.0.0.1", 0
        )
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, server.sockets[0].getsockname())
        await until(lambda: bool(connections.open))
        return cls(connections, server, client)

    async def response(self) -> bytes:
        """One response (or b"" when the connection ends first)."""
        loop, data = asyncio.get_running_loop(), b""
        async with asyncio.timeout(READ_TIMEOUT_S):
            while b"\r\n\r\n" not in data or not data.endswith(b"/next"):
                try:
                    piece = await loop.sock_recv(self.client, 65536)
                except ConnectionResetError:
                    return data
                if not piece:
                    return data
                data += piece
        return data

    async def close(self) -> None:
        self.client.close()
        self.server.close()
        await self.connections.shutdown(1.0)


POST = b"POST /next HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 6\r\n\r\n"


@pytest.mark.parametrize(
    ("before", "during", "running"),
    [
        (HEAD + b"\r\n", HEAD + b"\r\n", "idle"),
        (HEAD, b"\r\n", "head"),
        (POST + b"abc", b"def", "body"),
    ],
    ids=["next-request-on-keep-alive", "rest-of-the-head", "rest-of-the-body"],
)
def test_a_request_sent_in_time_during_a_stall_is_answered(
    before: bytes, during: bytes, running: str
) -> None:
    """Keep-alive: the next request, sent well within the keep-alive timeout, arrives while the
    loop is stalled; it resumes past the deadline. Head and body: their last bytes do the same."""

    def deadline_running(connection: HttpConnection) -> bool:
        if running == "head":
            return connection.in_head
        if running == "body":
            return connection.body_stream is not None
        return not connection.in_head

    async def story() -> tuple[bytes, bytes]:
        served = await Served.start()
        loop = asyncio.get_running_loop()

        def stall() -> None:
            served.client.send(during)  # in time: the deadline is still ahead
            time.sleep(CLIENT_STALL_S)

        trigger = await stall_trigger(stall)
        try:
            await loop.sock_sendall(served.client, before)
            first = await served.response() if running == "idle" else b""
            await until(lambda: all(deadline_running(c) for c in served.connections.open))
            trigger.send(b"x")
            return first, await served.response()
        finally:
            trigger.close()
            await served.close()

    first, answer = uvloop.run(story())
    assert first.startswith(b"HTTP/1.1 200") or first == b""
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"/next"), answer


def test_a_connection_always_found_with_bytes_unread_still_expires() -> None:
    """The sweep spares a connection whose bytes wait unread a few times per deadline, no more:
    a loop that never gets to read still ends it (here the sweep runs while nothing is read)."""

    async def story() -> list[bool]:
        served = await Served.start()
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(served.client, HEAD)
            await until(lambda: any(c.in_head for c in served.connections.open))
            served.client.send(b"X-More: 1\r\n")  # unread until this coroutine yields
            [connection] = served.connections.open
            past = connection.deadline + 1
            spared = []
            for _ in range(MAX_EXTENSIONS + 1):
                served.connections.expire_due(past)
                spared.append(connection.phase < ENDING)  # not yet failed: spared
            return spared
        finally:
            await served.close()

    assert uvloop.run(story()) == [True] * MAX_EXTENSIONS + [False]
