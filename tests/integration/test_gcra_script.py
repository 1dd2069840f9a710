"""What the GCRA script does inside Redis: one EVALSHA per decision, Redis's clock, a TTL on
every key it writes, and nothing written for a rejected request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
import uvloop
from support.redis import RedisServer

from api_gateway.limiter import Decision, Rate
from api_gateway.stores.redis import RedisStore

RATE = Rate(5, 60_000, 0)
BLOCKING = Rate(2, 60_000, 30_000)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, socket_timeout=2)
    client.flushall()
    client.config_resetstat()
    yield client
    client.close()


def hits(url: str, key: str, rate: Rate, count: int) -> list[Decision]:
    async def story() -> list[Decision]:
        store = RedisStore(url)
        decisions = [await store.hit(key, rate) for _ in range(count)]
        await store.close()
        return decisions

    return uvloop.run(story())


def test_one_evalsha_per_decision(server: RedisServer, client: redis.Redis) -> None:
    hits(server.url, "counted", RATE, 8)
    stats = client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 8
    by_the_store = {"cmdstat_evalsha", "cmdstat_script|load"}  # the load: once per connection
    in_the_script = {"cmdstat_time", "cmdstat_get", "cmdstat_set"}
    by_this_test = {"cmdstat_info", "cmdstat_config|resetstat"}
    assert set(stats) <= by_the_store | in_the_script | by_this_test, set(stats)
    assert stats["cmdstat_script|load"]["calls"] == 1


def test_the_bucket_is_on_redis_time(server: RedisServer, client: redis.Redis) -> None:
    hits(server.url, "clock", RATE, 1)
    seconds, micros = client.time()
    redis_now_ms = seconds * 1000 + micros / 1000
    tat = float(client.get("gw:rl:{clock}") or 0)
    assert abs(tat - (redis_now_ms + RATE.interval_ms)) < 1000
    assert abs(time.monotonic() * 1000 - tat) > 1e6  # not the gateway's own (monotonic) clock


def test_every_key_written_has_a_ttl(server: RedisServer, client: redis.Redis) -> None:
    hits(server.url, "a", RATE, 6)
    hits(server.url, "b", BLOCKING, 3)
    keys = client.keys("gw:rl:*")
    assert sorted(keys) == [b"gw:rl:block:{b}", b"gw:rl:{a}", b"gw:rl:{b}"]
    for key in keys:
        assert 0 < client.pttl(key) <= 60_001


def test_rejected_requests_are_not_counted(server: RedisServer, client: redis.Redis) -> None:
    decisions = hits(server.url, "full", RATE, 5)
    full = client.get("gw:rl:{full}")
    rejected = hits(server.url, "full", RATE, 10)
    assert all(d.allowed for d in decisions) and not any(d.allowed for d in rejected)
    assert client.get("gw:rl:{full}") == full
