"""Routing: every /api/v1 prefix reaches its service with the full path and query unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from support.assertions import assert_nothing_reached, assert_problem
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint
from support.upstream import Reply


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    # Venue paths are answered by venue isolation first; it has tests of its own (test_tenancy).
    return {"tenancy": {"venue_isolation": False}}


ROUTES = [
    ("/auth", "auth"),
    ("/venues", "venue"),
    ("/events", "event"),
    ("/tickets", "ticket"),
    ("/payments", "payment"),
    ("/webhooks", "payment"),
    ("/marketplace", "marketplace"),
    ("/analytics", "analytics"),
    ("/notifications", "notification"),
    ("/compliance", "compliance"),
    ("/queue", "queue"),
    ("/search", "search"),
    ("/files", "file"),
    ("/monitoring", "monitoring"),
    ("/integrations", "integration"),
    ("/event", "event"),
    ("/ticket", "ticket"),
    ("/venue", "venue"),
]
POST_ONLY = {"/webhooks"}


def method_for(prefix: str) -> str:
    return "POST" if prefix in POST_ONLY else "GET"


def assert_only_service_saw(fleet: Fleet, service: str, target: str, method: str) -> None:
    request = fleet[service].only_request()
    assert (request.method, request.target) == (method, target)
    others = {name: len(u.requests) for name, u in fleet.upstreams.items() if name != service}
    assert not any(others.values()), f"other services were called: {others}"


@pytest.mark.parametrize(("prefix", "service"), ROUTES)
def test_each_prefix_reaches_its_service_with_the_path_unchanged(
    gateway: GatewayProcess, services: Fleet, prefix: str, service: str
) -> None:
    target = f"/api/v1{prefix}/some/item-42?x=1&y=two"
    method = method_for(prefix)
    body = b"{}" if method == "POST" else None

    response = gateway.request(method, target, token=mint(), body=body)

    assert response.status == 200, response.body
    assert response.json()["service"] == service
    assert_only_service_saw(services, service, target, method)


@pytest.mark.parametrize(("prefix", "service"), ROUTES)
def test_the_bare_prefix_is_routed_too(
    gateway: GatewayProcess, services: Fleet, prefix: str, service: str
) -> None:
    method = method_for(prefix)
    body = b"{}" if method == "POST" else None

    response = gateway.request(method, f"/api/v1{prefix}", token=mint(), body=body)

    assert response.status == 200, response.body
    assert_only_service_saw(services, service, f"/api/v1{prefix}", method)


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/ticketsX",
        "/api/v1/ticketsX/1",
        "/api/v1/tickets-old/1",
        "/api/v1/authx/login",
        "/api/v1/unknown/1",
        "/api/v2/tickets/1",
        "/api/v1",
        "/api/v1/",
        "/",
        "/tickets/1",
    ],
)
def test_paths_matching_no_whole_segment_prefix_are_not_found(
    gateway: GatewayProcess, services: Fleet, target: str
) -> None:
    response = gateway.get(target, token=mint())

    assert_problem(response, 404)
    assert_nothing_reached(services)


def test_singular_and_plural_prefixes_are_distinct_routes(
    gateway: GatewayProcess, services: Fleet
) -> None:
    assert gateway.get("/api/v1/ticket/7", token=mint()).status == 200
    assert gateway.get("/api/v1/tickets/7", token=mint()).status == 200

    targets = [request.target for request in services["ticket"].wait_for_requests(2)]
    assert targets == ["/api/v1/ticket/7", "/api/v1/tickets/7"]


def test_the_query_string_is_passed_through_byte_for_byte(
    gateway: GatewayProcess, services: Fleet
) -> None:
    target = "/api/v1/tickets/123?x=1&x=2&q=a%20b&empty=&flag&u=%E2%9C%93&p=a+b"

    assert gateway.get(target, token=mint()).status == 200

    assert services["ticket"].only_request().target == target


def test_the_upstream_status_headers_and_body_reach_the_client(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["event"].respond(
        Reply(status=201, headers=(("X-Custom-Reply", "kept"),), body=b'{"created": true}')
    )

    response = gateway.request("POST", "/api/v1/events", token=mint(), body=b"{}")

    assert response.status == 201
    assert response.header("x-custom-reply") == "kept"
    assert response.body == b'{"created": true}'


def test_an_upstream_error_status_is_passed_on_not_rewritten(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["venue"].respond(
        Reply(status=404, headers=(("Content-Type", "text/plain"),), body=b"no such venue")
    )

    response = gateway.get("/api/v1/venues/999", token=mint())

    assert response.status == 404
    assert response.body == b"no such venue"
    assert response.header("content-type") == "text/plain"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_are_forwarded_as_sent(
    gateway: GatewayProcess, services: Fleet, method: str
) -> None:
    body = b'{"a": 1}' if method in ("POST", "PUT", "PATCH") else None

    response = gateway.request(method, "/api/v1/tickets/5", token=mint(), body=body)

    assert response.status == 200, response.body
    request = services["ticket"].only_request()
    assert request.method == method
    assert request.body == (body or b"")
