"""A bounded TTL cache with negative entries, and a single-flight lookup in front of it.

The clock is injected (milliseconds), so expiry is tested without waiting. Answers, not errors,
are cached: a failed lookup is tried again by the next request. A lookup may keep its answers
past their expiry (``stale_ms``) to serve them when the source fails (stale-if-error).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

V = TypeVar("V")
log = logging.getLogger("api_gateway.lookups")
# A source that keeps failing is said so at most this often, not once per key served stale.
WARN_EVERY_MS: Final = 60_000.0


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
    """At most ``max_entries`` answers and ``max_bytes`` bytes, each fresh until its own expiry
    and kept (stale) until its own deadline, no earlier than its expiry; the oldest goes first.
    The bytes count keys (the client's text, often) and a fixed overhead per entry: a bound by
    count alone lets long keys grow a worker without limit."""

    def __init__(self, max_entries: int, max_bytes: int = 1 << 62) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        # Key -> (fresh until, kept until, answer).
        self.entries: dict[str, tuple[float, float, Hit[V]]] = {}
        self.size = 0

    def get(self, key: str, now_ms: float) -> Hit[V] | None:
        """The fresh answer."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        if now_ms >= entry[0]:
            if now_ms >= entry[1]:
                self._drop(key)
            return None
        return entry[2]

    def stale(self, key: str, now_ms: float) -> Hit[V] | None:
        """The answer, fresh or not, until its keeping deadline."""
        entry = self.entries.get(key)
        if entry is None or now_ms >= entry[1]:
            return None
        return entry[2]

    def refresh(self, key: str, expires_at_ms: float) -> None:
        """Make a kept answer fresh again until ``expires_at_ms`` (never past its deadline),
        leaving its place in the age order."""
        _, kept_until, hit = self.entries[key]
        self.entries[key] = (min(expires_at_ms, kept_until), kept_until, hit)

    def put(
        self, key: str, value: V, expires_at_ms: float, kept_until_ms: float | None = None
    ) -> None:
        cost = entry_bytes(key)
        if key in self.entries:
            self._drop(key)  # re-inserted at the end: insertion order is age order
        if cost > self.max_bytes:
            return
        while self.entries and (
            len(self.entries) >= self.max_entries or self.size + cost > self.max_bytes
        ):
            self._drop(next(iter(self.entries)))
        kept_until = expires_at_ms if kept_until_ms is None else max(kept_until_ms, expires_at_ms)
        self.entries[key] = (expires_at_ms, kept_until, Hit(value))
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

    With ``stale_ms``, an answer is kept that long after it was loaded: a load that fails then
    returns it instead of the error, and it counts as fresh for ``negative_ttl_ms`` more, so a
    failing source is asked about that key at most once per ``negative_ttl_ms``, not once per
    request. With no kept answer the error stands.
    """

    def __init__(
        self,
        load: Callable[[str], Awaitable[V | None]],
        ttl_ms: float,
        negative_ttl_ms: float,
        max_entries: int,
        clock_ms: Callable[[], float],
        max_bytes: int = 1 << 62,
        stale_ms: float = 0,
    ) -> None:
        self.load, self.clock_ms = load, clock_ms
        self.ttl_ms, self.negative_ttl_ms, self.stale_ms = ttl_ms, negative_ttl_ms, stale_ms
        # How many failed loads a kept answer stood in for, and when the log last said so.
        self.served_stale = 0
        self.warned_at_ms = float("-inf")
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
        except Exception as error:
            kept = self._kept(key, error)
            if kept is None:
                raise
            return kept.value
        finally:
            del self.flights[key]
        now = self.clock_ms()
        ttl_ms = self.ttl_ms if value is not None else self.negative_ttl_ms
        self.cache.put(key, value, now + ttl_ms, now + self.stale_ms)
        return value

    def _kept(self, key: str, error: Exception) -> Hit[V | None] | None:
        """The kept answer standing in for a failed load, fresh again for a while."""
        if not self.stale_ms:
            return None
        now = self.clock_ms()
        kept = self.cache.stale(key, now)
        if kept is None:
            return None
        self.cache.refresh(key, now + self.negative_ttl_ms)
        self.served_stale += 1
        if now - self.warned_at_ms >= WARN_EVERY_MS:
            self.warned_at_ms = now
            log.warning("lookup of %s failed (%s): its last good answer stands in", key, error)
        return kept


def _retrieve(flight: asyncio.Future[Any]) -> None:
    """Mark a failed load's error as seen even when every waiter was cancelled."""
    if not flight.cancelled():
        flight.exception()
