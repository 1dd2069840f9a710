"""A bounded TTL cache with negative entries, and a single-flight lookup in front of it.

The clock is injected (milliseconds), so expiry is tested without waiting. Answers, not errors,
are cached: a failed lookup is tried again by the next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class Hit(Generic[V]):
    """A cached answer; ``value`` may itself be None (a cached "no such thing")."""

    __slots__ = ("value",)

    def __init__(self, value: V) -> None:
        self.value = value


class TtlCache(Generic[V]):
    """At most ``max_entries`` answers, each until its own expiry; the oldest goes first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries: dict[str, tuple[float, Hit[V]]] = {}

    def get(self, key: str, now_ms: float) -> Hit[V] | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if now_ms >= entry[0]:
            del self.entries[key]
            return None
        return entry[1]

    def put(self, key: str, value: V, expires_at_ms: float) -> None:
        self.entries.pop(key, None)  # re-inserted at the end: insertion order is age order
        if len(self.entries) >= self.max_entries:
            del self.entries[next(iter(self.entries))]
        self.entries[key] = (expires_at_ms, Hit(value))

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
    ) -> None:
        self.load, self.clock_ms = load, clock_ms
        self.ttl_ms, self.negative_ttl_ms = ttl_ms, negative_ttl_ms
        self.cache: TtlCache[V | None] = TtlCache(max_entries)
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
