"""With REDIS_URL set, gateways share their limits through Redis; when Redis goes away they keep
answering (the limiter fails open) and say so on /ready, and they recover when it returns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.assertions import assert_problem
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.redis import RedisServer

LIMIT = 4
RECOVERY_TIMEOUT_S = 5.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


def env_for(redis: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": f"{redis.url}/0", "RATE_LIMIT_MAX": str(LIMIT)}


def statuses(gateways: list[GatewayProcess], count: int) -> list[int]:
    """``count`` requests, alternating between the gateways."""
    return [gateways[i % len(gateways)].get("/api/v1/search/q").status for i in range(count)]


def test_two_gateways_share_one_limit(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = env_for(redis_server)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_gateway(tmp_path / "a", service_fleet.urls(), env=env) as first,
        running_gateway(tmp_path / "b", service_fleet.urls(), env=env) as second,
    ):
        seen = statuses([first, second], LIMIT)
        refused = [first.get("/api/v1/search/q"), second.get("/api/v1/search/q")]

    assert seen == [200] * LIMIT
    for response in refused:
        assert_problem(response, 429)
        assert response.header("x-ratelimit-limit") == str(LIMIT)


def test_a_redis_outage_fails_open_and_the_limit_returns_with_redis(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    with running_gateway(tmp_path, service_fleet.urls(), env=env_for(redis_server)) as gateway:
        assert statuses([gateway], LIMIT) == [200] * LIMIT
        redis_server.stop()

        during_outage = statuses([gateway], LIMIT + 2)
        ready = gateway.get("/ready")

        redis_server.start()
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while gateway.get("/ready").status != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = statuses([gateway], LIMIT + 1)

    assert during_outage == [200] * (LIMIT + 2)
    assert ready.status == 503
    assert "redis" in ready.body.decode()
    assert after == [200] * LIMIT + [429]
