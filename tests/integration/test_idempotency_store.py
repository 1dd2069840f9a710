"""The Redis idempotency store against a private redis-server: the one-key scripts keep a claim
atomic, fence the owner, keep binary answers exactly and expire what they write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from support.redis import RedisServer

from api_gateway import idempotency as core
from api_gateway.resp.client import RedisClient
from api_gateway.resp.protocol import encode_command
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.idempotency import RedisIdempotencyStore

PRINT = core.fingerprint("POST", b"/api/v1/orders", b"{}")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


def test_claim_complete_release_on_redis(redis: RedisServer) -> None:
    mine, theirs = core.pending_value(PRINT), core.pending_value(PRINT)
    done = core.done_value(PRINT, 201, [(b"x-bin", b"\x00\r\n\xff")], bytes(range(256)))

    async def story() -> None:
        client = RedisClient(redis.url, 2.0)
        store = RedisIdempotencyStore(client)
        key = core.record_key("tenant-1", "user-1", "story")
        try:
            assert await store.claim(key, mine, 10_000) is None
            ttl = await client.command("PTTL", key)
            assert isinstance(ttl, int) and 9_000 < ttl <= 10_000
            assert await store.claim(key, theirs, 10_000) == mine
            assert not await store.complete(key, theirs, done, 60_000)
            await store.release(key, theirs)
            assert await store.claim(key, theirs, 10_000) == mine
            assert await store.complete(key, mine, done, 60_000)
            found = await store.claim(key, theirs, 10_000)
            assert found == done
            answer = core.decode_done(found)
            assert answer is not None and answer.body == bytes(range(256))
            assert answer.headers == [(b"x-bin", b"\x00\r\n\xff")]
            ttl = await client.command("PTTL", key)
            assert isinstance(ttl, int) and 50_000 < ttl <= 60_000
            await store.release(key, mine)  # done, no longer a pending claim: kept
            assert await store.claim(key, theirs, 10_000) == done
        finally:
            await client.close()

    asyncio.run(story())


def test_concurrent_claims_on_redis_give_the_key_to_one(redis: RedisServer) -> None:
    async def story() -> list[bytes | None]:
        clients = [RedisClient(redis.url, 2.0) for _ in range(4)]
        stores = [RedisIdempotencyStore(c) for c in clients]
        key = core.record_key("tenant-1", "user-1", "race")
        try:
            claims = [
                stores[n % 4].claim(key, core.pending_value(PRINT), 10_000) for n in range(40)
            ]
            return await asyncio.gather(*claims)
        finally:
            for client in clients:
                await client.close()

    results = asyncio.run(story())
    assert results.count(None) == 1


def test_a_flushed_record_frees_the_key_and_a_late_complete_writes_nothing(
    redis: RedisServer,
) -> None:
    """FLUSHALL (a private server) loses the claim: the owner's answer is not written over a
    claim that is not its own."""
    mine, theirs = core.pending_value(PRINT), core.pending_value(PRINT)

    async def story() -> None:
        client = RedisClient(redis.url, 2.0)
        store = RedisIdempotencyStore(client)
        key = core.record_key("tenant-1", "user-1", "flushed")
        try:
            assert await store.claim(key, mine, 10_000) is None
            conn = await client.connection()
            await conn.send(encode_command("FLUSHALL"))
            assert await store.claim(key, theirs, 10_000) is None
            assert not await store.complete(key, mine, b"D" + PRINT, 60_000)
            assert await store.claim(key, mine, 10_000) == theirs
        finally:
            await client.close()

    asyncio.run(story())


def test_a_stopped_redis_is_store_unavailable(redis: RedisServer) -> None:
    async def story() -> None:
        client = RedisClient(redis.url, 0.5)
        store = RedisIdempotencyStore(client)
        try:
            redis.stop()
            with pytest.raises(StoreUnavailable):
                await store.claim("gw:idem:{x}", core.pending_value(PRINT), 1000)
        finally:
            await client.close()
            redis.start()

    asyncio.run(story())
