"""Health endpoints: /health describes the process, /live says it runs, /ready says whether the
services it depends on answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url


def test_health_reports_status_uptime_and_memory(gateway: GatewayProcess) -> None:
    response = gateway.get("/health")

    assert response.status == 200
    assert (response.header("content-type") or "").startswith("application/json")
    document = response.json()
    assert {"status", "uptime", "memory"} <= set(document), document


def test_live_answers_200(gateway: GatewayProcess) -> None:
    assert gateway.get("/live").status == 200


def test_ready_answers_200_when_auth_and_venue_answer(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/ready")

    assert response.status == 200, response.body


@pytest.mark.parametrize("service", ["auth", "venue"])
def test_ready_answers_503_naming_the_dependency_that_is_down(
    service_fleet: Fleet, tmp_path: Path, service: str
) -> None:
    urls = service_fleet.urls() | {service: closed_port_url()}
    with running_gateway(tmp_path, urls) as gateway:
        response = gateway.get("/ready")

    assert response.status == 503
    assert (response.header("content-type") or "").startswith("application/")
    assert service in response.body.decode().lower()
    assert response.json()


def test_ready_answers_503_when_redis_is_configured_but_down(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    env = {"REDIS_URL": f"redis://{closed_port_url().removeprefix('http://')}/0"}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        response = gateway.get("/ready")

    assert response.status == 503
    assert "redis" in response.body.decode().lower()


def test_health_endpoints_need_no_token_and_are_not_proxied(
    gateway: GatewayProcess, services: Fleet
) -> None:
    for path in ("/health", "/live", "/ready"):
        assert gateway.get(path).status == 200
    assert services.total_requests() <= 2  # /ready may probe auth and venue, nothing else
    assert all(
        not upstream.requests
        for name, upstream in services.upstreams.items()
        if name not in ("auth", "venue")
    )


def test_the_original_gateways_health_paths_answer_as_live_and_ready(
    gateway: GatewayProcess, services: Fleet
) -> None:
    for alias, path in (("/health/live", "/live"), ("/health/ready", "/ready")):
        aliased, direct = gateway.get(alias), gateway.get(path)
        assert aliased.status == direct.status == 200, aliased.body
        assert aliased.json() == direct.json()
        assert aliased.header("content-type") == direct.header("content-type")
    # Never proxied: no service but the readiness probes' saw a request.
    assert all(
        not upstream.requests
        for name, upstream in services.upstreams.items()
        if name not in ("auth", "venue")
    )


def test_health_ready_alias_answers_503_when_a_dependency_is_down(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    urls = service_fleet.urls() | {"auth": closed_port_url()}
    with running_gateway(tmp_path, urls) as gateway:
        response = gateway.get("/health/ready")

    assert response.status == 503
    assert "auth" in response.json()["failed"][0]
