"""A flood of /ready costs one round of probes per period, not two upstream requests each; and a
change in a dependency still shows in /ready within the period."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.burst import burst
from support.gateway import Fleet, GatewayProcess
from support.upstream import Reply

FLOOD = 200
# One round per second per worker: a flood that spans a period boundary may cost two rounds.
MOST_ROUNDS = 3
PERIOD_S = 1.0
CHANGE_BOUND_S = PERIOD_S + 4.0  # the period, plus slack for a busy machine
POLL_S = 0.05


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    # No active health checks: every /health request the services see comes from /ready; a
    # required auth-service, so that its failure shows in /ready's status.
    return {"health_check": {"enabled": False}, "readiness": {"require": ["auth-service"]}}


def health_requests(services: Fleet, name: str) -> int:
    return sum(1 for r in services[name].requests if r.target == "/health")


def test_a_flood_of_ready_costs_a_handful_of_probes(
    gateway: GatewayProcess, services: Fleet
) -> None:
    statuses = burst([gateway.port], FLOOD, "/ready")

    assert statuses == [200] * FLOOD
    assert 1 <= health_requests(services, "auth") <= MOST_ROUNDS
    assert 1 <= health_requests(services, "venue") <= MOST_ROUNDS


def test_a_failing_dependency_shows_in_ready_within_the_period(
    gateway: GatewayProcess, services: Fleet
) -> None:
    assert gateway.get("/ready").status == 200
    services["auth"].respond(Reply(status=500), path="/health")
    changed = time.monotonic()

    status, seen_after = 200, 0.0
    while time.monotonic() - changed < CHANGE_BOUND_S:
        status = gateway.get("/ready").status
        seen_after = time.monotonic() - changed
        if status == 503:
            break
        time.sleep(POLL_S)

    assert status == 503, f"still {status} after {seen_after:.2f}s"
