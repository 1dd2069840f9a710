"""X-Correlation-ID: the request id under the name the platform's services log by, on every
forwarded request and every response; a client's own is replaced, and kept in the access log."""

from __future__ import annotations

import pytest
from support.assertions import assert_problem
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint
from support.upstream import Reply

from integration.test_access_log import line_for

TOKEN = mint(sub="user-42", tenant_id="tenant-7")


def test_a_forwarded_request_and_its_response_carry_the_request_id(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/search/q", headers=[("X-Request-ID", "trace-1")])

    assert response.status == 200, response.body
    assert response.header_values("x-correlation-id") == ["trace-1"]
    forwarded = services["search"].only_request()
    assert forwarded.header_values("x-correlation-id") == ["trace-1"]
    assert forwarded.header_values("x-request-id") == ["trace-1"]


def test_a_generated_request_id_is_the_correlation_id_too(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/search/q")

    request_id = response.header("x-request-id")
    assert request_id
    assert response.header_values("x-correlation-id") == [request_id]
    assert services["search"].only_request().header_values("x-correlation-id") == [request_id]


@pytest.mark.parametrize(
    "sent",
    [
        [("X-Correlation-ID", "client-chosen")],
        [("x-correlation-id", "one"), ("X-Correlation-Id", "two")],
    ],
    ids=["one", "two-lines"],
)
def test_a_clients_correlation_id_is_replaced_and_logged_as_the_clients(
    gateway: GatewayProcess, services: Fleet, sent: list[tuple[str, str]]
) -> None:
    response = gateway.get("/api/v1/search/q", headers=sent)

    request_id = response.header("x-request-id") or ""
    assert response.header_values("x-correlation-id") == [request_id]
    assert services["search"].only_request().header_values("x-correlation-id") == [request_id]
    line = line_for(gateway, request_id)
    assert line["client_correlation_id"] == sent[-1][1]


def test_a_request_without_one_logs_no_client_correlation_id(
    gateway: GatewayProcess, services: Fleet
) -> None:
    request_id = gateway.get("/api/v1/search/q").header("x-request-id") or ""

    assert "client_correlation_id" not in line_for(gateway, request_id)


def test_a_hostile_correlation_id_is_logged_escaped_and_bounded(
    gateway: GatewayProcess, services: Fleet
) -> None:
    hostile = '","level":"error' + "x" * 300
    request_id = gateway.get("/api/v1/search/q", headers=[("X-Correlation-ID", hostile)]).header(
        "x-request-id"
    )

    line = line_for(gateway, request_id or "")
    assert line["level"] == "info"
    assert line["client_correlation_id"] == hostile[:128]


def test_the_services_own_correlation_id_does_not_reach_the_client(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["search"].respond(Reply(headers=(("X-Correlation-ID", "service-made"),), body=b"{}"))

    response = gateway.get("/api/v1/search/q")

    assert response.header_values("x-correlation-id") == [response.header("x-request-id")]


@pytest.mark.parametrize(
    "target", ["/api/v1/nowhere", "/api/v1/tickets/1", "/health", "/live", "/health/ready"]
)
def test_errors_and_gateway_endpoints_carry_it(
    gateway: GatewayProcess, services: Fleet, target: str
) -> None:
    response = gateway.get(target, headers=[("X-Correlation-ID", "client")])

    assert response.header_values("x-correlation-id") == [response.header("x-request-id")]
    if response.status >= 400:
        document = assert_problem(response, response.status)
        assert document["correlationId"] == response.header("x-correlation-id")


def test_an_aggregate_and_its_source_requests_carry_it(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/aggregate/events/e1", token=TOKEN)

    request_id = response.header("x-request-id")
    assert response.header_values("x-correlation-id") == [request_id]
    sources = [r for name in ("event", "ticket") for r in services[name].requests]
    assert sources
    assert all(r.header_values("x-correlation-id") == [request_id] for r in sources)
