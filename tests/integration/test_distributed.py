"""With REDIS_URL set, gateways share their limits through Redis; when Redis goes away they keep
answering (limits come from memory, per process) and say so on /ready and /metrics, and they
limit through Redis again when it returns."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from support.assertions import assert_problem
from support.burst import burst
from support.gateway import Fleet, GatewayProcess, gateways_sharing, running_gateway
from support.metrics import metrics_text, samples
from support.redis import RedisServer

LIMIT = 4
RECOVERY_TIMEOUT_S = 5.0
ANSWER_BOUND_S = 1.0


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
        while "redis" in gateway.get("/ready").json()["failed"] and time.monotonic() < deadline:
            time.sleep(0.1)
        after = statuses([gateway], LIMIT + 1)

    assert during_outage == [200] * LIMIT + [429] * 2  # the same limit, from memory
    assert ready.status == 200  # redis is not in readiness.require: reported, not blocking
    assert "redis" in ready.json()["failed"]
    assert after == [200] * LIMIT + [429]


def test_300_concurrent_requests_on_two_gateways_let_exactly_100_through(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    with gateways_sharing(tmp_path, service_fleet.urls(), redis_server.url, 100) as (first, second):
        statuses = burst([first.port, second.port], 300, "/api/v1/search/q")

    assert statuses.count(200) == 100
    assert statuses.count(429) == 200


class Load(threading.Thread):
    """Requests one after another, each from a new client address (never limited), timed."""

    def __init__(self, gateway: GatewayProcess) -> None:
        super().__init__(daemon=True)
        self.gateway, self.stopping = gateway, threading.Event()
        self.answers: list[tuple[int, float]] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            n = len(self.answers)
            client = {"x-forwarded-for": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}
            start = time.monotonic()
            response = self.gateway.get("/api/v1/search/q", headers=client)
            self.answers.append((response.status, time.monotonic() - start))

    def stop(self) -> list[tuple[int, float]]:
        self.stopping.set()
        self.join(10)
        return self.answers


def metric(gateway: GatewayProcess, name: str) -> int:
    """A counter's total, or a gauge summed over the workers (``worker`` label)."""
    found = samples(metrics_text(gateway), name)
    if not found:
        raise AssertionError(f"no {name} in /metrics")
    return int(sum(found.values()))


def wait_for_metric(gateway: GatewayProcess, name: str, value: int) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while metric(gateway, name) != value:
        assert time.monotonic() < deadline, f"{name} did not become {value}"
        time.sleep(0.05)


def test_redis_frozen_stopped_and_restarted_under_load(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {**env_for(redis_server), "TRUSTED_PROXIES": "127.0.0.1/32"}
    watched = {"x-forwarded-for": "192.0.2.1"}
    degraded = "gateway_ratelimit_store_degraded"
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        load = Load(gateway)
        load.start()
        time.sleep(0.3)
        redis_server.signal(signal.SIGSTOP)
        wait_for_metric(gateway, degraded, 1)
        frozen = [gateway.get("/api/v1/search/q", headers=watched).status for _ in range(LIMIT + 1)]
        redis_server.signal(signal.SIGCONT)
        wait_for_metric(gateway, degraded, 0)
        redis_server.stop()
        time.sleep(0.5)
        redis_server.start()
        wait_for_metric(gateway, degraded, 0)
        time.sleep(0.3)
        answers = load.stop()
        fallbacks = metric(gateway, "gateway_ratelimit_fallback_decisions_total")
        outages = metric(gateway, "gateway_ratelimit_store_outages_total")
        after = [gateway.get("/api/v1/search/q", headers=watched).status for _ in range(LIMIT + 1)]
        fallbacks_after = metric(gateway, "gateway_ratelimit_fallback_decisions_total")

    assert frozen == [200] * LIMIT + [429]  # from memory while Redis is frozen
    assert len(answers) > 20
    assert all(status == 200 for status, _ in answers), {s for s, _ in answers}
    assert max(seconds for _, seconds in answers) < ANSWER_BOUND_S
    assert fallbacks > LIMIT and outages == 2
    assert after == [200] * LIMIT + [429]  # a fresh Redis: the limit through it again
    assert fallbacks_after == fallbacks  # decided by Redis, none from memory
