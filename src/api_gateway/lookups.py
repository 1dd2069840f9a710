"""A bounded TTL cache with negative entries, and a single-flight lookup in front of it.

The clock is injected (milliseconds), so expiry is tested without waiting. Answers, not errors,
are cached: a failed lookup is tried again by the next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

V = TypeVar("V")


class Hit(Generic[V]):
    """A cached answer; ``value`` may itself be None (a cached "no such thing")."""

    __slots__ = ("value",)

    def __init__(self, value: V) -> None:
        self.value = value


# What an entry costs besides its key's characters: the dictionary slot, the tuple, the expiry,
# the ``Hit`` and the str header, and a small value (an id, a venue with its two header lines).
ENTRY_OVERHEAD: Final = 512


def entry_bytes(key: str) -> int:
    return len(key) + ENTRY_OVERHEAD


class TtlCache(Generic[V]):
    """At most ``max_entries`` answers and ``max_bytes`` bytes, each until its own expiry; the
    oldest goes first. The bytes count keys (the client's text, often) and a fixed overhead per
    entry: a bound by count alone lets long keys grow a worker without limit."""

    def __init__(self, max_entries: int, max_bytes: int = 1 << 62) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.entries: dict[str, tuple[float, Hit[V]]] = {}
        self.size = 0

    def get(self, key: str, now_ms: float) -> Hit[V] | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if now_ms >= entry[0]:
            self._drop(key)
            return None
        return entry[1]

    def put(self, key: str, value: V, expires_at_ms: float) -> None:
        cost = entry_bytes(key)
        if key in self.entries:
            self._drop(key)  # re-inserted at the end: insertion order is age order
        if cost > self.max_bytes:
            return
        while self.entries and (
            len(self.entries) >= self.max_entries or self.size + cost > self.max_bytes
        ):
            self._drop(next(iter(self.entries)))
        self.entries[key] = (expires_at_ms, Hit(value))
        self.size += cost

    def _drop(self, key: str) -> None:
        del self.entries[key]
        self.size -= entry_bytes(key)

    def __len__(self) -> int:
        return len(self.entries)


class CachedLookup(Generic[V]):
    """``load(key)`` answers (None: "no such thing"), cached for ``ttl_ms`` (``negative_ttl_ms``
    for None), with at most one load per key in flight: concurrent misses share it.

    The shared load runs as its own task, so a waiter that is cancelled (its client left) does
    not cancel the others' answer.
    """

    def __init__(
        self,
        load: Callable[[str], Awaitable[V | None]],
        ttl_ms: float,
        negative_ttl_ms: float,
        max_entries: int,
        clock_ms: Callable[[], float],
        max_bytes: int = 1 << 62,
    ) -> None:
        self.load, self.clock_ms = load, clock_ms
        self.ttl_ms, self.negative_ttl_ms = ttl_ms, negative_ttl_ms
        self.cache: TtlCache[V | None] = TtlCache(max_entries, max_bytes)
        self.flights: dict[str, asyncio.Future[V | None]] = {}

    def cached(self, key: str) -> Hit[V | None] | None:
        """The fresh cached answer, without awaiting anything."""
        return self.cache.get(key, self.clock_ms())

    async def get(self, key: str) -> V | None:
        hit = self.cached(key)
        if hit is not None:
            return hit.value
        flight = self.flights.get(key)
        if flight is None:
            flight = self.flights[key] = asyncio.ensure_future(self._load(key))
            flight.add_done_callback(_retrieve)
        return await asyncio.shield(flight)

    async def _load(self, key: str) -> V | None:
        try:
            value = await self.load(key)
        finally:
            del self.flights[key]
        ttl_ms = self.ttl_ms if value is not None else self.negative_ttl_ms
        self.cache.put(key, value, self.clock_ms() + ttl_ms)
        return value


def _retrieve(flight: asyncio.Future[Any]) -> None:
    """Mark a failed load's error as seen even when every waiter was cancelled."""
    if not flight.cancelled():
        flight.exception()
