"""Requests a gateway must refuse outright, and errors that still look like every other answer:
TRACE, HTTP/0.9, two Authorization headers, and the security headers on a 502."""

from __future__ import annotations

from pathlib import Path

from support.assertions import assert_nothing_reached, assert_problem
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url
from support.tokens import mint
from support.upstream import Reply


def test_trace_is_not_forwarded(gateway: GatewayProcess, services: Fleet) -> None:
    response = gateway.request("TRACE", "/api/v1/search/q")

    assert_problem(response, 405)
    assert "TRACE" not in (response.header("allow") or "")
    assert_nothing_reached(services)


def test_an_http_0_9_request_line_is_refused(gateway: GatewayProcess, services: Fleet) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send(b"GET /api/v1/search/q\r\n\r\n")
        answer = connection.read_until_closed(5.0)

    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    assert_nothing_reached(services)


def test_two_authorization_headers_are_refused(gateway: GatewayProcess, services: Fleet) -> None:
    headers = [("Authorization", f"Bearer {mint()}"), ("Authorization", "Bearer other")]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", "/api/v1/tickets/1", headers))
        response = connection.read_response()

    assert_problem(response, 401)
    assert (response.header("www-authenticate") or "").startswith("Bearer")
    assert_nothing_reached(services)


def test_an_error_response_carries_the_security_headers(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/nowhere")

    assert_problem(response, 404)
    assert response.header("x-content-type-options") == "nosniff"
    assert response.header("strict-transport-security")


def test_a_502_carries_the_security_headers(service_fleet: Fleet, tmp_path: Path) -> None:
    urls = service_fleet.urls() | {"search": closed_port_url()}
    with running_gateway(tmp_path, urls) as gateway:
        response = gateway.get("/api/v1/search/q")

    assert_problem(response, 502)
    assert response.header("x-frame-options") == "SAMEORIGIN"


def test_security_headers_follow_the_configuration(service_fleet: Fleet, tmp_path: Path) -> None:
    config = {
        "security_headers": {
            "content-security-policy": "default-src 'none'",
            "x-frame-options": None,
            "permissions-policy": "camera=()",
        }
    }
    with running_gateway(tmp_path, service_fleet.urls(), config) as gateway:
        answered = gateway.get("/api/v1/search/q")
        refused = gateway.get("/api/v1/nowhere")

    for response in (answered, refused):
        assert response.header("content-security-policy") == "default-src 'none'"
        assert response.header("x-frame-options") is None
        assert response.header("permissions-policy") == "camera=()"
        assert response.header("x-content-type-options") == "nosniff"


def test_an_upstream_x_powered_by_is_not_passed_on(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["search"].respond(Reply(headers=(("X-Powered-By", "Express"),), body=b"{}"))

    response = gateway.get("/api/v1/search/q")

    assert response.status == 200
    assert response.header("x-powered-by") is None
