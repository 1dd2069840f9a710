"""CORS against the real gateway: preflights answered at the edge (no token, no upstream), the
allow-list echoed with credentials, everyone else refused, and Vary: Origin for caches."""

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
    return {"CORS_ORIGINS": f"{APP},https://venue.example"}


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
    assert headers["access-control-max-age"] == "600"
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


def test_without_configured_origins_there_is_no_cors(service_fleet: Fleet, tmp_path: Path) -> None:
    with running_gateway(tmp_path, service_fleet.urls()) as gateway:
        response = gateway.get("/api/v1/events/1", token=mint(), headers=[("Origin", APP)])

    assert "access-control-allow-origin" not in dict(response.headers)


def test_any_origin_with_credentials_does_not_start(service_fleet: Fleet, tmp_path: Path) -> None:
    gateway = launch_gateway(tmp_path, service_fleet.urls(), env={"CORS_ORIGINS": "*"})
    assert run_until_exit(gateway) == 1
    assert "cors_origins" in gateway.stderr()
