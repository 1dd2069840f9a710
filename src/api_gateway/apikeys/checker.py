"""``ApiKeys``: the claims of an API key on a route, or why not.

A key's record is cached per worker for ``api_keys.recheck_ms`` (a revocation reaches every
gateway within it), an unknown id for a second; at most one lookup per id is in flight, and
at most ``MAX_LOADS`` in all, so a flood of made-up keys cannot queue unbounded work on the
store. While the store cannot answer, a key verified within ``recheck_ms`` keeps working from
the cache; any other gets 503, never 500. The secret is checked against the stored HMAC on
every request (about a µs), so the cache holds nothing a stolen worker memory could replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from api_gateway.apikeys.format import digest, key_id_of
from api_gateway.apikeys.limit import ApiKeyLimit
from api_gateway.apikeys.records import UNKNOWN, KeyRecord
from api_gateway.apikeys.store import KeyStore
from api_gateway.config.auth import parse_rate
from api_gateway.config.settings import ApiKeysConfig
from api_gateway.errors import Forbidden, ServiceUnavailable, Unauthorized
from api_gateway.lookups import CachedLookup
from api_gateway.memo import Memo
from api_gateway.stores import Store, StoreUnavailable
from api_gateway.types import Claims

log = logging.getLogger("api_gateway.apikeys")
NEGATIVE_TTL_MS: Final = 1000.0
# A key that does not match its cached record reloads it, at most this often: the new key of a
# rotation works at once, yet wrong secrets for a real id cannot hammer the store.
RELOAD_AFTER_MS: Final = 1000.0
MAX_ENTRIES: Final = 100_000
MAX_BYTES: Final = 64 * 1024 * 1024
MAX_LOADS: Final = 256  # store lookups in flight per worker; beyond, 503 at once
TOUCH_EVERY_MS: Final = 60_000.0  # last-used written at most this often per key and worker
MAX_TOUCHED: Final = 100_000
FAR_FUTURE: Final = 253402300799.0  # 9999-12-31: a key without expiry
WARN_EVERY_MS: Final = 10_000.0
RETRY_AFTER: Final = [(b"retry-after", b"1")]


def monotonic_ms() -> float:
    return time.monotonic() * 1000


class Entry:
    """A cached record with the claims it gives, rendered once."""

    __slots__ = ("claims", "loaded_at", "record")

    def __init__(self, record: KeyRecord, claims: Claims, loaded_at: float) -> None:
        self.record, self.claims, self.loaded_at = record, claims, loaded_at


class ApiKeys:
    def __init__(
        self,
        store: KeyStore,
        config: ApiKeysConfig,
        limit_store: Store,
        clock_ms: Callable[[], float] = monotonic_ms,
        now_s: Callable[[], float] = time.time,
        max_entries: int = MAX_ENTRIES,
        max_loads: int = MAX_LOADS,
    ) -> None:
        self.store, self.clock_ms, self.now_s = store, clock_ms, now_s
        self.max_loads = max_loads
        self.pepper = config.pepper.encode()
        self.default_rate = parse_rate(config.default_rate_limit)
        negative_ms = min(NEGATIVE_TTL_MS, config.recheck_ms)
        self.lookup: CachedLookup[Entry] = CachedLookup(
            self._load, config.recheck_ms, negative_ms, max_entries, clock_ms, MAX_BYTES
        )
        self.limit = ApiKeyLimit(limit_store, self.default_rate)
        self.loading = 0
        self.last_warning = -WARN_EVERY_MS
        self.touched: Memo[str, float] = Memo(MAX_TOUCHED)
        self.tasks: set[asyncio.Future[None]] = set()

    async def check(self, key: bytes, route: str) -> Claims:
        key_id = key_id_of(key)  # a wrong shape is refused before any lookup
        key_digest = digest(self.pepper, key)
        hit = self.lookup.cached(key_id)
        entry = hit.value if hit is not None else await self._fetch(key_id)
        refusal = self.refusal(entry, key_digest)
        if refusal == UNKNOWN and entry is not None and self._may_reload(entry):
            self.lookup.cache.put(key_id, None, 0)  # expired at once: the next get loads
            entry = await self._fetch(key_id)
            refusal = self.refusal(entry, key_digest)
        if refusal is not None or entry is None:
            raise Unauthorized(refusal or UNKNOWN)
        if not entry.record.allows(route):
            # 403, not 401: the key is good, it is just not meant for this route.
            raise Forbidden("this API key is not allowed on this route")
        self._note_use(key_id)
        return entry.claims

    def refusal(self, entry: Entry | None, key_digest: str) -> str | None:
        if entry is None:
            return UNKNOWN
        return entry.record.refusal(key_digest, self.now_s())

    def _may_reload(self, entry: Entry) -> bool:
        return self.clock_ms() - entry.loaded_at >= RELOAD_AFTER_MS

    async def _fetch(self, key_id: str) -> Entry | None:
        try:
            return await self.lookup.get(key_id)
        except StoreUnavailable as exc:
            self._warn(exc)
            raise ServiceUnavailable(
                "API keys cannot be checked right now; try again shortly", list(RETRY_AFTER)
            ) from None

    def _warn(self, exc: StoreUnavailable) -> None:
        now = self.clock_ms()
        if now - self.last_warning >= WARN_EVERY_MS:
            self.last_warning = now
            log.warning("API key store unavailable, unverified keys get 503: %s", exc)

    async def _load(self, key_id: str) -> Entry | None:
        if self.loading >= self.max_loads:
            raise StoreUnavailable("too many API key lookups at once")
        self.loading += 1
        try:
            record = await self.store.get(key_id)
        finally:
            self.loading -= 1
        if record is None:
            return None
        return Entry(record, self.claims_of(record), self.clock_ms())

    def claims_of(self, record: KeyRecord) -> Claims:
        rate = self.default_rate
        if record.rate:
            # The CLI checks rates; a hand-edited one falls back to the default.
            with contextlib.suppress(ValueError):
                rate = parse_rate(record.rate)
        expires_at = record.expires_at or FAR_FUTURE
        return Claims("key:" + record.id, record.tenant, "", "", expires_at, record.id, rate)

    def _note_use(self, key_id: str) -> None:
        """Record the use in the store, at most once a minute, off the request path."""
        now = self.clock_ms()
        last = self.touched.get(key_id)
        if last is not None and now - last < TOUCH_EVERY_MS:
            return
        self.touched.put(key_id, now)
        task = asyncio.ensure_future(self.store.touch(key_id, self.now_s()))
        self.tasks.add(task)
        task.add_done_callback(self._touched)

    def _touched(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()  # ignored: last-used is a hint, never worth a failed request

    def start(self) -> None:
        """Nothing runs in the background: records load on demand."""

    async def close(self) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=1.0)
        for task in list(self.tasks):
            task.cancel()
        await self.store.close()
