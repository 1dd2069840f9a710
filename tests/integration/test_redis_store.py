"""The Redis store against a private redis-server: decides like memory, shared, survives outages."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop
from support.ports import free_port
from support.redis import RedisServer

from api_gateway.limiter import Decision, Rate
from api_gateway.resp.protocol import Reply, encode_command
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.memory import MemoryStore
from api_gateway.stores.redis import RedisStore

FIVE_A_MINUTE = Rate(max=5, window_ms=60_000, block_ms=0)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    if redis_server.process is None:
        redis_server.start()
    return redis_server.url


async def command(store: RedisStore, *args: str | int) -> Reply:
    """A raw command on the store's own connection, to look at what the script left in Redis."""
    conn = await store.connection()
    return await conn.send(encode_command(*args))


async def pttl(store: RedisStore, key: str) -> int:
    reply = await command(store, "PTTL", key)
    assert isinstance(reply, int)
    return reply


async def hits(store: Any, key: str, rate: Rate, count: int) -> list[Decision]:
    return [await store.hit(key, rate) for _ in range(count)]


def test_five_a_minute_allows_five_then_denies_until_one_refills(url: str) -> None:
    async def story() -> list[Decision]:
        store = RedisStore(url)
        decisions = await hits(store, "story:1", FIVE_A_MINUTE, 7)
        await store.close()
        return decisions

    decisions = uvloop.run(story())
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]
    for denied in decisions[5:]:
        assert 11_000 < denied.retry_after_ms <= 12_001  # one interval, 60 s / 5
        assert 58_000 < denied.reset_ms <= 60_001
    assert [d.retry_after_ms for d in decisions[:5]] == [0] * 5
    assert decisions[0].reset_ms in (12_000, 12_001)


@pytest.mark.parametrize(
    "rate", [FIVE_A_MINUTE, Rate(7, 60_000, 0), Rate(6, 1_000, 0), Rate(3, 1_000, 500)]
)
def test_decides_like_the_memory_store(url: str, rate: Rate) -> None:
    async def both() -> tuple[list[Decision], list[Decision]]:
        store = RedisStore(url)
        in_redis = await hits(store, f"same:{rate}", rate, 10)
        await store.close()
        return in_redis, await hits(MemoryStore(), "same", rate, 10)

    in_redis, in_memory = uvloop.run(both())
    pattern = [True] * rate.max + [False] * (10 - rate.max)
    assert [d.allowed for d in in_redis] == [d.allowed for d in in_memory] == pattern
    assert [d.remaining for d in in_redis] == [*range(rate.max - 1, -1, -1)] + [0] * (10 - rate.max)
    for r, m in zip(in_redis, in_memory, strict=True):  # both ran within milliseconds
        # limiter.gcra computes remaining as (now - allow_at) / interval, which floating point
        # can floor one too low (4.9999 -> 4); the script uses an exact form of the same formula.
        assert abs(r.remaining - m.remaining) <= 1
        assert abs(r.retry_after_ms - m.retry_after_ms) < 250
        assert abs(r.reset_ms - m.reset_ms) < 250
    if rate.block_ms:
        assert in_redis[rate.max] == in_memory[rate.max] == Decision(False, 0, 500, 500)


def test_two_gateways_share_one_budget(url: str) -> None:
    async def story() -> list[Decision]:
        one, two = RedisStore(url), RedisStore(url)
        decisions = [await (one, two)[i % 2].hit("shared", FIVE_A_MINUTE) for i in range(8)]
        await one.close()
        await two.close()
        return decisions

    assert [d.allowed for d in uvloop.run(story())] == [True] * 5 + [False] * 3


def test_concurrent_hits_are_pipelined_and_counted_exactly(url: str) -> None:
    async def story() -> list[Decision]:
        store = RedisStore(url)
        decisions = await asyncio.gather(
            *(store.hit("burst", Rate(10, 60_000, 0)) for _ in range(50))
        )
        await store.close()
        return decisions

    decisions = uvloop.run(story())
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


def test_a_violation_blocks_the_key_for_block_ms_then_it_vanishes(url: str) -> None:
    # 2 per 200 ms would let a request through after 100 ms; the 600 ms block must win.
    rate = Rate(max=2, window_ms=200, block_ms=600)

    async def story() -> None:
        store = RedisStore(url)
        assert [d.allowed for d in await hits(store, "blocky", rate, 2)] == [True, True]
        violation = await store.hit("blocky", rate)
        assert violation == Decision(False, 0, 600, 600)
        assert 0 < await pttl(store, "gw:rl:block:{blocky}") <= 600
        await asyncio.sleep(0.3)
        still = await store.hit("blocky", rate)
        assert not still.allowed
        assert 200 < still.retry_after_ms <= 301
        await asyncio.sleep(0.35)
        assert (await store.hit("blocky", rate)).allowed
        assert await command(store, "EXISTS", "gw:rl:block:{blocky}") == 0
        await store.close()

    uvloop.run(story())


def test_buckets_expire_once_full_again(url: str) -> None:
    async def story() -> None:
        store = RedisStore(url)
        await store.hit("fleeting", Rate(2, 100, 0))
        assert 0 < await pttl(store, "gw:rl:{fleeting}") <= 51
        await asyncio.sleep(0.1)
        assert await command(store, "EXISTS", "gw:rl:{fleeting}") == 0
        await store.close()

    uvloop.run(story())


def test_odd_keys_are_sent_as_utf8_bytes(url: str) -> None:
    odd = "tenant 7/ünïcödé 🎟️\r\n$-1\r\n*"

    async def story() -> None:
        store = RedisStore(url)
        assert (await store.hit(odd, Rate(1, 60_000, 0))).allowed
        assert not (await store.hit(odd, Rate(1, 60_000, 0))).allowed
        assert (await store.hit("tenant 7/", Rate(1, 60_000, 0))).allowed
        assert await command(store, "EXISTS", f"gw:rl:{{{odd}}}") == 1
        await store.close()

    uvloop.run(story())


def test_a_flushed_script_cache_is_reloaded(url: str) -> None:
    async def story() -> None:
        store = RedisStore(url)
        await store.hit("flush", FIVE_A_MINUTE)
        assert await command(store, "SCRIPT", "FLUSH") == "OK"
        assert (await store.hit("flush", FIVE_A_MINUTE)).remaining == 3  # via EVAL
        assert (await store.hit("flush", FIVE_A_MINUTE)).remaining == 2  # EVALSHA again
        await store.close()

    uvloop.run(story())


def test_db_and_password_come_from_the_url() -> None:
    server = RedisServer("--requirepass", "s3cret")

    async def story() -> None:
        store = RedisStore(f"redis://:s3cret@127.0.0.1:{server.port}/3")
        await store.ping()
        await store.hit("in-db-3", FIVE_A_MINUTE)
        assert await command(store, "EXISTS", "gw:rl:{in-db-3}") == 1
        await store.close()
        for wrong in ("redis://127.0.0.1:{}", "redis://:nope@127.0.0.1:{}"):
            store = RedisStore(wrong.format(server.port))
            with pytest.raises(StoreUnavailable, match=r"NOAUTH|WRONGPASS|invalid"):
                await store.ping()

    try:
        asyncio.run(story())  # also under the standard event loop
    finally:
        server.stop()


def test_ping_answers_and_fails_fast_where_nothing_listens(url: str) -> None:
    async def story() -> None:
        store = RedisStore(url)
        await store.ping()
        await store.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.hit("x", FIVE_A_MINUTE)
        nowhere = RedisStore(f"redis://127.0.0.1:{free_port()}")
        with pytest.raises(StoreUnavailable, match="unavailable"):
            await nowhere.ping()
        with pytest.raises(StoreUnavailable):  # within the backoff: no new attempt, same answer
            await nowhere.hit("x", FIVE_A_MINUTE)

    uvloop.run(story())


async def eventually_allowed(store: RedisStore, within_s: float) -> float:
    start = time.monotonic()
    while True:
        try:
            await store.hit("recovery", Rate(1000, 60_000, 0))
            return time.monotonic() - start
        except StoreUnavailable:
            assert time.monotonic() - start < within_s, "the store did not recover"
            await asyncio.sleep(0.05)


async def raises_within(store: RedisStore, seconds: float) -> None:
    start = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.hit("recovery", Rate(1000, 60_000, 0))
    assert time.monotonic() - start < seconds


def test_a_stopped_redis_fails_fast_and_the_store_recovers_when_it_returns(
    redis_server: RedisServer,
) -> None:
    async def story() -> None:
        store = RedisStore(redis_server.url, timeout_s=0.5)
        await eventually_allowed(store, 1)
        redis_server.stop()
        await raises_within(store, 1.0)
        await raises_within(store, 0.1)  # no reconnect storm: fails at once while down
        redis_server.start()
        assert await eventually_allowed(store, 2.0) < 1.0
        await store.close()

    uvloop.run(story())


def test_a_frozen_redis_times_out_instead_of_hanging(redis_server: RedisServer) -> None:
    async def story() -> None:
        store = RedisStore(redis_server.url, timeout_s=0.3)
        await eventually_allowed(store, 1)
        redis_server.signal(signal.SIGSTOP)
        try:
            await raises_within(store, 0.3 + 0.2)  # timeout + slack
        finally:
            redis_server.signal(signal.SIGCONT)
        assert await eventually_allowed(store, 2.0) < 1.0
        await store.close()

    uvloop.run(story())


def test_a_server_speaking_garbage_is_unavailable_not_a_crash() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()

    async def story() -> None:
        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        store = RedisStore(f"redis://127.0.0.1:{port}")
        with pytest.raises(StoreUnavailable, match="unreadable reply"):
            await store.hit("x", FIVE_A_MINUTE)
        server.close()
        await store.close()

    uvloop.run(story())
