"""Nothing internal on the traffic port: any client, loopback included, learns from /health and
/ready whether the gateway is healthy and ready, never instance addresses, pids, memory,
breakers or metrics (those are the admin listener's); /metrics is not served there unless
``server.public_metrics``; and no 502/503/504 the gateway answers names an internal address.

The outside client comes through a trusted proxy on loopback (X-Forwarded-For), as it would
through a load balancer in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url

OUTSIDE = [("X-Forwarded-For", "203.0.113.7")]
PROXY_ENV = {"TRUSTED_PROXIES": "127.0.0.1/32"}
BREAKER_CALLS = 20


@pytest.fixture(scope="module")
def dead_auth_url() -> str:
    return closed_port_url()


@pytest.fixture(scope="module")
def exposed(
    service_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory, dead_auth_url: str
) -> Iterator[GatewayProcess]:
    """A gateway behind a trusted proxy whose auth service is down (so /ready has a reason)."""
    urls = service_fleet.urls() | {"auth": dead_auth_url}
    with running_gateway(tmp_path_factory.mktemp("exposed"), urls, env=PROXY_ENV) as gateway:
        yield gateway


def address_of(url: str) -> str:
    return url.removeprefix("http://")


def assert_names_nothing_internal(response: RawResponse, *addresses: str) -> None:
    body = response.body.decode(errors="replace")
    for address in addresses:
        assert address not in body, body
        assert address.rpartition(":")[2] not in body, body  # not even the port
    assert "pid" not in body and "instances" not in body, body


def test_health_tells_any_client_only_status_and_uptime(
    exposed: GatewayProcess, service_fleet: Fleet
) -> None:
    outside = exposed.get("/health", headers=OUTSIDE)
    inside = exposed.get("/health")

    for answer in (outside, inside):
        assert answer.status == 200
        assert set(answer.json()) == {"status", "uptime"}
        assert_names_nothing_internal(answer, address_of(service_fleet["ticket"].url))
    assert {"workers", "services", "routes"} <= set(exposed.admin_get("/health").json())


def test_metrics_are_not_on_the_traffic_port_but_on_the_admin_listener(
    exposed: GatewayProcess,
) -> None:
    outside = exposed.get("/metrics", headers=OUTSIDE)
    inside = exposed.get("/metrics")
    admin = exposed.admin_get("/metrics")

    for answer in (outside, inside):
        assert answer.status == 404
        assert answer.header("content-type") == "application/problem+json"
        assert answer.json()["request_id"]
        assert b"gateway_" not in answer.body
    assert admin.status == 200
    assert b"gateway_requests_total" in admin.body


def test_public_metrics_serves_them_to_anyone(service_fleet: Fleet, tmp_path: Path) -> None:
    config = {"server": {"public_metrics": True}}
    with running_gateway(tmp_path, service_fleet.urls(), config=config, env=PROXY_ENV) as gateway:
        outside = gateway.get("/metrics", headers=OUTSIDE)

    assert outside.status == 200
    assert b"gateway_requests_total" in outside.body


def test_ready_tells_which_check_failed_but_no_reason_and_stays_ready(
    exposed: GatewayProcess, dead_auth_url: str
) -> None:
    outside = exposed.get("/ready", headers=OUTSIDE)
    inside = exposed.get("/ready")

    assert outside.status == inside.status == 200  # nothing is in readiness.require
    for answer in (outside, inside):
        assert answer.json()["failed"] == ["auth-service"]
        assert answer.json()["checks"]["auth-service"] == "failed"
        assert_names_nothing_internal(answer, address_of(dead_auth_url))
    # The admin listener tells why.
    admin = exposed.admin_get("/ready")
    assert admin.json()["checks"]["auth-service"] not in ("ok", "failed")


def test_a_502_for_an_unreachable_instance_does_not_name_it(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    dead = closed_port_url()
    config: dict[str, Any] = {"services": {"search": {"retry": {"attempts": 1}}}}
    urls = service_fleet.urls() | {"search": dead}
    with running_gateway(tmp_path, urls, config=config) as gateway:
        bad_gateway = gateway.get("/api/v1/search/anything", headers=OUTSIDE)
        answers = [gateway.get("/api/v1/search/anything") for _ in range(BREAKER_CALLS)]

    assert bad_gateway.status == 502
    assert_names_nothing_internal(bad_gateway, address_of(dead))
    circuit_open = [a for a in answers if a.status == 503]
    assert circuit_open, [a.status for a in answers]
    for answer in answers:
        assert_names_nothing_internal(answer, address_of(dead))


def test_admin_allow_decides_who_the_admin_listener_answers(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    config = {"admin": {"allow": ["10.0.0.0/8"]}}
    with running_gateway(tmp_path, service_fleet.urls(), config=config) as gateway:
        metrics = gateway.admin_get("/metrics")
        health = gateway.get("/health")

    assert metrics.status == 403
    assert metrics.header("content-type") == "application/problem+json"
    assert set(health.json()) == {"status", "uptime"}
