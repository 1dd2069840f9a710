"""Protection the gateway adds on its own: rate limits answer 429 with Retry-After, and a failing
service's circuit opens so callers get a fast 503 instead of waiting on it."""

from __future__ import annotations

from pathlib import Path

from support.assertions import assert_problem
from support.bodies import any_purchase
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url
from support.tokens import mint

GLOBAL_LIMIT = 5
PURCHASE_LIMIT = 5  # rate_limit.ticket_purchase.max in defaults.yaml
BREAKER_VOLUME = 10  # circuit_breaker.volume_threshold in defaults.yaml
BREAKER_ATTEMPTS = 15


def test_the_global_limit_answers_429_with_retry_after(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    env = {"RATE_LIMIT_MAX": str(GLOBAL_LIMIT)}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        service_fleet.reset()
        responses = [gateway.get("/api/v1/search/q") for _ in range(GLOBAL_LIMIT + 1)]

    assert [r.status for r in responses[:GLOBAL_LIMIT]] == [200] * GLOBAL_LIMIT
    assert_problem(responses[-1], 429)
    assert int(responses[-1].header("retry-after") or 0) >= 1
    assert len(service_fleet["search"].requests) == GLOBAL_LIMIT


def buy(gateway: GatewayProcess, token: str) -> RawResponse:
    return gateway.request("POST", "/api/v1/tickets/purchase", body=any_purchase(), token=token)


def test_ticket_purchases_are_limited_per_user(service_fleet: Fleet, tmp_path: Path) -> None:
    buyer, other_buyer = mint(sub="buyer-1"), mint(sub="buyer-2")
    with running_gateway(tmp_path, service_fleet.urls()) as gateway:
        service_fleet.reset()
        statuses = [buy(gateway, buyer).status for _ in range(PURCHASE_LIMIT)]
        refused = buy(gateway, buyer)
        other = buy(gateway, other_buyer)
        browsing = gateway.get("/api/v1/tickets/1", token=buyer)

    assert statuses == [200] * PURCHASE_LIMIT
    assert_problem(refused, 429)
    assert int(refused.header("retry-after") or 0) >= 1
    assert (other.status, browsing.status) == (200, 200)


def test_a_failing_service_opens_its_circuit(service_fleet: Fleet, tmp_path: Path) -> None:
    urls = service_fleet.urls() | {"queue": closed_port_url()}
    with running_gateway(tmp_path, urls) as gateway:
        responses = [
            gateway.get("/api/v1/queue/jobs", token=mint()) for _ in range(BREAKER_ATTEMPTS)
        ]
        health = gateway.admin_get("/health").json()
        unaffected = gateway.get("/api/v1/search/q")

    statuses = [r.status for r in responses]
    assert statuses[0] == 502
    assert set(statuses) <= {502, 503}
    assert_problem(responses[-1], 503)
    assert responses[-1].json()["type"].endswith("circuit-open")
    assert health["services"]["queue"]["breaker"]["state"] == "OPEN"
    assert unaffected.status == 200
