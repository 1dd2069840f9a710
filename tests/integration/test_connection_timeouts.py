"""Slow clients: a head or body that does not arrive in time, or an idle kept-alive connection,
is closed by the gateway (the slow-loris guard), and nothing incomplete reaches an upstream."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.assertions import assert_nothing_reached
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint

TIMEOUT_MS = 500
CLOSE_WAIT_S = 5.0
DRIP_INTERVAL_S = 0.1
DRIP_BYTES = 60


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {
        "server": {
            "header_timeout_ms": TIMEOUT_MS,
            "body_timeout_ms": TIMEOUT_MS,
            "keep_alive_timeout_ms": TIMEOUT_MS,
        }
    }


def test_a_head_that_never_completes_is_closed(gateway: GatewayProcess, services: Fleet) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send(b"GET /api/v1/search/q HTTP/1.1\r\nHost: gateway.test\r\n")

        assert connection.is_closed_by_peer(CLOSE_WAIT_S)
        assert not connection.buffer or connection.buffer.startswith(b"HTTP/1.1 408")
    assert_nothing_reached(services)


def drip(connection: RawConnection, data: bytes) -> bool:
    """Send one byte at a time; False as soon as the gateway has closed the connection."""
    for byte in data:
        if not connection.send_tolerant(bytes([byte])):
            return False
        time.sleep(DRIP_INTERVAL_S)
        if connection.is_closed_by_peer(0):
            return False
    return True


def test_a_head_dripped_byte_by_byte_is_cut_off(gateway: GatewayProcess, services: Fleet) -> None:
    head = b"GET /api/v1/search/q HTTP/1.1\r\nHost: gateway.test\r\nX-Slow: " + b"s" * DRIP_BYTES
    with RawConnection(gateway.port) as connection:
        sent_all = drip(connection, head)

    assert not sent_all, "a head dripped in slower than header_timeout_ms was let through"
    assert_nothing_reached(services)


def test_a_body_that_stalls_gets_408_and_never_arrives_complete(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = [("Authorization", f"Bearer {mint()}"), ("Content-Length", "100")]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", "/api/v1/tickets/1", headers) + b"only-part")
        closed = connection.is_closed_by_peer(CLOSE_WAIT_S)
        answer = bytes(connection.buffer)

    assert closed, "the gateway waited forever for the rest of the body"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert not [r for r in services["ticket"].requests if r.body_complete]


def test_an_idle_kept_alive_connection_is_closed(gateway: GatewayProcess, services: Fleet) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", "/api/v1/search/q"))
        assert connection.read_response().status == 200

        assert connection.is_closed_by_peer(CLOSE_WAIT_S)
