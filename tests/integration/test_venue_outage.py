"""Venue-service failing after it has answered: white-label domains keep their venue, unknown
ones fail closed, and the platform's own hosts (tickettoken.com) never need it.

The gateway keeps no fresh domain answer (``domain_cache_ttl_ms: 0``) and retries a failing
lookup at once (``negative_ttl_ms: 0``): every request asks the recording venue upstream, so a
venue header that reaches the event upstream while venue-service fails can only have come from
the kept answer (stale-if-error), never from a fresh cache hit.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.assertions import assert_problem
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint
from support.upstream import Behaviour, RecordedRequest, RecordingUpstream, Reply

TOKEN_A = mint(sub="user-a", tenant_id="tenant-a", role="customer")
DOMAIN_PATH = "/api/v1/branding/domain/"
FAILURES = {
    "503": Reply(status=503, body=b'{"error": "unavailable"}'),
    "closed": Reply(behaviour=Behaviour.CLOSE_WITHOUT_RESPONSE),
}


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {"tenancy": {"domain_cache_ttl_ms": 0, "negative_ttl_ms": 0}}


def serve_domain(venue: RecordingUpstream, host: str, venue_id: str) -> None:
    document = {"venueId": venue_id, "tenantId": "tenant-a"}
    venue.respond(Reply(body=json.dumps(document).encode()), path=DOMAIN_PATH + host)


def lookups(venue: RecordingUpstream) -> list[str]:
    return [r.target for r in venue.requests if r.header("user-agent") == "api-gateway"]


def fail_everything(venue: RecordingUpstream, failure: Reply) -> None:
    venue.reset()
    venue.respond(failure)


def venue_of(request: RecordedRequest) -> list[str]:
    return request.header_values("x-venue-id")


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
def test_a_host_looked_up_before_keeps_its_venue_while_venue_service_fails(
    gateway: GatewayProcess, services: Fleet, failure: str
) -> None:
    host = f"tickets.kept-{failure}.com"
    serve_domain(services["venue"], host, f"venue-{failure}")
    assert gateway.get("/api/v1/events/1", token=TOKEN_A, host=host).status == 200

    fail_everything(services["venue"], FAILURES[failure])
    response = gateway.get("/api/v1/events/2", token=TOKEN_A, host=host)

    assert response.status == 200, response.body
    assert services["venue"].wait_for_requests(1)[0].target == DOMAIN_PATH + host  # it was asked
    first, second = services["event"].wait_for_requests(2)
    assert venue_of(first) == venue_of(second) == [f"venue-{failure}"]


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
def test_a_host_never_looked_up_fails_closed(
    gateway: GatewayProcess, services: Fleet, failure: str
) -> None:
    fail_everything(services["venue"], FAILURES[failure])

    response = gateway.get("/api/v1/events/1", token=TOKEN_A, host=f"never-seen-{failure}.com")

    assert_problem(response, 503)
    assert lookups(services["venue"]) != []
    assert services["event"].requests == []  # nothing forwarded


@pytest.mark.parametrize(
    "host", ["tickettoken.com", "www.tickettoken.com", "api.eu.tickettoken.com:8443", "localhost"]
)
def test_the_platforms_hosts_never_cause_a_lookup(
    gateway: GatewayProcess, services: Fleet, host: str
) -> None:
    fail_everything(services["venue"], FAILURES["503"])

    response = gateway.get("/api/v1/events/1", token=TOKEN_A, host=host)

    assert response.status == 200, response.body
    assert venue_of(services["event"].only_request()) == []
    assert lookups(services["venue"]) == []


def test_a_look_alike_of_the_platform_is_looked_up(
    gateway: GatewayProcess, services: Fleet
) -> None:
    fail_everything(services["venue"], FAILURES["503"])

    response = gateway.get("/api/v1/events/1", token=TOKEN_A, host="tickettoken.com.evil.org")

    assert_problem(response, 503)  # never seen, venue-service down: closed
    assert lookups(services["venue"]) != []
