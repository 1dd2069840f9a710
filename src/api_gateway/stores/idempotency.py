"""Where idempotency records live: this process's memory, or Redis shared by every gateway.

Three calls, each atomic: ``claim`` takes a free key with the caller's pending value or returns
the value found; ``complete`` replaces the caller's own pending value with the answer;
``release`` removes the caller's own pending value. ``complete`` and ``release`` compare the
whole pending value (it carries a random owner), so a claim that lapsed and was taken by
another request is never overwritten or dropped by the first. Redis failures surface as
``StoreUnavailable``.

The Redis scripts use GET, SET (PX) and DEL only, on one key: they run unchanged on a Redis
Cluster (one slot) and on the embedded Redis-protocol store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from api_gateway.config.settings import GatewayConfig
from api_gateway.resp.protocol import Reply, RespError, Script
from api_gateway.stores import Store, StoreUnavailable

# An entry in memory counts its key, its value and this much bookkeeping.
ENTRY_OVERHEAD: Final = 256

CLAIM: Final = Script(
    "local found = redis.call('GET', KEYS[1]) "
    "if found then return found end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "return 0"
)
COMPLETE: Final = Script(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) "
    "return 1"
)
RELEASE: Final = Script(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end redis.call('DEL', KEYS[1]) return 1"
)


class IdempotencyStore(Protocol):
    async def claim(self, key: str, pending: bytes, ttl_ms: int) -> bytes | None:
        """Take ``key`` with ``pending`` for ``ttl_ms`` and return None, or return its value."""
        ...

    async def complete(self, key: str, pending: bytes, value: bytes, ttl_ms: int) -> bool:
        """Replace our ``pending`` with ``value``; False when the key is no longer ours."""
        ...

    async def release(self, key: str, pending: bytes) -> None:
        """Drop the key if it still holds our ``pending``."""
        ...


class MemoryIdempotencyStore:
    """Per process, bounded by entries and bytes (the oldest written go first), expiring on an
    injected clock."""

    def __init__(self, max_entries: int, max_bytes: int, clock_ms: Callable[[], float]) -> None:
        self.max_entries, self.max_bytes, self.clock_ms = max_entries, max_bytes, clock_ms
        self.entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.size = 0

    def _get(self, key: str) -> bytes | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock_ms():
            self._drop(key)
            return None
        return entry[0]

    def _put(self, key: str, value: bytes, ttl_ms: int) -> None:
        self._drop(key)
        self.entries[key] = (value, self.clock_ms() + ttl_ms)
        self.size += len(key) + len(value) + ENTRY_OVERHEAD
        while len(self.entries) > self.max_entries or self.size > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.size -= len(key) + len(entry[0]) + ENTRY_OVERHEAD

    async def claim(self, key: str, pending: bytes, ttl_ms: int) -> bytes | None:
        found = self._get(key)
        if found is None:
            self._put(key, pending, ttl_ms)
        return found

    async def complete(self, key: str, pending: bytes, value: bytes, ttl_ms: int) -> bool:
        if self._get(key) != pending:
            return False
        self._put(key, value, ttl_ms)
        return True

    async def release(self, key: str, pending: bytes) -> None:
        if self._get(key) == pending:
            self._drop(key)


class Commands(Protocol):
    """One Redis server or a cluster (which routes a one-key script to the key's node)."""

    async def evaluate(
        self, script: Script, keys: Sequence[str], args: Sequence[str | bytes | int] = ()
    ) -> Reply: ...


class RedisIdempotencyStore:
    """Records shared by every gateway process: one atomic script per call."""

    def __init__(self, redis: Commands) -> None:
        self.redis = redis

    async def claim(self, key: str, pending: bytes, ttl_ms: int) -> bytes | None:
        reply = _checked(await self.redis.evaluate(CLAIM, [key], [pending, ttl_ms]))
        if isinstance(reply, bytes):
            return reply
        if reply == 0:
            return None
        raise StoreUnavailable(f"redis answered an idempotency claim with {reply!r:.100}")

    async def complete(self, key: str, pending: bytes, value: bytes, ttl_ms: int) -> bool:
        reply = _checked(await self.redis.evaluate(COMPLETE, [key], [pending, value, ttl_ms]))
        return reply == 1

    async def release(self, key: str, pending: bytes) -> None:
        _checked(await self.redis.evaluate(RELEASE, [key], [pending]))


def _checked(reply: Reply) -> Reply:
    if isinstance(reply, RespError):
        raise StoreUnavailable(f"redis refused an idempotency script: {reply.message}")
    return reply


def open_idempotency(config: GatewayConfig, store: Store) -> IdempotencyStore:
    """Wherever the rate limits share their state over the Redis protocol (Redis, or another
    store speaking it to several workers); else this process's memory."""
    from api_gateway.resp.client import RedisClient
    from api_gateway.resp.cluster import ClusterClient
    from api_gateway.stores.fallback import FallbackStore

    if not isinstance(store, FallbackStore):
        settings = config.idempotency
        return MemoryIdempotencyStore(
            settings.max_entries, settings.max_bytes, lambda: time.monotonic() * 1000
        )
    # No in-memory stand-in: the records speak to the store itself, through the client the
    # rate-limit store is (one connection); while it is away the route's fail_closed decides.
    shared = store.primary
    assert isinstance(shared, RedisClient | ClusterClient)
    return RedisIdempotencyStore(shared)
