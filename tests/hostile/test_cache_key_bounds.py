"""A long path makes no long key in the shared cache, and still caches and invalidates.

The response cache names a resource by the route prefix and the first segment below it. That
segment is the client's, up to the 16 KiB head limit; written into Redis keys as it came, every
distinct 7 KiB segment would cost two 7 KiB keys (the generation and the entry) in the Redis
every gateway shares. A long segment is named by a fixed-size digest instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.redis import RedisServer
from support.tokens import mint
from support.upstream import Reply

SHARED_MINUTE = (("Cache-Control", "s-maxage=60"),)
LONG_ID = "L" * 7000
TARGET = f"/api/v1/events/{LONG_ID}"
# The longest key a resource may give: ``cache:{/api/v1/events/#<32 hex>}:<12 hex>:<32 hex>``
# and a variant's 33 more; 200 leaves room for longer route prefixes.
MAX_KEY_BYTES = 200
SAVE_TIMEOUT_S = 5.0
POLL_S = 0.02


@pytest.fixture
def gateway(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> Iterator[GatewayProcess]:
    service_fleet.reset()
    service_fleet["event"].respond(Reply(headers=SHARED_MINUTE))
    env = {"REDIS_URL": redis_server.url}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as process:
        yield process


def wait_for_entries(client: redis.Redis, count: int) -> list[bytes]:
    """The cache's keys once ``count`` entries (not generations) are saved, or after 5 s."""
    deadline = time.monotonic() + SAVE_TIMEOUT_S
    while True:
        keys = cast("list[bytes]", client.keys("cache:*"))
        if len([k for k in keys if not k.endswith(b":gen")]) >= count:
            return keys
        if time.monotonic() > deadline:
            return keys
        time.sleep(POLL_S)


def test_a_long_resource_segment_gives_short_redis_keys_that_cache_and_invalidate(
    gateway: GatewayProcess, redis_server: RedisServer, service_fleet: Fleet
) -> None:
    token = mint()
    client = redis.Redis.from_url(redis_server.url)
    try:
        first = gateway.get(TARGET, token=token)
        keys = wait_for_entries(client, 1)
        second = gateway.get(TARGET, token=token)
        below = gateway.get(TARGET + "/tickets", token=token)  # the same resource
        assert gateway.request("PUT", TARGET, body=b"{}", token=token).status == 200
        after_write = gateway.get(TARGET, token=token)
    finally:
        client.close()

    assert [first.status, second.status, after_write.status] == [200, 200, 200]
    assert [first.header("x-cache"), second.header("x-cache")] == ["MISS", "HIT"]
    assert second.body == first.body
    assert below.header("x-cache") == "MISS"
    # The write made the resource's answers stale, as for any short id.
    assert after_write.header("x-cache") == "MISS"
    assert len(keys) >= 2  # a generation and an entry
    assert max(len(key) for key in keys) <= MAX_KEY_BYTES, sorted(map(len, keys))
    # What the service saw is the path as the client sent it: only the key is a digest.
    assert service_fleet["event"].requests[0].path == TARGET


def test_a_read_that_stores_nothing_leaves_no_day_long_key(
    gateway: GatewayProcess, redis_server: RedisServer, service_fleet: Fleet
) -> None:
    """Every distinct resource read gets a generation key in the Redis the rate limiter shares;
    one that stores nothing (a 404, an id made up per request) must not keep it for the day
    ``cache.max_ttl_ms`` allows: a million such reads would hold 150 MB for a day. A generation
    lives as long as an answer stored under it needs."""
    token = mint()
    service_fleet["event"].respond(Reply(status=404, body=b"{}"), path="/api/v1/events/nothing")
    service_fleet["event"].respond(
        Reply(headers=(("Cache-Control", "s-maxage=3600"),)), path="/api/v1/events/an-hour"
    )
    client = redis.Redis.from_url(redis_server.url)
    try:
        missing = gateway.get("/api/v1/events/nothing", token=token)
        unstored_ttl = client.pttl("cache:{/api/v1/events/nothing}:gen")
        first = gateway.get("/api/v1/events/an-hour", token=token)
        # The save runs after the answer went out: the entry first, then its generation.
        deadline = time.monotonic() + SAVE_TIMEOUT_S
        stored_ttl = client.pttl("cache:{/api/v1/events/an-hour}:gen")
        while stored_ttl <= 60_000 and time.monotonic() < deadline:
            time.sleep(POLL_S)
            stored_ttl = client.pttl("cache:{/api/v1/events/an-hour}:gen")
        second = gateway.get("/api/v1/events/an-hour", token=token)
    finally:
        client.close()

    assert missing.status == 404
    assert 0 < unstored_ttl <= 60_000
    assert [first.header("x-cache"), second.header("x-cache")] == ["MISS", "HIT"]
    # The generation outlives the answer stored under it.
    assert 3_500_000 < stored_ttl <= 3_600_000
