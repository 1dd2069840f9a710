"""What a trusted proxy says about the client, against a real gateway listening on ``::``.

The test client plays the trusted proxy on ``::1``. Repeated forwarding lines are one list
whose right-most element the nearest proxy added; the client address behind it is a canonical
IP (safe in the access log); IPv6 clients share a rate-limit bucket per /64.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.client import DEFAULT_TIMEOUT_S, RawConnection, RawResponse, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint
from support.upstream import Reply

TOKEN_A = mint(sub="user-a", tenant_id="tenant-a", role="customer")
LIMIT = 5
LOG_TIMEOUT_S = 10.0
POLL_S = 0.05


class Ipv6Connection(RawConnection):
    """A keep-alive connection from ``::1``, the trusted proxy's address."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("::1", port), timeout=DEFAULT_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout_s = DEFAULT_TIMEOUT_S
        self.buffer = bytearray()

    def get(self, target: str, headers: list[tuple[str, str]]) -> RawResponse:
        self.send(build_request("GET", target, headers))
        return self.read_response()


def act_as_venue_service(fleet: Fleet) -> None:
    venue = fleet["venue"]
    venue.respond(Reply(status=404, body=b'{"error": "not found"}'))
    for name in ("a", "b"):
        document = {"venueId": f"venue-{name}", "tenantId": f"tenant-{name}"}
        venue.respond(
            Reply(body=json.dumps(document).encode()),
            path=f"/api/v1/branding/domain/tickets.venue-{name}.com",
        )


@pytest.fixture
def proxied(service_fleet: Fleet, tmp_path: Path) -> Iterator[GatewayProcess]:
    env = {"TRUSTED_PROXIES": "::1/128", "RATE_LIMIT_MAX": str(LIMIT)}
    dual_stack = ["--host", "::"]  # 127.0.0.1 for the readiness probe, ::1 for the tests
    with running_gateway(tmp_path, service_fleet.urls(), env=env, extra_args=dual_stack) as gw:
        service_fleet.reset()
        act_as_venue_service(service_fleet)
        yield gw


def through_proxy(gateway: GatewayProcess, headers: list[tuple[str, str]]) -> RawResponse:
    with Ipv6Connection(gateway.port) as connection:
        credentials = ("Authorization", f"Bearer {TOKEN_A}")
        return connection.get("/api/v1/events/1", [*headers, credentials])


def test_the_proxys_own_forwarded_host_line_decides_the_venue(
    proxied: GatewayProcess, service_fleet: Fleet
) -> None:
    # The client sent the first line (another tenant's venue); the proxy appended the second.
    response = through_proxy(
        proxied,
        [
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Forwarded-Host", "tickets.venue-b.com"),
            ("X-Forwarded-Host", "tickets.venue-a.com"),
        ],
    )

    assert response.status == 200, response.body
    request = service_fleet["event"].only_request()
    assert request.header_values("x-venue-id") == ["venue-a"]
    assert request.header_values("x-forwarded-host") == ["tickets.venue-a.com"]


def test_one_decided_value_of_each_forwarding_header_reaches_the_upstream(
    proxied: GatewayProcess, service_fleet: Fleet
) -> None:
    response = through_proxy(
        proxied,
        [
            ("X-Forwarded-For", "198.51.100.7"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Port", "1"),
            ("X-Forwarded-Port", "443"),
            ("X-Forwarded-Host", "spoof.example, tickets.venue-a.com"),
        ],
    )

    assert response.status == 200, response.body
    request = service_fleet["event"].only_request()
    assert request.header_values("x-forwarded-proto") == ["https"]
    assert request.header_values("x-forwarded-port") == ["443"]
    assert request.header_values("x-forwarded-host") == ["tickets.venue-a.com"]
    assert request.header_values("x-forwarded-for") == ["198.51.100.7, ::1"]


def access_line(gateway: GatewayProcess, request_id: str) -> dict[str, Any]:
    """The access-log line of ``request_id``; every line of the log must be one JSON object."""
    deadline = time.monotonic() + LOG_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in gateway.stdout_path.read_text(errors="replace").splitlines():
            document = json.loads(line)  # a broken line fails here
            if document.get("msg") == "request" and document["request_id"] == request_id:
                return document  # type: ignore[no-any-return]
        time.sleep(POLL_S)
    raise AssertionError(f"no access log line for {request_id}")


@pytest.mark.parametrize(
    ("hop", "logged"),
    [
        ('fe80::1%eth0"}{"tenant":"forged', "fe80::1"),
        ("fe80::1%\\u0000\\", "fe80::1"),
        ("2001:DB8:0:0::7", "2001:db8::7"),
        ("::ffff:198.51.100.9", "198.51.100.9"),
    ],
)
def test_a_believed_client_address_is_a_canonical_ip_in_the_access_log(
    proxied: GatewayProcess, hop: str, logged: str
) -> None:
    request_id = f"zone-{abs(hash(hop))}"
    response = through_proxy(proxied, [("X-Forwarded-For", hop), ("X-Request-Id", request_id)])

    assert response.status == 200, response.body
    line = access_line(proxied, request_id)
    assert line["client_ip"] == logged
    assert line["tenant"] == "tenant-a"


def test_ipv6_clients_of_one_64_share_a_bucket_on_a_keep_alive_connection(
    proxied: GatewayProcess,
) -> None:
    statuses = []
    with Ipv6Connection(proxied.port) as connection:
        for n in range(LIMIT + 3):
            hop = ("X-Forwarded-For", f"2001:db8:1:2::{n + 1:x}")
            statuses.append(connection.get("/api/v1/search/q", [hop]).status)
        other = connection.get("/api/v1/search/q", [("X-Forwarded-For", "2001:db8:1:3::1")])

    assert statuses == [200] * LIMIT + [429] * 3
    assert other.status == 200


def test_an_ipv4_mapped_address_is_the_ipv4_clients_bucket(proxied: GatewayProcess) -> None:
    statuses = []
    with Ipv6Connection(proxied.port) as connection:
        for n in range(LIMIT + 1):
            address = "198.51.100.20" if n % 2 else "::ffff:198.51.100.20"
            statuses.append(
                connection.get("/api/v1/search/q", [("X-Forwarded-For", address)]).status
            )

    assert statuses == [200] * LIMIT + [429]
