"""Aggregates against a real gateway, with recording upstreams acting as the event, venue,
ticket, marketplace, auth, order and notification services.

The module's gateway shortens the seed's deadlines (the event details aggregate: 1.5 s, its
optional sources 300 ms) and declares a third aggregate in configuration only.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from support.assertions import assert_nothing_reached, assert_problem
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint
from support.upstream import RecordedRequest, RecordingUpstream, Reply

TOKEN = mint(sub="fan@1", tenant_id="tenant-a", role="customer")
EVENT = {"id": "e1", "venueId": "v 1", "name": "Concert"}
VENUE = {"id": "v 1", "tenantId": "tenant-a", "name": "Hall"}  # the caller's tenant's
AVAILABILITY = {"available": 120}
LISTINGS = [{"id": "l1", "price": 50}]
AGGREGATE_TIMEOUT_S = 1.5
OPTIONAL_TIMEOUT_S = 0.3
SLACK_S = 0.7


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {
        "aggregates": {
            "event-details": {
                "timeout_ms": int(AGGREGATE_TIMEOUT_S * 1000),
                "sources": {
                    "availability": {"timeout_ms": int(OPTIONAL_TIMEOUT_S * 1000)},
                    "listings": {"timeout_ms": int(OPTIONAL_TIMEOUT_S * 1000)},
                },
            },
            "event-card": {
                "path": "/event-cards/{eventId}",
                "auth": "optional",
                "sources": {
                    "event": {
                        "service": "event",
                        "path": "/api/v1/events/{eventId}",
                        "required": True,
                    }
                },
            },
            # Declared here only: no code knows about it.
            "venue-overview": {
                "path": "/venues/{venueId}/overview",
                "timeout_ms": 2000,
                "sources": {
                    "venue": {
                        "service": "venue",
                        "path": "/api/v1/venues/{venueId}",
                        "required": True,
                    },
                    "events": {
                        "service": "event",
                        "path": "/api/v1/events?venue={venueId}&tenant={user.tenantId}",
                        "timeout_ms": 500,
                        "fallback": {"items": []},
                    },
                },
            },
        }
    }


def json_reply(document: object, **kwargs: Any) -> Reply:
    return Reply(body=json.dumps(document).encode(), **kwargs)


@pytest.fixture
def fleet(services: Fleet) -> Fleet:
    """The event details' services answering normally."""
    services["event"].respond(json_reply(EVENT), path="/api/v1/events/e1")
    services["venue"].respond(json_reply(VENUE), path="/api/v1/venues/v%201")
    services["ticket"].respond(
        json_reply(AVAILABILITY), path="/api/v1/tickets/events/e1/availability"
    )
    services["marketplace"].respond(json_reply(LISTINGS), path="/api/v1/marketplace/listings")
    return services


def source_calls(upstream: RecordingUpstream) -> list[RecordedRequest]:
    """Calls made for the caller (they carry its token), not the gateway's venue lookups."""
    return [r for r in upstream.requests if r.header("authorization") is not None]


def only(requests: list[RecordedRequest]) -> RecordedRequest:
    assert len(requests) == 1, requests
    return requests[0]


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {key: entry["status"] for key, entry in document["meta"]["sources"].items()}


def test_event_details_merge_every_source_with_metadata(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = gateway.get("/api/v1/aggregate/events/e1", token=TOKEN)

    assert response.status == 200, response.body
    assert response.header("content-type") == "application/json"
    document = response.json()
    assert document["data"] == {
        "event": EVENT,
        "venue": VENUE,
        "availability": AVAILABILITY,
        "listings": LISTINGS,
    }
    assert statuses(document) == dict.fromkeys(("event", "venue", "availability", "listings"), "ok")
    assert document["meta"]["complete"] is True
    assert all(e["duration_ms"] >= 0 for e in document["meta"]["sources"].values())
    # The venue's id came from the event's answer, encoded as one segment.
    assert [r.target for r in source_calls(fleet["venue"])] == ["/api/v1/venues/v%201"]
    assert fleet["marketplace"].only_request().target == "/api/v1/marketplace/listings?eventId=e1"


def test_a_slow_optional_source_falls_back_within_its_own_timeout(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    path = "/api/v1/tickets/events/e1/availability"
    fleet["ticket"].respond(json_reply(AVAILABILITY, delay_s=2.0), path=path)

    started = time.monotonic()
    response = gateway.get("/api/v1/aggregate/events/e1", token=TOKEN)
    elapsed = time.monotonic() - started

    assert response.status == 200, response.body
    document = response.json()
    assert document["data"]["availability"] is None  # the seed's fallback
    assert document["data"]["listings"] == LISTINGS
    availability = document["meta"]["sources"]["availability"]
    assert availability["status"] == "fallback"
    assert "300 ms" in availability["error"]
    assert document["meta"]["complete"] is False
    assert elapsed < OPTIONAL_TIMEOUT_S + SLACK_S


def test_a_failing_required_source_fails_the_aggregate_with_its_metadata(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    # The venue's owner is looked up (and cached) first: only the source call itself fails.
    assert gateway.get("/api/v1/aggregate/events/e1", token=TOKEN).status == 200
    fleet["venue"].respond(json_reply({"error": "down"}, status=500), path="/api/v1/venues/v%201")

    response = gateway.get("/api/v1/aggregate/events/e1", token=TOKEN)

    problem = assert_problem(response, 502)
    meta: Any = problem["meta"]
    assert meta["sources"]["event"]["status"] == "ok"
    assert meta["sources"]["venue"]["status"] == "failed"
    assert "venue" in meta["sources"]["venue"]["error"]
    assert meta["complete"] is False
    assert "data" not in problem


def test_a_value_that_would_change_the_path_is_refused_not_sent(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    fleet["event"].respond(json_reply({**EVENT, "venueId": "../admin"}), path="/api/v1/events/e1")

    response = gateway.get("/api/v1/aggregate/events/e1", token=TOKEN)

    problem = assert_problem(response, 502)
    assert "cannot be a path segment" in str(problem["detail"])
    assert not fleet["venue"].requests


def test_a_required_source_that_does_not_know_the_event_is_404(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    fleet["event"].respond(json_reply({"error": "no such event"}, status=404))

    response = gateway.get("/api/v1/aggregate/events/nope", token=TOKEN)

    problem = assert_problem(response, 404)
    assert statuses(problem)["event"] == "failed"
    assert not fleet["venue"].requests  # it needed the event's venueId


def test_a_slow_required_source_is_504_within_the_aggregate_deadline(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    fleet["event"].respond(json_reply(EVENT, delay_s=5.0), path="/api/v1/events/e1")

    started = time.monotonic()
    response = gateway.get("/api/v1/aggregate/events/e1", token=TOKEN)
    elapsed = time.monotonic() - started

    problem = assert_problem(response, 504)
    assert statuses(problem)["event"] == "failed"
    assert statuses(problem)["venue"] == "skipped"
    assert elapsed < AGGREGATE_TIMEOUT_S + SLACK_S
    deadline = int(fleet["event"].requests[0].header("x-request-deadline-ms") or 0)
    assert 0 < deadline <= AGGREGATE_TIMEOUT_S * 1000


def test_without_a_token_it_is_401_and_no_source_is_called(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = gateway.get("/api/v1/aggregate/events/e1")

    assert_problem(response, 401)
    assert_nothing_reached(fleet)


def test_every_source_call_carries_the_callers_identity(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    response = gateway.get(
        "/api/v1/aggregate/events/e1",
        token=TOKEN,
        headers={"X-Tenant-Id": "tenant-forged", "X-User-Id": "someone-else"},
    )

    assert response.status == 200, response.body
    names = ("event", "venue", "ticket", "marketplace")
    calls: list[RecordedRequest] = [only(source_calls(fleet[name])) for name in names]
    for call in calls:
        assert call.header_values("x-tenant-id") == ["tenant-a"], call.headers
        assert call.header_values("x-user-id") == ["fan@1"]
        assert call.header_values("x-user-role") == ["customer"]
        assert call.header("x-request-id") == response.header("x-request-id")
        assert call.header("x-gateway-internal") == "true"
        assert call.header("authorization") == f"Bearer {TOKEN}"
        assert 0 < int(call.header("x-request-deadline-ms") or 0) <= AGGREGATE_TIMEOUT_S * 1000


def test_the_dashboard_is_the_callers_own(gateway: GatewayProcess, services: Fleet) -> None:
    services["auth"].respond(json_reply({"id": "fan@1"}), path="/api/v1/users/fan%401")
    services["ticket"].respond(json_reply([{"id": "t1"}]), path="/api/v1/tickets/users/fan%401")
    services["order"].respond(json_reply([{"id": "o1"}]))
    services["notification"].respond(json_reply([]))

    response = gateway.get("/api/v1/aggregate/dashboard", token=TOKEN)

    assert response.status == 200, response.body
    document = response.json()
    assert document["data"] == {
        "profile": {"id": "fan@1"},
        "tickets": [{"id": "t1"}],
        "orders": [{"id": "o1"}],
        "notifications": [],
    }
    assert services["order"].only_request().target == "/api/v1/orders?userId=fan%401"
    assert services["notification"].only_request().target == (
        "/api/v1/notifications?userId=fan%401"
    )


def test_an_aggregate_declared_only_in_configuration_works(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["venue"].respond(json_reply(VENUE), path="/api/v1/venues/hall%201")
    services["event"].respond(Reply(status=503, body=b"{}"))

    response = gateway.get("/api/v1/aggregate/venues/hall%201/overview", token=TOKEN)

    assert response.status == 200, response.body
    document = response.json()
    assert document["data"] == {"venue": VENUE, "events": {"items": []}}
    assert statuses(document) == {"venue": "ok", "events": "fallback"}
    targets = [r.target for r in services["event"].requests]
    assert targets[0] == "/api/v1/events?venue=hall%201&tenant=tenant-a"


def test_paths_that_fit_no_aggregate_are_404(gateway: GatewayProcess, fleet: Fleet) -> None:
    for path in ("/api/v1/aggregate/events", "/api/v1/aggregate/events/e1/more"):
        assert_problem(gateway.get(path, token=TOKEN), 404)
    assert_nothing_reached(fleet)


def test_an_optional_auth_aggregate_serves_anonymous_callers_without_identity(
    gateway: GatewayProcess, fleet: Fleet
) -> None:
    anonymous = gateway.get("/api/v1/aggregate/event-cards/e1")
    assert anonymous.status == 200, anonymous.body
    assert anonymous.json()["data"] == {"event": EVENT}
    assert "x-user-id" not in fleet["event"].only_request().header_names()

    signed_in = gateway.get("/api/v1/aggregate/event-cards/e1", token=TOKEN)
    assert signed_in.status == 200, signed_in.body
    assert fleet["event"].wait_for_requests(2)[1].header("x-user-id") == "fan@1"

    assert_problem(gateway.get("/api/v1/aggregate/event-cards/e1", token="not-a-token"), 401)
