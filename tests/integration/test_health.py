"""Health endpoints on the traffic port: /health says healthy and since when, /live says it runs,
/ready says whether this gateway can serve: its dependency checks are reported, and make it
503 only when ``readiness.require`` lists them."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url


def test_health_reports_status_and_uptime_only(gateway: GatewayProcess) -> None:
    response = gateway.get("/health")

    assert response.status == 200
    assert (response.header("content-type") or "").startswith("application/json")
    document = response.json()
    assert set(document) == {"status", "uptime"}, document


def test_live_answers_200(gateway: GatewayProcess) -> None:
    assert gateway.get("/live").status == 200


def test_ready_answers_200_when_auth_and_venue_answer(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/ready")

    assert response.status == 200, response.body


@pytest.mark.parametrize("service", ["auth", "venue"])
def test_ready_stays_200_naming_the_dependency_that_is_down(
    service_fleet: Fleet, tmp_path: Path, service: str
) -> None:
    urls = service_fleet.urls() | {service: closed_port_url()}
    with running_gateway(tmp_path, urls) as gateway:
        response = gateway.get("/ready")

    assert response.status == 200, response.body
    assert response.json()["failed"] == [f"{service}-service"]
    assert response.json()["checks"][f"{service}-service"] == "failed"


@pytest.mark.parametrize("service", ["auth", "venue"])
def test_ready_answers_503_when_a_required_dependency_is_down(
    service_fleet: Fleet, tmp_path: Path, service: str
) -> None:
    urls = service_fleet.urls() | {service: closed_port_url()}
    config = {"readiness": {"require": [f"{service}-service"]}}
    with running_gateway(tmp_path, urls, config=config) as gateway:
        response = gateway.get("/ready")
        admin = gateway.admin_get("/ready")

    assert response.status == admin.status == 503
    assert (response.header("content-type") or "").startswith("application/")
    assert response.json()["failed"] == [f"{service}-service"]
    assert response.json()["required"] == [f"{service}-service"]
    assert admin.json()["checks"][f"{service}-service"] not in ("ok", "failed")


def test_ready_answers_503_when_redis_is_required_but_down(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    env = {"REDIS_URL": f"redis://{closed_port_url().removeprefix('http://')}/0"}
    config = {"readiness": {"require": ["redis"]}}
    with running_gateway(tmp_path, service_fleet.urls(), config=config, env=env) as gateway:
        response = gateway.get("/ready")

    assert response.status == 503
    assert "redis" in response.json()["failed"]


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


def test_health_ready_alias_answers_503_when_a_required_dependency_is_down(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    urls = service_fleet.urls() | {"auth": closed_port_url()}
    config = {"readiness": {"require": ["auth-service"]}}
    with running_gateway(tmp_path, urls, config=config) as gateway:
        response = gateway.get("/health/ready")

    assert response.status == 503
    assert "auth" in response.json()["failed"][0]
