"""Cached answers in Redis, shared by every gateway process: single-key commands only.

Entries are ``SET key value PX ttl``; a resource's generation is a key of its own in the same
hash slot (``cache:{<resource>}:gen``), so a Redis Cluster can hold them.
"""

from __future__ import annotations

from typing import Protocol

from api_gateway.cache.rules import generation_key
from api_gateway.cache.storage import INITIAL_GENERATION, new_generation
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.redis import Reply, RespError


class Commands(Protocol):
    """One Redis server or a cluster: both route a single-key command to the key's node."""

    async def command(self, *args: str | bytes | int) -> Reply: ...


class RedisCacheStorage:
    def __init__(self, store: Commands, max_ttl_ms: int) -> None:
        self.store, self.max_ttl_ms = store, max_ttl_ms

    async def generation(self, resource: str) -> str:
        reply = await self.get(generation_key(resource))
        if reply is None:
            return INITIAL_GENERATION
        try:
            return reply.decode("ascii")
        except UnicodeDecodeError:
            raise StoreUnavailable("a cache generation is not ASCII") from None

    async def invalidate(self, resource: str) -> None:
        key = generation_key(resource)
        _check(await self.store.command("SET", key, new_generation(), "PX", self.max_ttl_ms))

    async def get(self, key: str) -> bytes | None:
        reply = _check(await self.store.command("GET", key))
        if reply is not None and not isinstance(reply, bytes):
            raise StoreUnavailable(f"redis answered GET with {reply!r:.100}")
        return reply

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        _check(await self.store.command("SET", key, value, "PX", ttl_ms))


def _check(reply: Reply) -> Reply:
    if isinstance(reply, RespError):
        raise StoreUnavailable(f"redis refused a cache command: {reply.message}")
    return reply
