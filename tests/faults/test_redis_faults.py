"""Redis faults under a steady request loop: no 5xx, every answer within a bound, and limits
through Redis again afterwards without restarting the gateway. Frozen (SIGSTOP), stopped and
restarted: tests/integration/test_distributed.py; here: flushed, and killed with SIGKILL."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.test_distributed import ANSWER_BOUND_S, LIMIT, Load, metric, wait_for_metric
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.redis import RedisServer

SEARCH = "/api/v1/search/q"
WATCHED = {"x-forwarded-for": "192.0.2.7"}
DEGRADED = "gateway_ratelimit_store_degraded"


@pytest.fixture
def gateway(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> Iterator[GatewayProcess]:
    env = {
        "REDIS_URL": f"{redis_server.url}/0",
        "RATE_LIMIT_MAX": str(LIMIT),
        "TRUSTED_PROXIES": "127.0.0.1/32",
    }
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as process:
        yield process


def watched_statuses(gateway: GatewayProcess) -> list[int]:
    return [gateway.get(SEARCH, headers=WATCHED).status for _ in range(LIMIT + 1)]


def flushall(redis: RedisServer) -> None:
    with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(64).startswith(b"+OK")


def assert_calm(answers: list[tuple[int, float]]) -> None:
    assert len(answers) > 20
    assert all(status == 200 for status, _ in answers), {s for s, _ in answers}
    assert max(seconds for _, seconds in answers) < ANSWER_BOUND_S


def test_a_flush_under_load_only_forgets_the_limits(
    gateway: GatewayProcess, redis_server: RedisServer
) -> None:
    load = Load(gateway)
    load.start()
    before = watched_statuses(gateway)

    flushall(redis_server)
    after = watched_statuses(gateway)
    time.sleep(0.3)
    answers = load.stop()

    assert before == [200] * LIMIT + [429]
    assert after == [200] * LIMIT + [429]  # a fresh bucket, still limited through Redis
    assert metric(gateway, "gateway_ratelimit_store_outages_total") == 0
    assert_calm(answers)


def test_redis_killed_and_restarted_under_load(
    gateway: GatewayProcess, redis_server: RedisServer
) -> None:
    load = Load(gateway)
    load.start()
    time.sleep(0.3)

    redis_server.signal(signal.SIGKILL)
    assert redis_server.process is not None
    redis_server.process.wait(5)
    redis_server.process = None
    wait_for_metric(gateway, DEGRADED, 1)
    redis_server.start()
    wait_for_metric(gateway, DEGRADED, 0)
    time.sleep(0.3)
    answers = load.stop()

    fallbacks = metric(gateway, "gateway_ratelimit_fallback_decisions_total")
    after = watched_statuses(gateway)

    assert_calm(answers)
    assert after == [200] * LIMIT + [429]
    # Decided by the new Redis (its script cache empty), not by memory after a second outage.
    assert metric(gateway, "gateway_ratelimit_store_outages_total") == 1
    assert metric(gateway, "gateway_ratelimit_fallback_decisions_total") == fallbacks
