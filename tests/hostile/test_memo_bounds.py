"""Memos of client and service text stay small in bytes, not only in entries.

The data plane remembers a few things per distinct value (a header name's lower-case form, a
host's canonical form, whether a service's field is passed on) so that the common case is one
dictionary lookup. Each memo holds at most a few thousand entries; were each entry allowed to be
as long as the 16 KiB header limit, a client sending distinct long names or hosts could make a
worker keep 100 MiB. Here a real gateway gets thousands of such requests over keep-alive
connections and its resident set, read from /proc/<pid>/status, must stay within a few MiB.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint
from support.upstream import Reply

MIB = 1024 * 1024
CONNECTIONS = 4
DISTINCT = 3000
# Long, yet one field stays well within the 16 KiB head limit (and the 64 KiB upstream one).
PADDING = 12_000
# Measured on the code that remembered everything: 45 to 47 MiB for each of these runs.
BOUND = 12 * MIB
# Domain routing refuses a host that is no host name (400) before the cache; without it such a
# host reaches the response cache's key, as it would behind a proxy that rewrites Host.
NO_DOMAIN_ROUTING: dict[str, Any] = {"tenancy": {"domain_routing": False}}


@pytest.fixture
def fresh_gateway(services: Fleet, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway of its own per test: memory another test freed would hide growth."""
    with running_gateway(tmp_path, services.urls(), config=NO_DOMAIN_ROUTING) as gateway:
        yield gateway


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def rss(gateway: GatewayProcess) -> int:
    """The supervisor's and every worker's resident set."""
    pids = [gateway.pid, *(child.pid for child in gateway.children())]
    return sum(resident_bytes(pid) for pid in pids)


def statuses(gateway: GatewayProcess, requests: list[bytes]) -> set[int]:
    """Each request once, over a few keep-alive connections; the statuses seen."""

    def send(share: list[bytes]) -> set[int]:
        seen = set()
        with RawConnection(gateway.port) as connection:
            for request in share:
                connection.send(request)
                seen.add(connection.read_response().status)
        return seen

    shares = [requests[n::CONNECTIONS] for n in range(CONNECTIONS)]
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        return set().union(*pool.map(send, shares))


def growth(gateway: GatewayProcess, warm: list[bytes], attack: list[bytes]) -> tuple[int, set[int]]:
    """How much the gateway grows from ``attack``, after ``warm`` (the same shape, repeated)
    has grown every buffer it needs; and the statuses the attack got."""
    statuses(gateway, warm)
    before = rss(gateway)
    answered = statuses(gateway, attack)
    return rss(gateway) - before, answered


def test_distinct_long_header_names_leave_no_trace(fresh_gateway: GatewayProcess) -> None:
    def request(n: int) -> bytes:
        return build_request("GET", "/no-such-route", [(f"X-Pad-{n:05d}-" + "A" * PADDING, "1")])

    grown, answered = growth(
        fresh_gateway, [request(0)] * 200, [request(n) for n in range(1, DISTINCT + 1)]
    )

    assert answered == {404}
    assert grown < BOUND, f"the gateway grew by {grown / MIB:.1f} MiB"


def test_distinct_long_invalid_hosts_leave_no_trace(
    fresh_gateway: GatewayProcess, services: Fleet
) -> None:
    token = mint(sub="memo-hosts")
    auth = [("Authorization", f"Bearer {token}")]

    def request(n: int) -> bytes:
        host = f"h{n:05d}_" + "!" * PADDING  # not a host name: kept as it came, marked invalid
        return build_request("GET", "/api/v1/events/1", auth, host=host)

    grown, answered = growth(
        fresh_gateway, [request(0)] * 200, [request(n) for n in range(1, DISTINCT + 1)]
    )

    assert answered == {200}
    assert grown < BOUND, f"the gateway grew by {grown / MIB:.1f} MiB"


def test_distinct_long_response_field_names_leave_no_trace(
    fresh_gateway: GatewayProcess, services: Fleet
) -> None:
    ticket = services["ticket"]
    for n in range(DISTINCT + 1):
        field = (f"X-Svc-{n:05d}-" + "B" * PADDING, "1")
        ticket.respond(Reply(headers=(field,), body=b"{}"), path=f"/api/v1/tickets/{n}")
    auth = [("Authorization", f"Bearer {mint(sub='memo-fields')}")]

    def request(n: int) -> bytes:
        return build_request("GET", f"/api/v1/tickets/{n}", auth)

    grown, answered = growth(
        fresh_gateway, [request(0)] * 200, [request(n) for n in range(1, DISTINCT + 1)]
    )

    assert answered == {200}
    assert grown < BOUND, f"the gateway grew by {grown / MIB:.1f} MiB"


# A path segment as long as an attacker likes within the head limit: ~7 KiB, as measured.
LONG_SEGMENT = 7000
MANY = 5000


def test_distinct_long_resource_paths_leave_no_trace(
    fresh_gateway: GatewayProcess, services: Fleet
) -> None:
    """Each cached GET remembers its resource's generation; the resource is named by the first
    path segment, so a long one must not be what the memo keeps (34 MiB for 5,000 before)."""
    services["event"].respond(Reply(status=404, body=b"{}"))
    auth = [("Authorization", f"Bearer {mint(sub='memo-resources')}")]

    def request(n: int) -> bytes:
        return build_request("GET", f"/api/v1/events/{n:05d}-" + "R" * LONG_SEGMENT, auth)

    grown, answered = growth(
        fresh_gateway, [request(0)] * 200, [request(n) for n in range(1, MANY + 1)]
    )

    assert answered == {404}
    assert grown < BOUND, f"the gateway grew by {grown / MIB:.1f} MiB"


def test_distinct_long_venue_ids_are_refused_unlooked_up_and_leave_no_trace(
    fresh_gateway: GatewayProcess, services: Fleet
) -> None:
    """No venue id is 7 KiB long (they are UUIDs): such an id is refused as an unknown venue is,
    without asking the venue service, and nothing is remembered of it (34 MiB for 5,000 before,
    each one a lookup whose "no such venue" was cached)."""
    services["venue"].respond(Reply(status=404, body=b"{}"))
    auth = [("Authorization", f"Bearer {mint(sub='memo-venues')}")]

    def request(n: int) -> bytes:
        return build_request("GET", f"/api/v1/venues/{n:05d}-" + "V" * LONG_SEGMENT, auth)

    grown, answered = growth(
        fresh_gateway, [request(0)] * 200, [request(n) for n in range(1, MANY + 1)]
    )

    assert answered == {403}
    assert grown < BOUND, f"the gateway grew by {grown / MIB:.1f} MiB"
    assert services["venue"].requests == []
