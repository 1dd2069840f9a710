"""Slow and abusive clients: slow heads and bodies are cut off, oversized ones refused before
they are read, thousands of idle sockets cost nothing, and a client that walks away mid-request
or mid-response gets its upstream request cancelled without leaking a socket."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any, cast

import psutil  # type: ignore[import-untyped]
import pytest
from support.assertions import assert_nothing_reached
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess
from support.upstream import Reply

HEADER_TIMEOUT_MS = 500
KEEP_ALIVE_TIMEOUT_MS = 3000
# The gateway sweeps deadlines once a second: a deadline is met within this much of it.
SWEEP_SLACK_S = 1.5
CLOSE_WAIT_S = 5.0
IDLE_CONNECTIONS = 2000
FD_SETTLE_S = 5.0


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {
        "server": {
            "header_timeout_ms": HEADER_TIMEOUT_MS,
            "body_timeout_ms": HEADER_TIMEOUT_MS,
            "keep_alive_timeout_ms": KEEP_ALIVE_TIMEOUT_MS,
        }
    }


def closed_within(connection: RawConnection, seconds: float) -> float | None:
    """Seconds until the gateway closed the connection, or None if it did not in time."""
    start = time.monotonic()
    return time.monotonic() - start if connection.is_closed_by_peer(seconds) else None


def test_slowloris_a_dripped_head_is_cut_at_the_header_timeout(
    gateway: GatewayProcess, services: Fleet
) -> None:
    head = build_request("GET", "/api/v1/search/q")[:-2]  # never finished
    with RawConnection(gateway.port) as connection:
        deadline = time.monotonic() + CLOSE_WAIT_S
        for byte in head * 10:
            if time.monotonic() > deadline or not connection.send_tolerant(bytes([byte])):
                break
            if connection.is_closed_by_peer(0.05):
                break
        closed = connection.is_closed_by_peer(0)

    assert closed, "a head dripped for seconds was never cut off"
    assert_nothing_reached(services)


def test_empty_lines_do_not_keep_an_idle_connection_open(
    gateway: GatewayProcess, services: Fleet
) -> None:
    # llhttp skips empty lines before a request line: they must not count as a request starting.
    with RawConnection(gateway.port) as connection:
        deadline = time.monotonic() + KEEP_ALIVE_TIMEOUT_MS / 1000 + 2 * SWEEP_SLACK_S
        closed = False
        while not closed and time.monotonic() < deadline:
            closed = not connection.send_tolerant(b"\r\n") or connection.is_closed_by_peer(0.2)

    assert closed, "empty lines kept a connection open past every timeout"


def test_a_head_started_while_a_request_is_in_flight_gets_the_header_timeout(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["search"].respond(Reply(delay_s=0.5), path="/api/v1/search/slow")
    partial = build_request("GET", "/api/v1/search/next")[:20]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", "/api/v1/search/slow") + partial)
        assert connection.read_response().status == 200
        waited = closed_within(connection, CLOSE_WAIT_S)

    assert waited is not None, "the unfinished head was never cut off"
    assert waited < HEADER_TIMEOUT_MS / 1000 + SWEEP_SLACK_S, f"cut after {waited:.1f}s"


def test_a_slow_body_gets_408(gateway: GatewayProcess, services: Fleet) -> None:
    head = build_request("POST", "/api/v1/search/q", [("Content-Length", "1000")])
    with RawConnection(gateway.port) as connection:
        connection.send(head + b"x" * 10)
        closed = connection.is_closed_by_peer(CLOSE_WAIT_S)
        answer = bytes(connection.buffer)

    assert closed
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert not [r for r in services["search"].requests if r.body_complete]


OVERSIZED = {
    # None of these heads is ever finished: the answer must not wait for the rest. A field still
    # arriving counts against the header cap as its bytes arrive (tests/hostile/test_pipelining).
    "uri": (b"GET /api/v1/search/" + b"a" * 9000, 414),
    "one-header": (b"GET /api/v1/search/q HTTP/1.1\r\nHost: g\r\nX-A: " + b"a" * 30000, 431),
    "many-headers": (b"GET /api/v1/search/q HTTP/1.1\r\nHost: g\r\n" + b"X-A: a\r\n" * 150, 431),
    "declared-body": (
        build_request("POST", "/api/v1/search/q", [("Content-Length", "2000000")]),
        413,
    ),
}


@pytest.mark.parametrize(("raw", "status"), list(OVERSIZED.values()), ids=list(OVERSIZED))
def test_oversized_requests_are_refused_before_they_are_read(
    gateway: GatewayProcess, services: Fleet, raw: bytes, status: int
) -> None:
    with RawConnection(gateway.port, timeout_s=2.0) as connection:
        connection.send_tolerant(raw)
        response = connection.read_response()
        closed = connection.is_closed_by_peer(2.0)

    assert response.status == status
    assert closed
    assert_nothing_reached(services)


@contextlib.contextmanager
def idle_sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5.0))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_thousands_of_idle_connections_do_not_slow_a_real_request(
    gateway: GatewayProcess, services: Fleet
) -> None:
    # Pool the upstream connection first: one the recording upstream accepted while this process
    # holds thousands of sockets would get a descriptor too high for its select().
    assert gateway.get("/api/v1/search/warm").status == 200
    services.reset()
    with idle_sockets(gateway.port, IDLE_CONNECTIONS) as sockets:
        for sock in sockets[::100]:
            sock.sendall(b"GET /api/v1/search/idle HTTP/1.1\r\n")  # some with half a head
        start = time.monotonic()
        response = gateway.get("/api/v1/search/q")
        elapsed = time.monotonic() - start

    assert response.status == 200
    assert elapsed < 1.0, f"a request took {elapsed:.2f}s next to {IDLE_CONNECTIONS} idle sockets"
    assert [r.target for r in services["search"].requests] == ["/api/v1/search/q"]


def open_fds(gateway: GatewayProcess) -> int:
    """The supervisor's and its workers' (the connections are the worker's)."""
    total = 0
    for process in [psutil.Process(gateway.pid), *gateway.children()]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += cast(int, process.num_fds())
    return total


def fds_return_to(gateway: GatewayProcess, baseline: int) -> bool:
    deadline = time.monotonic() + FD_SETTLE_S
    while time.monotonic() < deadline:
        if open_fds(gateway) <= baseline:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def baseline_fds(gateway: GatewayProcess, services: Fleet) -> int:
    """The gateway's open files once it has a pooled connection to the search service."""
    assert gateway.get("/api/v1/search/warm").status == 200
    time.sleep(0.2)
    services.reset()
    return open_fds(gateway)


def test_a_client_gone_mid_body_cancels_the_upstream_request(
    gateway: GatewayProcess, services: Fleet, baseline_fds: int
) -> None:
    head = build_request("POST", "/api/v1/search/upload", [("Content-Length", "1000000")])
    with RawConnection(gateway.port) as connection:
        connection.send(head + b"x" * 100_000)
        services["search"].wait_for_requests(1)

    assert services["search"].wait_until("body_read_ended")
    assert not services["search"].requests[0].body_complete
    assert fds_return_to(gateway, baseline_fds), (open_fds(gateway), baseline_fds)


def test_a_client_gone_while_waiting_cancels_the_upstream_request(
    gateway: GatewayProcess, services: Fleet, baseline_fds: int
) -> None:
    services["search"].respond(Reply(delay_s=3.0))
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", "/api/v1/search/waiting"))
        services["search"].wait_for_requests(1)

    assert services["search"].wait_until("client_gone_before_reply")
    assert fds_return_to(gateway, baseline_fds), (open_fds(gateway), baseline_fds)


def test_a_client_gone_mid_response_stops_the_download(
    gateway: GatewayProcess, services: Fleet, baseline_fds: int
) -> None:
    services["search"].respond(Reply(generated_size=256 * 1024 * 1024))
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", "/api/v1/search/download"))
        connection.sock.recv(65536)

    assert fds_return_to(gateway, baseline_fds), (open_fds(gateway), baseline_fds)
    assert gateway.get("/api/v1/search/after").status == 200
