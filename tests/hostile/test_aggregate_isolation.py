"""Aggregates keep venues apart: every path an aggregate builds from data (the client's ids, a
field of another service's answer) passes venue isolation as a client's request to it would.

Two tenants: tenant-a owns venue-a, tenant-b owns venue-b. The event service knows one event per
venue, plus events whose venueId is hostile. The recording venue upstream answers the gateway's
ownership lookups and the aggregates' venue sources alike (both ``GET /api/v1/venues/{id}``);
the source calls are told apart by the caller's ``Authorization``, which lookups never carry.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.assertions import assert_problem
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint
from support.upstream import RecordedRequest, RecordingUpstream, Reply

TOKEN_A = mint(sub="user-a", tenant_id="tenant-a", role="customer")
ADMIN_A = mint(sub="root", tenant_id="tenant-a", role="super_admin")
VENUES = {"venue-a": "tenant-a", "venue-b": "tenant-b"}
EVENTS = {
    "e-a": "venue-a",
    "e-b": "venue-b",
    "e-unknown": "venue-nobody-has",
    "e-broken": "venue-broken",  # its ownership lookup fails
    "e-query": "venue-b?x=1",  # `?` must stay part of the id
    "e-encoded": "venue-b%2F..",  # an encoded slash must stay part of the id
    "e-dots": "..",
}


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {
        "aggregates": {
            # A client's id in a venue path, and an optional source naming a venue by query.
            "venue-overview": {
                "path": "/venues/{venueId}/overview",
                "sources": {
                    "venue": {
                        "service": "venue",
                        "path": "/api/v1/venues/{venueId}",
                        "required": True,
                    },
                    "events": {
                        "service": "event",
                        "path": "/api/v1/events?venueId={venueId}",
                        "timeout_ms": 1000,
                        "fallback": [],
                    },
                },
            },
            # Another service's answer in a query parameter that names a venue.
            "event-listings": {
                "path": "/event-listings/{eventId}",
                "sources": {
                    "event": {
                        "service": "event",
                        "path": "/api/v1/events/{eventId}",
                        "required": True,
                    },
                    "listings": {
                        "service": "marketplace",
                        "path": "/api/v1/marketplace/listings?venue_id={event.venueId}",
                        "timeout_ms": 1000,
                        "fallback": None,
                    },
                },
            },
        }
    }


def json_reply(document: object, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(document).encode())


@pytest.fixture
def fleet(services: Fleet) -> Fleet:
    venue = services["venue"]
    venue.respond(json_reply({"error": "not found"}, status=404))
    for venue_id, tenant_id in VENUES.items():
        document = {"id": venue_id, "tenantId": tenant_id, "name": f"{venue_id} hall"}
        venue.respond(json_reply(document), path=f"/api/v1/venues/{venue_id}")
    venue.respond(json_reply({"error": "down"}, status=500), path="/api/v1/venues/venue-broken")
    for event_id, venue_id in EVENTS.items():
        document = {"id": event_id, "venueId": venue_id}
        services["event"].respond(json_reply(document), path=f"/api/v1/events/{event_id}")
    services["event"].respond(json_reply([]), path="/api/v1/events")
    services["ticket"].respond(json_reply({"available": 1}))
    services["marketplace"].respond(json_reply([{"id": "l1"}]))
    return services


def source_calls(upstream: RecordingUpstream) -> list[RecordedRequest]:
    """Calls made for the client (they carry its token), not the gateway's own lookups."""
    return [r for r in upstream.requests if r.header("authorization") is not None]


def event_details(gateway: GatewayProcess, event_id: str, token: str = TOKEN_A) -> Any:
    return gateway.get(f"/api/v1/aggregate/events/{event_id}", token=token)


def test_the_event_details_of_another_tenants_venue_are_refused_like_the_venue_itself(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    direct = gateway.get("/api/v1/venues/venue-b", token=TOKEN_A)
    aggregated = event_details(gateway, "e-b")

    assert_problem(direct, 403)
    assert_problem(aggregated, 403)
    assert "venue-b" not in aggregated.body.decode()
    assert aggregated.json()["meta"]["sources"]["venue"]["status"] == "failed"
    assert source_calls(fleet["venue"]) == []  # the other tenant's venue was never fetched


def test_the_event_details_of_the_own_venue_are_served(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = event_details(gateway, "e-a")

    assert response.status == 200, response.body
    assert response.json()["data"]["venue"]["id"] == "venue-a"
    assert [r.target for r in source_calls(fleet["venue"])] == ["/api/v1/venues/venue-a"]


def test_an_admin_role_gets_any_venue_through_an_aggregate(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = event_details(gateway, "e-b", token=ADMIN_A)

    assert response.status == 200, response.body
    assert response.json()["data"]["venue"]["id"] == "venue-b"


@pytest.mark.parametrize(
    ("event_id", "status"),
    [
        ("e-unknown", 403),  # unknown venues are refused like another tenant's
        ("e-query", 403),  # `venue-b?x=1` is one (unknown) id, not venue-b with a query
        ("e-encoded", 403),  # `venue-b%2F..` likewise
        ("e-dots", 502),  # `..` cannot be written into the path at all
    ],
)
def test_an_unknown_or_malformed_venue_id_from_a_service_is_refused_and_never_fetched(
    gateway: GatewayProcess, fleet: Fleet, event_id: str, status: int
) -> None:
    response = event_details(gateway, event_id)

    assert_problem(response, status)
    assert source_calls(fleet["venue"]) == []


def test_a_venue_lookup_that_fails_fails_the_aggregate_closed(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = event_details(gateway, "e-broken")

    assert_problem(response, 503)
    assert source_calls(fleet["venue"]) == []


def test_a_venue_id_from_the_client_is_checked_in_the_path_and_in_the_query(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    foreign = gateway.get("/api/v1/aggregate/venues/venue-b/overview", token=TOKEN_A)
    own = gateway.get("/api/v1/aggregate/venues/venue-a/overview", token=TOKEN_A)

    assert_problem(foreign, 403)
    assert own.status == 200, own.body
    assert [r.target for r in source_calls(fleet["venue"])] == ["/api/v1/venues/venue-a"]
    assert [r.target for r in source_calls(fleet["event"])] == ["/api/v1/events?venueId=venue-a"]


def test_an_optional_source_naming_another_tenants_venue_falls_back_unsent(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = gateway.get("/api/v1/aggregate/event-listings/e-b", token=TOKEN_A)

    assert response.status == 200, response.body
    document = response.json()
    assert document["data"]["listings"] is None
    assert document["meta"]["sources"]["listings"]["status"] == "fallback"
    assert source_calls(fleet["marketplace"]) == []


def test_a_dot_segment_venue_id_is_refused_without_a_lookup(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    # A lookup of /api/v1/venues/.. would ask a venue service that resolves dot segments
    # about another resource, and take its answer for the venue's owner.
    for venue_id in ("..", "."):
        response = gateway.get(f"/api/v1/events?venueId={venue_id}", token=TOKEN_A)
        assert_problem(response, 403)

    assert fleet["venue"].requests == []
    assert fleet["event"].requests == []


def test_client_sent_venue_and_identity_headers_never_reach_a_source(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    forged = {"X-Venue-Id": "venue-b", "X-Venue-Tenant-Id": "tenant-b", "X-Tenant-Id": "tenant-b"}
    response = gateway.get("/api/v1/aggregate/events/e-a", token=TOKEN_A, headers=forged)

    assert response.status == 200, response.body
    for name in ("event", "venue", "ticket", "marketplace"):
        for call in source_calls(fleet[name]):
            assert call.header_values("x-tenant-id") == ["tenant-a"], call.headers
            assert "x-venue-id" not in call.header_names()
            assert "x-venue-tenant-id" not in call.header_names()
