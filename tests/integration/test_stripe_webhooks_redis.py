"""Stripe webhook deduplication in Redis: shared by two gateways, and through Redis stopped,
frozen and flushed mid-test (a private redis-server each), verification never skipped."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.assertions import assert_problem
from support.client import RawResponse
from support.cluster import RedisCluster, cluster_tools_available
from support.gateway import PATIENT_REDIS, Fleet, GatewayProcess, running_gateway
from support.metrics import metrics_text
from support.redis import RedisServer
from support.stripe import SECRET
from support.upstream import Reply

from integration.test_stripe_webhooks import DUPLICATE, deliver, event, received

ANSWER_BOUND_S = 1.0  # a delivery while Redis is away is answered within this
RECOVERY_TIMEOUT_S = 5.0  # the gateway reconnects within this once Redis is back
OUTAGE_LOG = "Stripe webhook deduplication skipped"


def settings(prefix: str, patient: bool = False) -> dict[str, object]:
    config: dict[str, object] = {"webhooks": {"stripe": {"key_prefix": prefix}}}
    if patient:
        config.update(PATIENT_REDIS)
    return config


def env(redis: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": f"{redis.url}/0", "STRIPE_WEBHOOK_SECRET": SECRET}


@contextmanager
def gateway_on(
    tmp: Path, fleet: Fleet, redis: RedisServer, prefix: str, patient: bool = False
) -> Iterator[GatewayProcess]:
    with running_gateway(tmp, fleet.urls(), settings(prefix, patient), env(redis)) as gateway:
        yield gateway


def redis_cli(redis: RedisServer, *args: str) -> str:
    command = ["redis-cli", "-p", str(redis.port), "--raw", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=5, check=True).stdout


def timed(gateway: GatewayProcess, body: bytes) -> RawResponse:
    start = time.monotonic()
    response = deliver(gateway, body)
    assert time.monotonic() - start < ANSWER_BOUND_S
    return response


def wait_for_dedupe(gateway: GatewayProcess) -> None:
    """Until a fresh event's second delivery is a duplicate again (Redis reached)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while True:
        body = event()
        deliver(gateway, body)
        if deliver(gateway, body).json() == DUPLICATE:
            return
        assert time.monotonic() < deadline, "deduplication did not come back with Redis"
        time.sleep(0.1)


def test_two_gateways_share_the_seen_events(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    service_fleet.reset()
    prefix = f"test:webhooks:{uuid.uuid4().hex}:"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    body, failed = event(), event()
    with (
        gateway_on(tmp_path / "a", service_fleet, redis_server, prefix, True) as first,
        gateway_on(tmp_path / "b", service_fleet, redis_server, prefix, True) as second,
    ):
        assert deliver(first, body).status == 200
        duplicate = deliver(second, body)
        service_fleet["payment"].respond(Reply(status=503))
        assert deliver(first, failed).status == 503
        service_fleet["payment"].respond(Reply(status=200))
        retried = deliver(second, failed)
        keys = redis_cli(redis_server, "KEYS", f"{prefix}*").split()
        ttl_ms = int(redis_cli(redis_server, "PTTL", keys[0]))

    assert duplicate.json() == DUPLICATE
    assert retried.status == 200
    assert [r.body for r in received(service_fleet)] == [body, failed, failed]
    assert len(keys) == 2
    assert all(key.startswith(prefix + "evt_") for key in keys)
    assert 86_000_000 < ttl_ms <= 86_400_000


def test_redis_stopped_mid_test_verification_goes_on_and_dedupe_comes_back(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    service_fleet.reset()
    body = event()
    with gateway_on(tmp_path, service_fleet, redis_server, "test:webhooks:stopped:") as gateway:
        assert deliver(gateway, body).status == 200
        assert deliver(gateway, body).json() == DUPLICATE
        redis_server.stop()

        during = [timed(gateway, body) for _ in range(3)]
        forged = deliver(gateway, body, secrets=("whsec_forger",))
        output = gateway.output()

        redis_server.start()
        wait_for_dedupe(gateway)

    assert [r.status for r in during] == [200] * 3
    assert all(r.json() != DUPLICATE for r in during)  # forwarded: the service answered
    assert_problem(forged, 400)
    assert [r.body for r in received(service_fleet)].count(body) == 4
    assert output.count(OUTAGE_LOG) == 1  # at most once per 10 s
    assert SECRET not in output


def test_redis_frozen_mid_test_deliveries_are_answered_in_time(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    service_fleet.reset()
    body = event()
    with gateway_on(tmp_path, service_fleet, redis_server, "test:webhooks:frozen:") as gateway:
        assert deliver(gateway, body).status == 200
        redis_server.signal(signal.SIGSTOP)
        try:
            during = [timed(gateway, event()) for _ in range(3)]
            forged = deliver(gateway, body, secrets=("whsec_forger",))
        finally:
            redis_server.signal(signal.SIGCONT)
        wait_for_dedupe(gateway)

    assert [r.status for r in during] == [200] * 3
    assert_problem(forged, 400)


def test_redis_flushed_mid_test_forgets_events_and_then_remembers_again(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    service_fleet.reset()
    body = event()
    with gateway_on(tmp_path, service_fleet, redis_server, "test:webhooks:flushed:") as gateway:
        assert deliver(gateway, body).status == 200
        redis_cli(redis_server, "FLUSHALL")
        again = deliver(gateway, body)
        then = deliver(gateway, body)

    # At least once: a forgotten event reaches the service again, never a false duplicate.
    assert again.status == 200 and again.json() != DUPLICATE
    assert then.json() == DUPLICATE
    assert [r.body for r in received(service_fleet)] == [body, body]


@pytest.mark.skipif(not cluster_tools_available(), reason="a cluster needs redis-server, -cli")
def test_two_gateways_share_the_seen_events_on_a_redis_cluster(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    service_fleet.reset()
    cluster = RedisCluster(tmp_path / "cluster")
    bodies = [event() for _ in range(6)]  # ids hashing to slots of every node, most likely
    environment = {"REDIS_URL": cluster.url, "STRIPE_WEBHOOK_SECRET": SECRET}
    config = settings(f"test:webhooks:{uuid.uuid4().hex}:", patient=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        with (
            running_gateway(tmp_path / "a", service_fleet.urls(), config, environment) as first,
            running_gateway(tmp_path / "b", service_fleet.urls(), config, environment) as second,
        ):
            firsts = [deliver(first, body).status for body in bodies]
            seconds = [deliver(second, body).json() for body in bodies]
            metrics = metrics_text(second)
    finally:
        cluster.stop()

    assert firsts == [200] * len(bodies)
    assert seconds == [DUPLICATE] * len(bodies)
    assert [r.body for r in received(service_fleet)] == bodies
    assert 'gateway_stripe_webhooks_total{outcome="unchecked"} 0' in metrics
