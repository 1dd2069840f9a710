"""Bytes an upstream sends past the end of its response never reach a client and never stay in
the pool: the client gets exactly the declared response, the upstream connection is ended, and
the next user's response (on the same or another keep-alive client connection) is their own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import uvloop
from support.client import RawConnection, RawResponse, build_request
from support.gateway import GatewayProcess, running_gateway
from support.raw_upstream import QUIET_SERVICE, RawUpstream
from support.readiness import readable
from support.tokens import mint

from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.types import Response

SERVICE = "marketplace"
BASE = "/api/v1/marketplace"
FIRST, NEXT = BASE + "/first", BASE + "/next"
SMUGGLED = b"HTTP/1.1 200 OK\r\nX-Smuggled: yes\r\nContent-Length: 9\r\n\r\nsmuggled!"
USERS = 6
WAIT_S = 5.0


def with_length(body: bytes, status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        len(body),
        body,
    )


def chunked(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )


@pytest.fixture(scope="module")
def gateway(service_fleet: Any, raw: RawUpstream, module_dir: Path) -> Iterator[GatewayProcess]:
    urls = {**service_fleet.urls(), SERVICE: raw.url}
    with running_gateway(module_dir, urls, {"services": {SERVICE: QUIET_SERVICE}}) as process:
        yield process


def get(connection: RawConnection, path: str, method: str = "GET") -> RawResponse:
    headers = [("Authorization", f"Bearer {mint()}")]
    connection.send(build_request(method, path, headers))
    return connection.read_response(method)


def assert_own_answers(gateway: GatewayProcess, client: RawConnection) -> None:
    """The next users (new connections, and the same keep-alive one) get their own answer."""
    for _ in range(USERS):
        with RawConnection(gateway.port) as other:
            response = get(other, NEXT)
            assert (response.status, response.body) == (200, b"ok")
            assert response.header("x-smuggled") is None
    response = get(client, NEXT)
    assert (response.status, response.body) == (200, b"ok")
    assert response.header("x-smuggled") is None


# Each: what the upstream writes in one go, the method, and the status and body the client gets.
SAME_READ = {
    "another response after content-length": (
        with_length(b"first") + SMUGGLED, "GET", 200, b"first"
    ),
    "a longer body than content-length": (
        with_length(b"first") + b"-and-more-body-bytes", "GET", 200, b"first"
    ),
    "half a head after content-length": (
        with_length(b"first") + b"HTTP/1.1 200 OK\r\nX-Smuggled: yes\r\n", "GET", 200, b"first"
    ),
    "another response after the last chunk": (chunked(b"first") + SMUGGLED, "GET", 200, b"first"),
    "garbage after the last chunk": (chunked(b"first") + b"garbage", "GET", 200, b"first"),
    "another response after a 204": (
        b"HTTP/1.1 204 No Content\r\n\r\n" + SMUGGLED, "GET", 204, b""
    ),
    "another response after a 304": (
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n' + SMUGGLED, "GET", 304, b""
    ),
    "another response after the head of a HEAD answer": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + SMUGGLED, "HEAD", 200, b""
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(SAME_READ))
def test_bytes_in_the_same_read_as_the_end_are_not_passed_on_and_end_the_connection(
    gateway: GatewayProcess, upstream: RawUpstream, case: str
) -> None:
    reply, method, status, body = SAME_READ[case]
    upstream.script(FIRST, reply)

    with RawConnection(gateway.port) as client:
        response = get(client, FIRST, method)

        assert (response.status, response.body) == (status, body)
        assert response.header("x-smuggled") is None
        [exchange] = upstream.requests_for(FIRST)
        assert upstream.wait_closed(exchange.connection, WAIT_S), "the connection was kept"
        assert_own_answers(gateway, client)
    assert all(e.connection != exchange.connection for e in upstream.requests_for(NEXT))


def test_bytes_sent_while_the_connection_is_idle_end_it(
    gateway: GatewayProcess, upstream: RawUpstream
) -> None:
    upstream.script(FIRST, with_length(b"first"), later=SMUGGLED)

    with RawConnection(gateway.port) as client:
        response = get(client, FIRST)
        assert (response.status, response.body) == (200, b"first")
        [exchange] = upstream.requests_for(FIRST)

        upstream.release()

        assert upstream.wait_closed(exchange.connection, WAIT_S), "the connection was kept"
        assert_own_answers(gateway, client)


def _wait_readable(fd: int) -> None:
    # Blocks the loop on purpose: the bytes must be in the socket before the loop can read them.
    assert readable([fd], WAIT_S), "the upstream's late bytes never arrived"


def test_bytes_waiting_in_the_socket_when_the_pool_hands_the_connection_out(
    upstream: RawUpstream,
) -> None:
    """The late bytes arrived but the loop has not read them yet when the next GET takes the
    idle connection: they must not become that GET's response."""
    upstream.script(FIRST, with_length(b"first"), later=SMUGGLED)
    address = ("127.0.0.1", upstream.port)

    def head(path: str) -> bytes:
        return b"GET %s HTTP/1.1\r\nhost: upstream\r\n\r\n" % path.encode()

    async def scenario() -> tuple[Response, Response]:
        pool = UpstreamPool(asyncio.get_running_loop(), PoolSettings())
        try:
            first = await pool.request(address, head(FIRST), b"", False, WAIT_S, "GET")
            [idle] = pool.idle[address]
            assert idle.transport is not None
            upstream.release()
            _wait_readable(idle.transport.get_extra_info("socket").fileno())
            second = await pool.request(address, head(NEXT), b"", False, WAIT_S, "GET")
            return first, second
        finally:
            pool.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        first, second = runner.run(scenario())

    assert first.body == b"first"
    assert (second.status, second.body) == (200, b"ok")
    assert (b"x-smuggled", b"yes") not in second.headers


CLIENTS = 8
ROUNDS = 15


def test_under_concurrent_keep_alive_traffic_every_user_gets_their_own_answer(
    gateway: GatewayProcess, upstream: RawUpstream
) -> None:
    """Every other answer carries a smuggled response behind it; many users on keep-alive
    connections at once, and each one only ever sees the answer to their own request."""
    for user in range(CLIENTS):
        for n in range(ROUNDS):
            own = b"user-%d-%d" % (user, n)
            upstream.script(f"{BASE}/{user}/{n}", with_length(own) + (SMUGGLED if n % 2 else b""))

    def session(user: int) -> list[tuple[int, bytes, str | None]]:
        seen = []
        with RawConnection(gateway.port) as client:
            for n in range(ROUNDS):
                response = get(client, f"{BASE}/{user}/{n}")
                seen.append((response.status, response.body, response.header("x-smuggled")))
        return seen

    with ThreadPoolExecutor(CLIENTS) as pool:
        sessions = list(pool.map(session, range(CLIENTS)))

    for user, seen in enumerate(sessions):
        expected = [(200, b"user-%d-%d" % (user, n), None) for n in range(ROUNDS)]
        assert seen == expected
