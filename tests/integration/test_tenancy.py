"""White-label domains and venue isolation against a real gateway, with the recording venue
upstream acting as venue-service: it answers domain and venue lookups with JSON per path.

Two tenants throughout: tenant-a owns venue-a (custom domain tickets.venue-a.com), tenant-b
owns venue-b (tickets.venue-b.com). The gateway is shared by the module, so its caches are too:
tests that count lookups use names no other test uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.assertions import assert_nothing_reached, assert_problem
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url
from support.tokens import mint
from support.upstream import RecordedRequest, RecordingUpstream, Reply

DOMAINS = {
    "tickets.venue-a.com": ("venue-a", "tenant-a"),
    "tickets.venue-b.com": ("venue-b", "tenant-b"),
}
VENUES = {"venue-a": "tenant-a", "venue-b": "tenant-b", "venue-a2": "tenant-a"}
TOKEN_A = mint(sub="user-a", tenant_id="tenant-a", role="customer")
TOKEN_B = mint(sub="user-b", tenant_id="tenant-b", role="customer")
ADMIN_B = mint(sub="root", tenant_id="tenant-b", role="super_admin")


def json_reply(document: object) -> Reply:
    return Reply(body=json.dumps(document).encode())


def act_as_venue_service(venue: RecordingUpstream) -> None:
    """Known domains and venues answer JSON; anything else is 404 (unknown)."""
    venue.respond(Reply(status=404, body=b'{"error": "not found"}'))
    for host, (venue_id, tenant_id) in DOMAINS.items():
        # As venue-service's branding route answers: the venue's row and its branding.
        branded = {
            "venue": {"id": venue_id, "tenant_id": tenant_id, "name": "A venue"},
            "branding": {"primary_color": "#000000"},
        }
        venue.respond(json_reply(branded), path=f"/api/v1/branding/domain/{host}")
    for venue_id, tenant_id in VENUES.items():
        # A venue's row: its tenant as venue-service names the column.
        document = {"id": venue_id, "tenant_id": tenant_id, "name": f"{venue_id} hall"}
        venue.respond(json_reply(document), path=f"/api/v1/venues/{venue_id}")


@pytest.fixture
def fleet(services: Fleet) -> Fleet:
    act_as_venue_service(services["venue"])
    return services


def lookups(venue: RecordingUpstream) -> list[str]:
    """The targets of the gateway's own calls to venue-service (not proxied client requests)."""
    return [r.target for r in venue.requests if r.header("user-agent") == "api-gateway"]


def proxied(upstream: RecordingUpstream) -> list[RecordedRequest]:
    return [r for r in upstream.requests if r.header("user-agent") != "api-gateway"]


def venue_headers(request: RecordedRequest) -> tuple[list[str], list[str]]:
    return request.header_values("x-venue-id"), request.header_values("x-venue-tenant-id")


# --- white-label domains -------------------------------------------------------------------------


def test_a_venue_domain_forwards_its_venue_and_tenant(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = gateway.get("/api/v1/events/1", token=TOKEN_A, host="tickets.venue-a.com")

    assert response.status == 200, response.body
    request = fleet["event"].only_request()
    assert venue_headers(request) == (["venue-a"], ["tenant-a"])
    assert request.header_values("x-tenant-id") == ["tenant-a"]
    assert request.header("x-forwarded-host") == "tickets.venue-a.com"


def test_a_public_path_on_a_venue_domain_needs_no_token(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = gateway.get("/api/v1/search/jazz", host="tickets.venue-b.com")

    assert response.status == 200, response.body
    request = fleet["search"].only_request()
    assert venue_headers(request) == (["venue-b"], ["tenant-b"])
    assert request.header("x-tenant-id") is None


def test_another_tenants_token_on_a_venue_domain_is_403(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = gateway.get("/api/v1/events/1", token=TOKEN_B, host="tickets.venue-a.com")

    assert_problem(response, 403)
    assert not fleet["event"].requests


def test_an_admin_role_may_use_any_venue_domain(gateway: GatewayProcess, fleet: Fleet) -> None:
    response = gateway.get("/api/v1/events/1", token=ADMIN_B, host="tickets.venue-a.com")

    assert response.status == 200, response.body
    assert venue_headers(fleet["event"].only_request()) == (["venue-a"], ["tenant-a"])


def test_the_host_is_normalized_before_lookup_and_the_answer_is_cached(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    host = "shop.venue-c.com"
    fleet["venue"].respond(
        json_reply({"venueId": "venue-c", "tenantId": "tenant-a"}),
        path=f"/api/v1/branding/domain/{host}",
    )

    for written in ("SHOP.Venue-C.com.", "shop.venue-c.com:80", "shop.venue-c.com:443", host):
        response = gateway.get("/api/v1/events/1", token=TOKEN_A, host=written)
        assert response.status == 200, (written, response.body)

    assert lookups(fleet["venue"]) == [f"/api/v1/branding/domain/{host}"]
    requests = fleet["event"].wait_for_requests(4)
    assert [venue_headers(r) for r in requests] == [(["venue-c"], ["tenant-a"])] * 4


def test_an_unknown_host_is_the_platform_default_and_asked_about_once(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    for _ in range(3):
        response = gateway.get("/api/v1/events/1", token=TOKEN_B, host="unknown-venue.io")
        assert response.status == 200, response.body

    assert lookups(fleet["venue"]) == ["/api/v1/branding/domain/unknown-venue.io"]
    for request in fleet["event"].wait_for_requests(3):
        assert venue_headers(request) == ([], [])
        assert request.header_values("x-tenant-id") == ["tenant-b"]


@pytest.mark.parametrize(
    "host",
    ["gateway.test", "api.tickettoken.com", "tickettoken.com", "127.0.0.1:3000", "localhost"],
)
def test_platform_hosts_are_never_looked_up(
    gateway: GatewayProcess, fleet: Fleet, host: str
) -> None:
    assert gateway.get("/api/v1/events/1", token=TOKEN_A, host=host).status == 200

    assert lookups(fleet["venue"]) == []
    assert venue_headers(fleet["event"].only_request()) == ([], [])


def test_client_sent_venue_headers_never_reach_an_upstream(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    forged = [("X-Venue-Id", "venue-b"), ("x-venue-tenant-id", "tenant-b"), ("X-VENUE-X", "1")]

    assert gateway.get("/api/v1/events/1", headers=forged, token=TOKEN_A).status == 200
    assert (
        gateway.get(
            "/api/v1/events/2", headers=forged, token=TOKEN_A, host="tickets.venue-a.com"
        ).status
        == 200
    )

    on_platform, on_venue = fleet["event"].wait_for_requests(2)
    assert venue_headers(on_platform) == ([], [])
    assert "x-venue-x" not in on_venue.header_names()
    assert venue_headers(on_venue) == (["venue-a"], ["tenant-a"])


@pytest.mark.parametrize(
    "host", ["user@tickets.venue-a.com", "tickets.venue-a.com:99999", "venue..com", "ven_ue.com"]
)
@pytest.mark.parametrize(
    ("target", "token"), [("/api/v1/events/1", TOKEN_A), ("/api/v1/search/q", None)]
)
def test_a_malformed_host_is_400(
    gateway: GatewayProcess, fleet: Fleet, host: str, target: str, token: str | None
) -> None:
    response = gateway.get(target, token=token, host=host)

    document = assert_problem(response, 400)
    assert str(document["type"]).endswith("/invalid-host")
    assert_nothing_reached(fleet)


# --- venue isolation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["/api/v1/venues/venue-a", "/api/v1/venues/venue-a2/events", "/api/v1/venue/venue-a"]
)
def test_a_tenants_own_venue_is_allowed(gateway: GatewayProcess, fleet: Fleet, target: str) -> None:
    if target.count("/") > 4 or "/venue/" in target:  # not itself a venue lookup path: echo
        fleet["venue"].respond(Reply(), path=target)

    response = gateway.get(target, token=TOKEN_A)

    assert response.status == 200, response.body
    assert [r.target for r in proxied(fleet["venue"])] == [target]


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/venues/venue-b",
        "/api/v1/venues/venue-b/events",
        "/api/v1/venue/venue-b",
        "/api/v1/venues/no-such-venue",
        "/api/v1/venues/venue-a/../venue-b",
        "/api/v1/events?venueId=venue-b",
        "/api/v1/events?venueId=venue-a&venueId=venue-b",
        "/api/v1/events?venue%49d=venue-b",
        "/api/v1/tickets?venue_id[]=venue-b",
    ],
)
def test_another_tenants_or_an_unknown_venue_is_403(
    gateway: GatewayProcess, fleet: Fleet, target: str
) -> None:
    response = gateway.get(target, token=TOKEN_A)

    document = assert_problem(response, 403)
    assert "not available to this tenant" in str(document["detail"])
    assert all(not proxied(upstream) for upstream in fleet.upstreams.values())


def test_a_query_parameter_naming_the_own_venue_is_allowed(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = gateway.get("/api/v1/events?venueId=venue-b&page=2", token=TOKEN_B)

    assert response.status == 200, response.body
    assert fleet["event"].only_request().target == "/api/v1/events?venueId=venue-b&page=2"


def test_an_admin_role_may_name_any_venue(gateway: GatewayProcess, fleet: Fleet) -> None:
    response = gateway.get("/api/v1/venues/venue-a", token=ADMIN_B)

    assert response.status == 200, response.body
    assert lookups(fleet["venue"]) == []


def test_a_public_venue_path_needs_no_token_and_no_lookup(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    fleet["venue"].respond(Reply(), path="/api/v1/venues/health")

    assert gateway.get("/api/v1/venues/health").status == 200
    assert lookups(fleet["venue"]) == []


def test_venue_owners_are_cached_not_decisions(gateway: GatewayProcess, fleet: Fleet) -> None:
    fleet["venue"].respond(
        json_reply({"id": "venue-d", "tenantId": "tenant-a"}), path="/api/v1/venues/venue-d"
    )

    statuses = [
        gateway.get("/api/v1/venues/venue-d", token=token).status
        for token in (TOKEN_A, TOKEN_B, TOKEN_A, TOKEN_B)
    ]

    assert statuses == [200, 403, 200, 403]
    assert lookups(fleet["venue"]) == ["/api/v1/venues/venue-d"]
    assert [r.header("x-tenant-id") for r in proxied(fleet["venue"])] == ["tenant-a"] * 2


def test_two_tenants_interleaved_never_see_each_others_data(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    cases = [
        (token, target, host)
        for _ in range(10)
        for token, own, other, host in (
            (TOKEN_A, "venue-a", "venue-b", "tickets.venue-a.com"),
            (TOKEN_B, "venue-b", "venue-a", "tickets.venue-b.com"),
        )
        for target in (f"/api/v1/venues/{own}", f"/api/v1/venues/{other}", f"/api/v1/venues/{own}")
    ]

    def send(case: tuple[str, str, str]) -> tuple[str, str, str, int, bytes]:
        token, target, host = case
        response = gateway.get(target, token=token, host=host)
        return token, target, host, response.status, response.body

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(send, cases))

    for token, target, _host, status, body in outcomes:
        own = "venue-a" if token == TOKEN_A else "venue-b"
        if target.endswith(own):
            assert status == 200 and json.loads(body)["id"] == own, (target, body)
        else:
            assert status == 403, (target, body)
    for request in proxied(fleet["venue"]):
        tenant = request.header("x-tenant-id")
        owned = "venue-a" if tenant == "tenant-a" else "venue-b"
        assert request.path == f"/api/v1/venues/{owned}"
        assert venue_headers(request) == ([owned], [tenant])
    assert len(proxied(fleet["venue"])) == 40


# --- when venue-service cannot answer ------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_without_venue_service(
    service_fleet: Fleet, module_dir: Path
) -> Iterator[GatewayProcess]:
    urls = {**service_fleet.urls(), "venue": closed_port_url()}
    with running_gateway(module_dir, urls) as process:
        yield process


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("/api/v1/venues/venue-a", "gateway.test"),
        ("/api/v1/events?venueId=venue-a", "gateway.test"),
        ("/api/v1/events/1", "tickets.venue-a.com"),
        ("/api/v1/search/q", "tickets.venue-a.com"),
    ],
)
def test_venue_service_down_is_503_and_nothing_is_forwarded(
    gateway_without_venue_service: GatewayProcess, services: Fleet, target: str, host: str
) -> None:
    response = gateway_without_venue_service.get(target, token=TOKEN_A, host=host)

    assert_problem(response, 503)
    assert_nothing_reached(services)


def test_a_venue_service_answer_without_a_tenant_is_503(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    fleet["venue"].respond(json_reply({"id": "venue-e"}), path="/api/v1/venues/venue-e")

    assert_problem(gateway.get("/api/v1/venues/venue-e", token=TOKEN_A), 503)
    assert not proxied(fleet["venue"])
