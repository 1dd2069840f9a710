"""Redis first, memory when Redis cannot answer: the limiter degrades, it does not stop.

Every call to the shared store is bounded by the store's own timeout (the connection fails
every command still waiting when its oldest one is late, see ``resp.connection``). The first
failure flips the store to *degraded*: from then on decisions come from an in-memory GCRA (the
same algorithm, per process) without touching Redis at all, so a hung Redis costs at most one
bound to the requests that were already waiting on it. A background probe pings Redis every
second and flips back on the first answer; no restart is needed. Each transition is logged once
at warning.

``strict`` hits never take the memory answer: they raise ``StoreUnavailable`` so that a route
configured to fail closed can answer 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from api_gateway.limiter import Decision, Rate
from api_gateway.stores import Store, StoreUnavailable
from api_gateway.stores.memory import MemoryStore

log = logging.getLogger("api_gateway.ratelimit")
PROBE_EVERY_S: Final = 1.0


class FallbackStore:
    """``primary`` (Redis or Redis Cluster) with ``memory`` standing in while it is down."""

    def __init__(
        self,
        primary: Store,
        memory: MemoryStore | None = None,
        probe_every_s: float = PROBE_EVERY_S,
    ) -> None:
        self.primary = primary
        self.memory = memory or MemoryStore()
        self.probe_every_s = probe_every_s
        # Read by the metrics exporter.
        self.degraded = False
        self.fallback_decisions = 0
        self.outages = 0
        self.reason = ""
        self._probe: asyncio.Task[None] | None = None

    async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
        if not self.degraded:
            try:
                return await self.primary.hit(key, rate)
            except StoreUnavailable as exc:
                self._degrade(exc)
        if strict:
            raise StoreUnavailable(self.reason)
        self.fallback_decisions += 1
        return self.memory.decide(key, rate)

    async def ping(self) -> None:
        """Ping the shared store (``/ready`` asks): the answer also starts or ends an outage."""
        try:
            await self.primary.ping()
        except StoreUnavailable as exc:
            self._degrade(exc)
            raise
        self._recover()

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        await self.primary.close()

    def _degrade(self, exc: StoreUnavailable) -> None:
        self.reason = str(exc)
        if self.degraded:
            return
        self.degraded = True
        self.outages += 1
        log.warning("rate-limit store unavailable, limiting in memory until it returns: %s", exc)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_back())

    def _recover(self) -> None:
        if self.degraded:
            self.degraded = False
            log.warning("rate-limit store available again, limiting through it")

    async def _probe_until_back(self) -> None:
        while self.degraded:
            await asyncio.sleep(self.probe_every_s)
            try:
                await self.primary.ping()
            except StoreUnavailable as exc:
                self.reason = str(exc)
                continue
            self._recover()
