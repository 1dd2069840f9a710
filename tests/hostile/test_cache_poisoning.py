"""Cache poisoning against the response cache: an answer made for one venue's domain, one
origin, one user or a request with a body must never be served to another request.

Two white-label domains are set up against the recording venue upstream acting as
venue-service (as in the tenancy tests): tickets.venue-a.com is venue-a of tenant-a,
tickets.venue-b.com is venue-b of tenant-b. Every answer the search or event upstream makes
echoes its request id, so the test can tell for which request (and so which venue, host or
user) a cached answer was made.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.client import RawConnection, RawResponse, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint
from support.upstream import RecordingUpstream, Reply

SHARED_MINUTE = (("Cache-Control", "s-maxage=60"),)
HOST_A, HOST_B = "tickets.venue-a.com", "tickets.venue-b.com"
DOMAINS = {HOST_A: ("venue-a", "tenant-a"), HOST_B: ("venue-b", "tenant-b")}
# Platform hosts: never looked up, so no venue; only the host tells them apart.
PLATFORM_A, PLATFORM_B = "www.tickettoken.com", "shop.tickettoken.com"
KEEP_ALIVE_ROUNDS = 25
_ids = itertools.count(1)


def fresh(name: str) -> str:
    """A search path of its own: the module's gateway keeps its cache between tests."""
    return f"/api/v1/search/{name}-{next(_ids)}"


def act_as_venue_service(venue: RecordingUpstream) -> None:
    venue.respond(Reply(status=404, body=b'{"error": "not found"}'))
    for host, (venue_id, tenant_id) in DOMAINS.items():
        document = json.dumps({"venueId": venue_id, "tenantId": tenant_id}).encode()
        venue.respond(Reply(body=document), path=f"/api/v1/branding/domain/{host}")


@pytest.fixture
def fleet(services: Fleet) -> Fleet:
    act_as_venue_service(services["venue"])
    return services


def made_for(upstream: RecordingUpstream, response: RawResponse, header: str) -> str | None:
    """``header`` as the upstream received it in the request this answer was made for."""
    request_id = response.json()["request_id"]
    for request in upstream.requests:
        if request.header("x-request-id") == request_id:
            return request.header(header)
    raise AssertionError(f"no upstream request {request_id}")


def x_cache(responses: list[RawResponse]) -> list[str | None]:
    return [r.header("x-cache") for r in responses]


# --- item 1: the key holds the client-facing origin and the venue ---------------------------------


def test_an_anonymous_answer_on_one_venue_domain_is_never_served_on_another(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    fleet["search"].respond(Reply(headers=SHARED_MINUTE))
    target = fresh("white-label")

    answers = [gateway.get(target, host=host) for host in (HOST_A, HOST_B, HOST_A, HOST_B)]

    assert [r.status for r in answers] == [200] * 4
    assert x_cache(answers) == ["MISS", "MISS", "HIT", "HIT"]
    venues = [made_for(fleet["search"], r, "x-venue-id") for r in answers]
    assert venues == ["venue-a", "venue-b", "venue-a", "venue-b"]


def test_keep_alive_clients_of_two_venues_each_get_their_own_venues_answers(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    fleet["search"].respond(Reply(headers=SHARED_MINUTE))
    targets = [fresh("busy") for _ in range(5)]
    seen: dict[str, list[str | None]] = {HOST_A: [], HOST_B: []}

    with RawConnection(gateway.port) as a, RawConnection(gateway.port) as b:
        for round_number in range(KEEP_ALIVE_ROUNDS):
            target = targets[round_number % len(targets)]
            for host, connection in ((HOST_A, a), (HOST_B, b)):
                connection.send(build_request("GET", target, host=host))
                response = connection.read_response()
                assert response.status == 200, response.body
                seen[host].append(made_for(fleet["search"], response, "x-venue-id"))

    assert set(seen[HOST_A]) == {"venue-a"} and set(seen[HOST_B]) == {"venue-b"}
    assert len(fleet["search"].requests) == 2 * len(targets)  # one miss per venue and path


@pytest.mark.parametrize("vary", ["X-Forwarded-Host", "Host", "X-Venue-Id"])
@pytest.mark.parametrize(
    "hosts", [(HOST_A, HOST_B), (PLATFORM_A, PLATFORM_B)], ids=["venues", "platform"]
)
def test_vary_on_a_header_the_gateway_rewrites_is_one_variant_per_value(
    gateway: GatewayProcess, fleet: Fleet, vary: str, hosts: tuple[str, str]
) -> None:
    fleet["search"].respond(Reply(headers=(*SHARED_MINUTE, ("Vary", vary))))
    target = fresh("vary")
    first, second = hosts

    answers = [gateway.get(target, host=host) for host in (first, second, first, second)]

    assert x_cache(answers) == ["MISS", "MISS", "HIT", "HIT"]
    made = [made_for(fleet["search"], r, "x-forwarded-host") for r in answers]
    assert made == [first, second, first, second]


def test_vary_on_the_identity_the_gateway_sends_keeps_users_apart(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    # A shared (not per-user) route: the service marks the answer shareable but says that it
    # depends on the user and the role it was told.
    fleet["event"].respond(Reply(headers=(*SHARED_MINUTE, ("Vary", "X-User-Id, X-User-Role"))))
    target = f"/api/v1/events/vary-{next(_ids)}"
    alice = mint(sub="alice", tenant_id="tenant-a", role="customer")
    bob = mint(sub="bob", tenant_id="tenant-a", role="customer")
    boss = mint(sub="alice", tenant_id="tenant-a", role="venue_admin")

    answers = [gateway.get(target, token=t) for t in (alice, bob, boss, alice, bob, boss)]

    assert x_cache(answers) == ["MISS", "MISS", "MISS", "HIT", "HIT", "HIT"]
    users = [made_for(fleet["event"], r, "x-user-id") for r in answers]
    roles = [made_for(fleet["event"], r, "x-user-role") for r in answers]
    assert users == ["alice", "bob", "alice"] * 2
    assert roles == ["customer", "customer", "venue_admin"] * 2


def test_vary_on_a_header_made_for_each_request_is_never_served_from_the_cache(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    fleet["search"].respond(Reply(headers=(*SHARED_MINUTE, ("Vary", "X-Request-Id"))))
    target = fresh("per-request")

    answers = [gateway.get(target) for _ in range(3)]

    assert x_cache(answers) == ["MISS"] * 3
    assert len(fleet["search"].requests) == 3


def test_a_client_cannot_pick_the_variant_with_a_header_the_gateway_replaces(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    # The client's own X-Venue-Id is removed: the variant is the venue the upstream was told.
    fleet["search"].respond(Reply(headers=(*SHARED_MINUTE, ("Vary", "X-Venue-Id"))))
    target = fresh("spoofed")

    honest = gateway.get(target, host=HOST_B)
    spoofed = gateway.get(target, host=HOST_A, headers={"X-Venue-Id": "venue-b"})

    assert x_cache([honest, spoofed]) == ["MISS", "MISS"]
    assert made_for(fleet["search"], spoofed, "x-venue-id") == "venue-a"


@pytest.fixture(scope="module")
def behind_a_proxy(
    service_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway that believes 127.0.0.1's X-Forwarded-* (as behind a load balancer)."""
    workdir: Path = tmp_path_factory.mktemp("proxied")
    env = {"TRUSTED_PROXIES": "127.0.0.1/32"}
    with running_gateway(workdir, service_fleet.urls(), env=env) as gateway:
        yield gateway


@pytest.mark.parametrize(
    "origins",
    [
        ({"X-Forwarded-Proto": "http"}, {"X-Forwarded-Proto": "https"}),
        ({"X-Forwarded-Port": "443"}, {"X-Forwarded-Port": "8443"}),
        ({"X-Forwarded-Host": PLATFORM_A}, {"X-Forwarded-Host": PLATFORM_B}),
    ],
    ids=["proto", "port", "host"],
)
def test_behind_a_proxy_each_origin_the_client_used_has_its_own_answers(
    behind_a_proxy: GatewayProcess, services: Fleet, origins: tuple[dict[str, str], ...]
) -> None:
    # A service building absolute links (or redirecting http to https) from what it was told.
    services["search"].respond(Reply(headers=SHARED_MINUTE))
    target = fresh("origin")
    first, second = origins

    answers = [behind_a_proxy.get(target, headers=h) for h in (first, second, first, second)]

    assert x_cache(answers) == ["MISS", "MISS", "HIT", "HIT"]
    (name,) = first
    made = [made_for(services["search"], r, name) for r in answers]
    assert made == [first[name], second[name], first[name], second[name]]


# --- item 4: a GET or HEAD with a body bypasses the cache ---------------------------------------


def raw_exchange(gateway: GatewayProcess, request: bytes, method: str = "GET") -> RawResponse:
    with RawConnection(gateway.port) as connection:
        connection.send(request)
        return connection.read_response(method)


def chunked_get(target: str, body: bytes, method: str = "GET") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n"
    return head.encode() + b"\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def test_an_answer_to_a_get_with_a_body_is_never_stored(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    fleet["search"].respond(Reply(headers=SHARED_MINUTE))
    target = fresh("with-body")

    with_body = gateway.get(target, body=b'{"filter": "mine"}')
    chunked = raw_exchange(gateway, chunked_get(target, b'{"filter": "theirs"}'))
    plain = [gateway.get(target) for _ in range(2)]

    assert x_cache([with_body, chunked, *plain]) == ["MISS", "MISS", "MISS", "HIT"]
    assert [r.body_length for r in fleet["search"].requests] == [18, 20, 0]
    assert plain[1].body == plain[0].body


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_get_or_head_with_a_body_is_never_served_from_the_cache(
    gateway: GatewayProcess, fleet: Fleet, method: str
) -> None:
    fleet["search"].respond(Reply(headers=SHARED_MINUTE))
    target = fresh("stored-first")
    stored = gateway.get(target)
    assert gateway.get(target).header("x-cache") == "HIT"

    sized = gateway.request(method, target, body=b"{}")
    chunked = raw_exchange(gateway, chunked_get(target, b"{}", method), method)

    assert x_cache([stored, sized, chunked]) == ["MISS", "MISS", "MISS"]
    assert [(r.method, r.body_length) for r in fleet["search"].requests] == [
        ("GET", 0), (method, 2), (method, 2),
    ]  # fmt: skip
    assert gateway.get(target).header("x-cache") == "HIT"
