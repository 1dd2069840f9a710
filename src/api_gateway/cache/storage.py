"""Where cached answers live: one small interface, a bounded in-memory implementation.

Generations: each resource has a random token that is part of its entries' keys; invalidating
the resource sets a new token, so its old entries are never read again. A resource that has no
token (never seen, expired after ``max_ttl_ms``, forgotten here, or lost by Redis) gets a new
random one, never a fixed first value: a token lost after a write can then never bring back the
entries made before that write, and forgetting a token is always safe (its entries are merely
unreachable until they expire).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol


def new_generation() -> str:
    return os.urandom(6).hex()


def monotonic_ms() -> float:
    """The in-memory storage's clock: compiled here, not a lambda of the interpreted package
    ``__init__``, for it is read twice on every hit."""
    return time.monotonic() * 1000


class CacheStorage(Protocol):
    """Raises ``StoreUnavailable`` when it cannot answer; the caller turns that into a miss.

    ``immediate``: every call answers without waiting for anything (no I/O), so none needs a
    time bound."""

    immediate: bool

    async def generation(self, resource: str) -> str: ...

    async def invalidate(self, resource: str) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None: ...


# What an entry costs besides its key and value: the dictionary's slot and link, the tuple, the
# expiry, the str and bytes objects' headers (measured: about 250 bytes on CPython 3.11).
ENTRY_OVERHEAD: Final = 256


def entry_bytes(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


class MemoryCacheStorage:
    """Per-process entries, least recently used dropped first beyond the entry or byte bound.

    The byte bound counts everything an entry holds: key, value and bookkeeping (keys are short,
    ``rules`` names long resources by a digest, but a bound must not rest on that alone). The
    generations are bounded by ``max_entries`` tokens whose resource names are at most a prefix
    and 129 characters (``rules.MAX_RESOURCE_SEGMENT``).
    """

    def __init__(
        self, max_entries: int, max_bytes: int, max_ttl_ms: int, clock_ms: Callable[[], float]
    ) -> None:
        self.max_entries, self.max_bytes, self.max_ttl_ms = max_entries, max_bytes, max_ttl_ms
        self.clock_ms = clock_ms
        self.immediate = True  # no call awaits anything
        self.entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.size = 0
        self.generations: dict[str, tuple[float, str]] = {}

    async def generation(self, resource: str) -> str:
        now = self.clock_ms()
        found = self.generations.get(resource)
        if found is not None and found[0] > now:
            return found[1]
        return self._renew(resource, now)

    async def invalidate(self, resource: str) -> None:
        self._renew(resource, self.clock_ms())

    def _renew(self, resource: str, now: float) -> str:
        """A new token for ``resource``; beyond ``max_entries`` tokens the oldest is forgotten."""
        self.generations.pop(resource, None)  # re-inserted last: insertion order is age order
        if len(self.generations) >= self.max_entries:
            del self.generations[next(iter(self.generations))]
        token = new_generation()
        self.generations[resource] = (now + self.max_ttl_ms, token)
        return token

    async def get(self, key: str) -> bytes | None:
        found = self.entries.get(key)
        if found is None:
            return None
        if found[0] <= self.clock_ms():
            self._drop(key)
            return None
        self.entries.move_to_end(key)
        return found[1]

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        cost = entry_bytes(key, value)
        if cost > self.max_bytes:
            return
        if key in self.entries:
            self._drop(key)
        self.entries[key] = (self.clock_ms() + ttl_ms, value)
        self.size += cost
        while len(self.entries) > self.max_entries or self.size > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: str) -> None:
        self.size -= entry_bytes(key, self.entries.pop(key)[1])
