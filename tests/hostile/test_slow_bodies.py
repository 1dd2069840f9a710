"""Slow request bodies: a body must keep a minimum rate (a drip of a byte now and then is cut
off with 408 long before the body timeout), a steady slow upload passes, one client address
may have only so many bodies arriving at once (429 before the body is read; other addresses
unaffected; behind a trusted proxy the client is the forwarded address), and bodies still
arriving are not requests in flight for the overload monitor."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess

BODY_TIMEOUT_MS = 10_000  # never what ends a drip here: the minimum rate does, far sooner
MIN_RATE = 200
WINDOW_MS = 2000
MAX_BODIES = 4
SWEEP_SLACK_S = 1.5  # the gateway judges deadlines once a second
# The first window is the grace period; a drip is judged when it ends.
# Generous for a loaded machine, yet well inside the body timeout: the rate is what cut it.
CUT_WITHIN_S = WINDOW_MS / 1000 + SWEEP_SLACK_S + 3.5
UPLOAD = "/api/v1/search/upload"  # public: authentication plays no part
PROXY = "127.0.0.1"  # trusted below; every other loopback address is a client of its own


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {
        "server": {
            "body_timeout_ms": BODY_TIMEOUT_MS,
            "min_body_rate_bytes_per_s": MIN_RATE,
            "body_rate_window_ms": WINDOW_MS,
            "max_bodies_per_client": MAX_BODIES,
            "trusted_proxies": [f"{PROXY}/32"],
        }
    }


def connect(port: int, source: str) -> RawConnection:
    """A connection from ``source`` (any 127.x.y.z address is this host's loopback)."""
    connection = RawConnection.__new__(RawConnection)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10.0)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.sock, connection.timeout_s, connection.buffer = sock, 10.0, bytearray()
    return connection


def upload_head(length: int, forwarded_for: str | None = None, target: str = UPLOAD) -> bytes:
    headers = [("Content-Length", str(length))]
    if forwarded_for is not None:
        headers.append(("X-Forwarded-For", forwarded_for))
    return build_request("POST", target, headers)


def test_a_dripped_body_is_cut_off_at_the_minimum_rate(
    gateway: GatewayProcess, services: Fleet
) -> None:
    with connect(gateway.port, "127.0.0.20") as connection:
        connection.send(upload_head(1000))
        started = time.monotonic()
        cut = False
        # One byte every half second: each pause far inside the 10 s body timeout.
        for _ in range(int(BODY_TIMEOUT_MS / 500)):
            if not connection.send_tolerant(b"x") or connection.is_closed_by_peer(0.5):
                cut = True
                break
        waited = time.monotonic() - started
        response = connection.read_response()

    assert cut, "a body dripped at 2 bytes a second was never cut off"
    assert waited < CUT_WITHIN_S, f"cut after {waited:.1f}s"
    assert response.status == 408
    assert response.header("content-type") == "application/problem+json"
    assert "bytes a second" in response.json()["detail"]
    assert response.json()["request_id"]
    assert not [r for r in services["search"].requests if r.body_complete]


def test_a_slow_but_steady_upload_passes(gateway: GatewayProcess, services: Fleet) -> None:
    piece = b"s" * 250  # every 0.1 s: 2.5 KB/s, over three windows
    pieces = int(3 * WINDOW_MS / 100)
    # A target of its own: the fleet is shared, and a request of an earlier test that reaches
    # the service late must not count here. A second request to this target would be this
    # upload sent twice.
    target = f"{UPLOAD}?steady=1"
    with connect(gateway.port, "127.0.0.21") as connection:
        connection.send(upload_head(len(piece) * pieces, target=target))
        for _ in range(pieces):
            connection.send(piece)
            time.sleep(0.1)
        response = connection.read_response()

    assert response.status == 200
    requests = services["search"].requests
    mine = [(r.body_complete, r.body_length) for r in requests if r.target == target]
    assert mine == [(True, len(piece) * pieces)], [(r.method, r.target) for r in requests]


def test_the_rate_clock_starts_with_100_continue(gateway: GatewayProcess, services: Fleet) -> None:
    # The client waits for our 100 before sending: that wait is not the client being slow.
    body = b"c" * 4000
    head = build_request(
        "POST", UPLOAD, [("Content-Length", str(len(body))), ("Expect", "100-continue")]
    )
    with connect(gateway.port, "127.0.0.22") as connection:
        connection.send(head)
        interim = connection.read_response()
        connection.send(body)
        response = connection.read_response()

    assert (interim.status, response.status) == (100, 200)


HELD_LENGTH = 100_000
FEED_BYTES = 100
FEED_EVERY_S = 0.2  # 500 bytes a second: well above the minimum rate, far below the length


class HeldBodies:
    """Uploads whose bodies have begun and keep arriving steadily (a thread feeds them) until
    ``finish`` sends the rest; bounded by ``HELD_LENGTH``."""

    def __init__(self, connections: list[RawConnection], sent: int) -> None:
        self.connections = connections
        self.sent = [sent] * len(connections)
        self.stop = threading.Event()
        self.feeder = threading.Thread(target=self._feed, daemon=True)

    def _feed(self) -> None:
        for _ in range(int(HELD_LENGTH / FEED_BYTES) - 20):
            if self.stop.wait(FEED_EVERY_S):
                return
            for i, connection in enumerate(self.connections):
                if connection.send_tolerant(b"a" * FEED_BYTES):
                    self.sent[i] += FEED_BYTES

    def finish(self) -> list[int]:
        """Stop feeding, send every body's rest; the statuses of the answers."""
        self.stop.set()
        self.feeder.join(5.0)
        for connection, sent in zip(self.connections, self.sent, strict=True):
            connection.send(b"a" * (HELD_LENGTH - sent))
        return [connection.read_response().status for connection in self.connections]


@contextlib.contextmanager
def arriving_bodies(
    port: int, source: str, count: int, forwarded_for: str | None = None
) -> Iterator[HeldBodies]:
    """``count`` uploads from ``source`` whose bodies have begun but not ended."""
    with contextlib.ExitStack() as stack:
        connections = [stack.enter_context(connect(port, source)) for _ in range(count)]
        for connection in connections:
            connection.send(upload_head(HELD_LENGTH, forwarded_for) + b"a" * 1000)
        held = HeldBodies(connections, 1000)
        held.feeder.start()
        try:
            yield held
        finally:
            held.stop.set()
            held.feeder.join(5.0)


def one_upload(port: int, source: str, forwarded_for: str | None = None) -> int:
    """An upload whose body arrives in two parts: it is counted while arriving."""
    with connect(port, source) as connection:
        connection.send(upload_head(2000, forwarded_for) + b"b" * 1000)
        time.sleep(0.05)
        connection.send_tolerant(b"b" * 1000)  # a refusal may have closed the socket already
        return connection.read_response().status


def test_one_address_may_have_only_so_many_bodies_arriving(
    gateway: GatewayProcess, services: Fleet
) -> None:
    search = services["search"]
    with arriving_bodies(gateway.port, "127.0.0.30", MAX_BODIES):
        assert len(search.wait_for_requests(MAX_BODIES)) == MAX_BODIES
        with connect(gateway.port, "127.0.0.30") as connection:
            connection.send(upload_head(2000) + b"b" * 1000)
            refused = connection.read_response()
        other = one_upload(gateway.port, "127.0.0.31")

    assert refused.status == 429
    assert refused.header("retry-after") == "1"
    assert refused.header("content-type") == "application/problem+json"
    assert refused.json()["request_id"]
    assert other == 200
    assert len(search.requests) == MAX_BODIES + 1  # the refused one never went upstream


def test_a_body_that_arrived_leaves_the_count(gateway: GatewayProcess, services: Fleet) -> None:
    search = services["search"]
    for _ in range(3):
        with arriving_bodies(gateway.port, "127.0.0.32", MAX_BODIES) as held:
            assert len(search.wait_for_requests(MAX_BODIES)) == MAX_BODIES
            assert held.finish() == [200] * MAX_BODIES
        search.reset()
    # Held and finished three times over: none of them is still counted.
    assert one_upload(gateway.port, "127.0.0.32") == 200


def test_behind_a_trusted_proxy_the_client_is_the_forwarded_address(
    gateway: GatewayProcess, services: Fleet
) -> None:
    search = services["search"]
    client = "203.0.113.7"
    with arriving_bodies(gateway.port, PROXY, MAX_BODIES, forwarded_for=client):
        assert len(search.wait_for_requests(MAX_BODIES)) == MAX_BODIES
        same_client = one_upload(gateway.port, PROXY, forwarded_for=client)
        another_client = one_upload(gateway.port, PROXY, forwarded_for="203.0.113.8")

    assert same_client == 429
    assert another_client == 200  # the proxy itself is not one client


def test_bodies_still_arriving_are_not_requests_in_flight(
    gateway: GatewayProcess, services: Fleet
) -> None:
    search = services["search"]
    with arriving_bodies(gateway.port, "127.0.0.40", 3):
        assert len(search.wait_for_requests(3)) == 3
        with connect(gateway.admin_port, "127.0.0.1") as connection:
            connection.send(build_request("GET", "/metrics"))
            metrics = connection.read_response()

    assert metrics.status == 200
    in_flight = re.findall(rb"^gateway_requests_in_flight(?:\{[^}]*\})? (\d+)", metrics.body, re.M)
    # Not the scrape itself either: an operator's request is not client traffic.
    assert in_flight == [b"0"], in_flight
