"""The cache as the policy sees it: look up, save, invalidate; a storage failure is a miss.

Every storage call is bounded by ``timeout_s`` of time the event loop was free (a pause of the
loop, a heavy request, is not a slow storage: see ``timers``). An outage is logged once when it
starts and once when it ends, and counted in ``failures``; meanwhile requests simply go upstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Final, TypeVar

from api_gateway.cache import entry as wire
from api_gateway.cache.entry import Entry, Variants
from api_gateway.cache.rules import variant_key
from api_gateway.cache.storage import CacheStorage
from api_gateway.cache.view import vary_values
from api_gateway.memo import Memo
from api_gateway.stores import StoreUnavailable
from api_gateway.timers import PatientTimeout
from api_gateway.types import Request

log = logging.getLogger("api_gateway.cache")
T = TypeVar("T")
# A storage in this process hands back the very bytes it was given, hit after hit: the entry
# decoded from them is kept and reused while they are the same object (an entry is never
# changed once decoded). Bounded in count and size: a kept entry holds its stored value alive
# and a copy of its body.
DECODED_ENTRIES: Final = 1024
MAX_DECODED_BYTES: Final = 16384


class Cache:
    def __init__(self, storage: CacheStorage, timeout_s: float) -> None:
        self.storage, self.timeout_s = storage, timeout_s
        self.failures = 0
        self.failing = False
        # Saves run after the answer went out; kept here so none is garbage-collected mid-way.
        self.saving: set[asyncio.Task[None]] = set()
        self.decoded: Memo[str, tuple[bytes, Entry | Variants]] = Memo(DECODED_ENTRIES)

    async def generation(self, resource: str) -> str | None:
        """The resource's generation, or None when the storage cannot say (no caching now)."""
        return await self._guarded(self.storage.generation(resource), None)

    async def lookup(self, key: str, request: Request) -> Entry | None:
        found = await self._read(key)
        if isinstance(found, Variants):
            found = await self._read(variant_key(key, vary_values(request, found.names)))
        return found if isinstance(found, Entry) else None

    def save(
        self,
        key: str,
        entry: Entry,
        names: tuple[bytes, ...],
        values: tuple[bytes | None, ...],
        ttl_ms: int,
    ) -> None:
        """Store in the background: the client does not wait for the storage."""
        task = asyncio.get_running_loop().create_task(self._save(key, entry, names, values, ttl_ms))
        self.saving.add(task)
        task.add_done_callback(self.saving.discard)

    async def _save(
        self,
        key: str,
        entry: Entry,
        names: tuple[bytes, ...],
        values: tuple[bytes | None, ...],
        ttl_ms: int,
    ) -> None:
        if names:
            variants = wire.encode_variants(Variants(names))
            await self._guarded(self.storage.put(key, variants, ttl_ms), None)
            key = variant_key(key, values)
        await self._guarded(self.storage.put(key, wire.encode(entry), ttl_ms), None)

    async def invalidate(self, resources: tuple[str, ...]) -> None:
        calls = [self._guarded(self.storage.invalidate(r), None) for r in resources]
        await asyncio.gather(*calls)

    async def _read(self, key: str) -> Entry | Variants | None:
        data = await self._guarded(self.storage.get(key), None)
        if data is None:
            return None
        known = self.decoded.get(key)
        if known is not None and known[0] is data:
            return known[1]
        found = wire.decode(data)
        if found is not None and self.storage.immediate and len(data) <= MAX_DECODED_BYTES:
            self.decoded.put(key, (data, found))
        return found

    async def _guarded(self, call: Awaitable[T], default: T) -> T:
        try:
            if self.storage.immediate:  # it cannot be slow: no timer to set and cancel
                result = await call
            else:
                async with PatientTimeout(self.timeout_s):
                    result = await call
        except (StoreUnavailable, TimeoutError, OSError) as exc:
            self._failed(exc)
            return default
        if self.failing:
            self.failing = False
            log.warning("response cache storage answers again")
        return result

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if not self.failing:
            self.failing = True
            reason = str(exc) or type(exc).__name__
            log.warning("response cache storage unavailable, serving misses: %s", reason)
