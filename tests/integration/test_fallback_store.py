"""Redis behind the fallback store: stopped, frozen (SIGSTOP) and restarted, every hit is
answered within the bound, from memory while Redis is away, and through Redis once it is back."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import uvloop
from support.redis import RedisServer

from api_gateway.limiter import Decision, Rate
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.fallback import FallbackStore
from api_gateway.stores.redis import RedisStore

BOUND_S = 0.05
SLACK_S = 0.15  # a busy test machine
RATE = Rate(3, 60_000, 0)
RECOVERY_TIMEOUT_S = 5.0


def fallback_over(server: RedisServer) -> FallbackStore:
    return FallbackStore(RedisStore(server.url, timeout_s=BOUND_S), probe_every_s=0.1)


async def timed_hit(store: FallbackStore, key: str) -> Decision:
    start = time.monotonic()
    decision = await store.hit(key, RATE)
    assert time.monotonic() - start < BOUND_S + SLACK_S
    return decision


async def until_recovered(store: FallbackStore) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while store.degraded:  # the store's own probe ends the outage; nothing to wait on but time
        assert time.monotonic() < deadline, "the store did not recover"
        await asyncio.sleep(0.02)


async def in_redis(store: FallbackStore, key: str) -> bool:
    assert isinstance(store.primary, RedisStore)
    return await store.primary.command("EXISTS", f"gw:rl:{{{key}}}") == 1


def test_a_stopped_redis_falls_back_to_memory_and_recovers(redis_server: RedisServer) -> None:
    async def story() -> None:
        store = fallback_over(redis_server)
        assert (await timed_hit(store, "before")).allowed and await in_redis(store, "before")
        redis_server.stop()
        during = [await timed_hit(store, "outage") for _ in range(5)]
        assert [d.allowed for d in during] == [True] * 3 + [False] * 2  # memory keeps the limit
        assert store.degraded and store.outages == 1 and store.fallback_decisions == 5
        with pytest.raises(StoreUnavailable):
            await store.hit("strict", RATE, strict=True)
        redis_server.start()
        await until_recovered(store)
        assert (await timed_hit(store, "after")).allowed and await in_redis(store, "after")
        assert store.fallback_decisions == 5
        await store.close()

    uvloop.run(story())


def test_a_frozen_redis_costs_at_most_the_bound(redis_server: RedisServer) -> None:
    async def story() -> None:
        store = fallback_over(redis_server)
        await timed_hit(store, "warm")
        redis_server.signal(signal.SIGSTOP)
        try:  # concurrent hits queued on the hung connection all come back within the bound
            decisions = await asyncio.gather(*(timed_hit(store, "frozen") for _ in range(50)))
            decisions += [await timed_hit(store, "frozen") for _ in range(20)]
            assert sum(d.allowed for d in decisions) == 3
            assert store.degraded
            with pytest.raises(StoreUnavailable):
                await store.hit("strict", RATE, strict=True)
        finally:
            redis_server.signal(signal.SIGCONT)
        await until_recovered(store)
        assert (await timed_hit(store, "thawed")).allowed and await in_redis(store, "thawed")
        await store.close()

    uvloop.run(story())


def test_strict_hits_go_through_redis_while_it_answers(redis_server: RedisServer) -> None:
    async def story() -> list[bool]:
        store = fallback_over(redis_server)
        allowed = [(await store.hit("strict", RATE, strict=True)).allowed for _ in range(4)]
        assert await in_redis(store, "strict") and store.fallback_decisions == 0
        await store.close()
        return allowed

    assert uvloop.run(story()) == [True, True, True, False]
