"""Where cached answers live: one small interface, a bounded in-memory implementation.

Generations: each resource has a token that is part of its entries' keys; invalidating the
resource sets a new token, so its old entries are never read again. A token lives ``max_ttl_ms``
(longer than any entry of the generation before it), after which it reads as "0" again safely.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

INITIAL_GENERATION: Final = "0"


def new_generation() -> str:
    return os.urandom(6).hex()


class CacheStorage(Protocol):
    """Raises ``StoreUnavailable`` when it cannot answer; the caller turns that into a miss."""

    async def generation(self, resource: str) -> str: ...

    async def invalidate(self, resource: str) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None: ...


class MemoryCacheStorage:
    """Per-process entries, least recently used dropped first beyond the entry or byte bound."""

    def __init__(
        self, max_entries: int, max_bytes: int, max_ttl_ms: int, clock_ms: Callable[[], float]
    ) -> None:
        self.max_entries, self.max_bytes, self.max_ttl_ms = max_entries, max_bytes, max_ttl_ms
        self.clock_ms = clock_ms
        self.entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.size = 0
        self.generations: dict[str, tuple[float, str]] = {}

    async def generation(self, resource: str) -> str:
        found = self.generations.get(resource)
        if found is None or found[0] <= self.clock_ms():
            return INITIAL_GENERATION
        return found[1]

    async def invalidate(self, resource: str) -> None:
        now = self.clock_ms()
        if len(self.generations) >= self.max_entries:
            self._forget_generations(now)
        self.generations[resource] = (now + self.max_ttl_ms, new_generation())

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
        if len(value) > self.max_bytes:
            return
        if key in self.entries:
            self._drop(key)
        self.entries[key] = (self.clock_ms() + ttl_ms, value)
        self.size += len(value)
        while len(self.entries) > self.max_entries or self.size > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: str) -> None:
        self.size -= len(self.entries.pop(key)[1])

    def _forget_generations(self, now: float) -> None:
        """Bound the generations: expired ones go; if none has, everything goes.

        Forgetting a live generation would make its resource's older entries readable again,
        so when too many resources were written recently the whole cache is emptied instead.
        """
        self.generations = {r: g for r, g in self.generations.items() if g[0] > now}
        if len(self.generations) >= self.max_entries:
            self.generations.clear()
            self.entries.clear()
            self.size = 0
