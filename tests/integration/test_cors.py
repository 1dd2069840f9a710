"""CORS against the real gateway: preflights answered at the edge (no token, no upstream), the
allow-list (exact origins and a ``*.domain`` pattern) echoed with credentials, everyone else
refused, look-alike domains included, and Vary: Origin for caches."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.assertions import assert_problem
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess, launch_gateway, run_until_exit, running_gateway
from support.tokens import mint

APP = "https://app.tickettoken.io"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def gateway_extra_env() -> dict[str, str]:
    return {"CORS_ORIGINS": f"{APP},https://venue.example,*.tickettoken.com"}


def preflight(gateway: GatewayProcess, origin: str) -> RawResponse:
    return gateway.request(
        "OPTIONS",
        "/api/v1/tickets/purchase",
        headers=[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization, content-type"),
        ],
    )


def test_a_preflight_from_a_listed_origin_is_answered_by_the_gateway(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = preflight(gateway, APP)

    assert response.status == 204
    headers = dict(response.headers)
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-credentials"] == "true"
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "authorization, content-type"
    assert headers["access-control-max-age"] == "86400"
    assert "Origin" in headers["vary"]
    assert services.total_requests() == 0


def test_a_preflight_from_another_origin_is_refused(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = preflight(gateway, EVIL)

    assert_problem(response, 403)
    assert "access-control-allow-origin" not in dict(response.headers)
    assert services.total_requests() == 0


def test_a_listed_origin_gets_its_answer_readable(gateway: GatewayProcess, services: Fleet) -> None:
    response = gateway.get("/api/v1/events/1", token=mint(), headers=[("Origin", APP)])

    headers = dict(response.headers)
    assert response.status == 200
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-credentials"] == "true"
    assert "x-request-id" in headers["access-control-expose-headers"]
    assert "Origin" in headers["vary"]


def test_another_origin_gets_no_cors_grant_but_caches_are_told(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/events/1", token=mint(), headers=[("Origin", EVIL)])

    headers = dict(response.headers)
    assert response.status == 200  # the browser, not the gateway, withholds the answer
    assert "access-control-allow-origin" not in headers
    assert "Origin" in headers["vary"]


@pytest.mark.parametrize(
    "origin",
    ["https://tickettoken.com", "https://shop.tickettoken.com", "https://a.b.tickettoken.com"],
)
def test_a_pattern_allows_the_domain_and_its_subdomains_with_credentials(
    gateway: GatewayProcess, services: Fleet, origin: str
) -> None:
    answer = preflight(gateway, origin)
    assert answer.status == 204
    assert dict(answer.headers)["access-control-allow-origin"] == origin
    assert dict(answer.headers)["access-control-max-age"] == "86400"

    response = gateway.get("/api/v1/events/1", token=mint(), headers=[("Origin", origin)])

    headers = dict(response.headers)
    assert response.status == 200
    assert headers["access-control-allow-origin"] == origin
    assert headers["access-control-allow-credentials"] == "true"
    exposed = headers["access-control-expose-headers"].split(", ")
    assert {"deprecation", "x-correlation-id", "ratelimit-remaining", "retry-after"} <= set(exposed)
    assert "Origin" in headers["vary"]


@pytest.mark.parametrize(
    "origin",
    [
        "https://eviltickettoken.com",
        "https://tickettoken.com.evil.org",
        "https://SHOP.tickettoken.com",
        "https://shop.tickettoken.com.",
        "https://shop.tickettoken.com:8443",
        "null",
    ],
)
def test_a_look_alike_of_a_pattern_is_refused(
    gateway: GatewayProcess, services: Fleet, origin: str
) -> None:
    assert_problem(preflight(gateway, origin), 403)

    response = gateway.get("/api/v1/events/1", token=mint(), headers=[("Origin", origin)])

    assert "access-control-allow-origin" not in dict(response.headers)
    assert "Origin" in dict(response.headers)["vary"]
    assert services.total_requests() == 1  # the GET only: no preflight reached a service


def test_an_error_answer_is_readable_by_a_pattern_origin(
    gateway: GatewayProcess, services: Fleet
) -> None:
    origin = "https://app.tickettoken.com"
    response = gateway.get("/api/v1/events/1", headers=[("Origin", origin)])  # no token

    assert_problem(response, 401)
    assert dict(response.headers)["access-control-allow-origin"] == origin
    assert services.total_requests() == 0


def test_without_configured_origins_there_is_no_cors(service_fleet: Fleet, tmp_path: Path) -> None:
    with running_gateway(tmp_path, service_fleet.urls()) as gateway:
        response = gateway.get("/api/v1/events/1", token=mint(), headers=[("Origin", APP)])

    assert "access-control-allow-origin" not in dict(response.headers)


def test_any_origin_with_credentials_does_not_start(service_fleet: Fleet, tmp_path: Path) -> None:
    gateway = launch_gateway(tmp_path, service_fleet.urls(), env={"CORS_ORIGINS": "*"})
    assert run_until_exit(gateway) == 1
    assert "cors_origins" in gateway.stderr()
