"""The response cache in Redis: gateways share entries and invalidations; a Redis outage and a
corrupt entry are misses, never errors; keys carry a TTL and one hash tag per resource."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import redis
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.redis import RedisServer
from support.tokens import mint
from support.upstream import Reply

SHARED_MINUTE = (("Cache-Control", "s-maxage=60"),)
RECOVERY_TIMEOUT_S = 5.0


def statuses_and_cache(gateway: GatewayProcess, target: str, count: int) -> list[tuple[int, str]]:
    answers = [gateway.get(target, token=mint()) for _ in range(count)]
    return [(r.status, r.header("x-cache") or "") for r in answers]


def test_gateways_share_entries_and_invalidations(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    service_fleet.reset()
    service_fleet["event"].respond(Reply(headers=SHARED_MINUTE))
    # Behind one load balancer, as in production: the gateways listen on different ports here,
    # and the port the upstream is told is part of the key, so the balancer's is the one told.
    env = {"REDIS_URL": redis_server.url, "TRUSTED_PROXIES": "127.0.0.1/32"}
    balanced = {"X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    target, auth = "/api/v1/events/7", mint()
    with (
        running_gateway(tmp_path / "a", service_fleet.urls(), env=env) as first,
        running_gateway(tmp_path / "b", service_fleet.urls(), env=env) as second,
    ):
        stored = first.get(target, token=auth, headers=balanced)
        shared = second.get(target, token=auth, headers=balanced)
        write = second.request("DELETE", target, token=auth, headers=balanced)
        after = first.get(target, token=auth, headers=balanced)

    client = redis.Redis.from_url(redis_server.url)
    keys = [key.decode() for key in cast("list[bytes]", client.keys("cache:*"))]
    entry_keys = [key for key in keys if not key.endswith(":gen")]
    client.close()

    assert (stored.header("x-cache"), shared.header("x-cache")) == ("MISS", "HIT")
    assert shared.body == stored.body
    assert write.status == 200 and after.header("x-cache") == "MISS"
    assert len(service_fleet["event"].requests) == 3
    assert entry_keys and all(key.startswith("cache:{/api/v1/events/7}:") for key in entry_keys)
    assert "cache:{/api/v1/events/7}:gen" in keys and "cache:{/api/v1/events}:gen" in keys


def test_entries_expire_in_redis(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    service_fleet.reset()
    service_fleet["event"].respond(Reply(headers=SHARED_MINUTE))
    with running_gateway(tmp_path, service_fleet.urls(), env={"REDIS_URL": redis_server.url}) as gw:
        gw.get("/api/v1/events/1", token=mint())
        client = redis.Redis.from_url(redis_server.url)
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while len(client.keys("cache:*")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        keys = cast("list[bytes]", client.keys("cache:*"))
        ttls = [client.pttl(key) for key in keys if not key.endswith(b":gen")]
        generation_ttl = client.pttl("cache:{/api/v1/events/1}:gen")
        client.close()

    assert ttls and all(50_000 < ttl <= 60_000 for ttl in ttls)
    # The generation made on the first read lives as long as the entry stored under it (a read
    # that stores nothing leaves it a minute, not cache.max_ttl_ms: test_cache_key_bounds.py).
    assert 50_000 < generation_ttl <= 60_000


def test_a_redis_outage_and_corrupt_entries_are_misses(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> None:
    service_fleet.reset()
    service_fleet["event"].respond(Reply(headers=SHARED_MINUTE))
    target = "/api/v1/events/9"
    with running_gateway(tmp_path, service_fleet.urls(), env={"REDIS_URL": redis_server.url}) as gw:
        before = statuses_and_cache(gw, target, 2)
        redis_server.stop()
        during = statuses_and_cache(gw, target, 3)
        redis_server.start()  # empty: nothing was saved
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while "redis" in gw.get("/ready").json()["failed"] and time.monotonic() < deadline:
            time.sleep(0.1)
        after = statuses_and_cache(gw, target, 2)

        client = redis.Redis.from_url(redis_server.url)
        for key in cast("list[bytes]", client.keys("cache:{/api/v1/events/9}:*")):
            if not key.endswith(b":gen"):
                client.set(key, b"\x01E garbage that is not an entry", px=60_000)
        client.close()
        corrupt = statuses_and_cache(gw, target, 2)
        log = gw.output()

    assert before == [(200, "MISS"), (200, "HIT")]
    assert during == [(200, "MISS")] * 3
    assert after == [(200, "MISS"), (200, "HIT")]
    assert corrupt == [(200, "MISS"), (200, "HIT")]
    assert log.count("response cache storage unavailable") == 1
    assert log.count("response cache storage answers again") == 1
