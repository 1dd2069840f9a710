"""Cached answers in Redis, shared by every gateway process: single-key commands only.

Entries are ``SET key value PX ttl``; a resource's generation is a key of its own in the same
hash slot (``cache:{<resource>}:gen``), so a Redis Cluster can hold them. A missing generation
key (never written, expired, evicted under ``maxmemory``, deleted, or lost in a failover) is
replaced by a new random token with ``SET NX``, never read as a default: the entries made under
the lost one are unreachable from then on, instead of coming back. A generation lives a minute
while nothing is stored under it, and as long as the longest-lived entry stored under it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from api_gateway.cache.rules import generation_key, generation_key_of
from api_gateway.cache.storage import new_generation
from api_gateway.resp.protocol import Reply, RespError, Script
from api_gateway.stores import StoreUnavailable

# How long a generation lives while nothing is stored under it. Every distinct resource read
# makes one, in the Redis the rate limiter shares: kept for ``cache.max_ttl_ms`` (a day), reads
# of made-up ids would hold ~150 bytes each for a day. A save extends it to its entry's TTL.
GENERATION_IDLE_MS: Final = 60_000
# Extends a generation's life to at least ARGV[1] ms, if it still exists; never shortens it.
OUTLIVE: Final = Script(
    "local left = redis.call('PTTL', KEYS[1]) "
    "if left >= 0 and left < tonumber(ARGV[1]) then "
    "redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
    "return left"
)


class Commands(Protocol):
    """One Redis server or a cluster: both route a single-key command to the key's node."""

    async def command(self, *args: str | bytes | int) -> Reply: ...

    async def evaluate(
        self, script: Script, keys: Sequence[str], args: Sequence[str | int] = ()
    ) -> Reply: ...


class RedisCacheStorage:
    def __init__(self, redis: Commands, max_ttl_ms: int) -> None:
        self.redis, self.max_ttl_ms = redis, max_ttl_ms
        self.immediate = False  # every call waits for Redis: bounded by the caller
        self.idle_ms = min(GENERATION_IDLE_MS, max_ttl_ms)

    async def generation(self, resource: str) -> str:
        key = generation_key(resource)
        reply = await self.get(key)
        if reply is None:
            reply = await self._create(key)
        try:
            return reply.decode("ascii")
        except UnicodeDecodeError:
            raise StoreUnavailable("a cache generation is not ASCII") from None

    async def _create(self, key: str) -> bytes:
        token = new_generation().encode("ascii")
        created = _check(await self.redis.command("SET", key, token, "NX", "PX", self.idle_ms))
        if created is not None:
            return token
        # Another gateway process created one first: everyone uses the same.
        reply = await self.get(key)
        if reply is None:
            raise StoreUnavailable("a cache generation vanished as it was created")
        return reply

    async def invalidate(self, resource: str) -> None:
        key = generation_key(resource)
        _check(await self.redis.command("SET", key, new_generation(), "PX", self.idle_ms))

    async def get(self, key: str) -> bytes | None:
        reply = _check(await self.redis.command("GET", key))
        if reply is not None and not isinstance(reply, bytes):
            raise StoreUnavailable(f"redis answered GET with {reply!r:.100}")
        return reply

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        _check(await self.redis.command("SET", key, value, "PX", ttl_ms))
        # The entry is reachable only while its generation lives. Gone meanwhile (expired, a
        # write replaced it): the entry is unreachable, as it would be anyway.
        _check(await self.redis.evaluate(OUTLIVE, [generation_key_of(key)], [ttl_ms]))


def _check(reply: Reply) -> Reply:
    if isinstance(reply, RespError):
        raise StoreUnavailable(f"redis refused a cache command: {reply.message}")
    return reply
