"""Assertions about what a client sees, shared by the test modules."""

from __future__ import annotations

import re
import time

from support.client import RawResponse
from support.gateway import Fleet

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_FIELDS = {
    "type",
    "title",
    "status",
    "detail",
    "request_id",
    "error",
    "message",
    "correlationId",
    "timestamp",
}
# JavaScript's toISOString: what the original gateway's clients parse.
ISO_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
NOTHING_ARRIVES_WAIT_S = 0.2
HEALTH_AGENT = "api-gateway-health"  # what the gateway's active health checks send


def assert_problem(response: RawResponse, status: int) -> dict[str, object]:
    """The response is the gateway's own RFC 9457 problem with ``status``."""
    assert response.status == status, f"expected {status}, got {response.status}: {response.body!r}"
    content_type = response.header("content-type") or ""
    assert content_type.startswith(PROBLEM_CONTENT_TYPE), content_type
    document = response.json()
    assert set(document) >= PROBLEM_FIELDS, document
    assert document["status"] == status
    assert document["request_id"] == response.header("x-request-id")
    # The original gateway's members, which its clients display.
    assert document["error"] == document["title"]
    assert document["message"] == document["detail"]
    assert document["correlationId"] == document["request_id"]
    assert ISO_TIMESTAMP.fullmatch(str(document["timestamp"])), document["timestamp"]
    assert_gateway_stamped(response)
    return dict(document)


def assert_gateway_stamped(response: RawResponse) -> None:
    """Every response carries a request id (also as its correlation id) and a response time."""
    assert response.header("x-request-id"), response.headers
    assert response.header_values("x-correlation-id") == [response.header("x-request-id")]
    assert response.header("x-response-time") is not None, response.headers


def assert_nothing_reached(fleet: Fleet) -> None:
    """No upstream received any request on a client's behalf (after a short grace for a late
    arrival). A gateway's own active health checks are not requests of a client: they come on
    their own schedule (a module running longer than the first interval sees them)."""
    time.sleep(NOTHING_ARRIVES_WAIT_S)
    seen = {
        name: targets
        for name, u in fleet.upstreams.items()
        if (targets := [r.target for r in u.requests if r.header("user-agent") != HEALTH_AGENT])
    }
    assert not seen, f"requests reached upstreams: {seen}"
