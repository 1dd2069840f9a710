"""The embedded store: per-process state, used when no ``REDIS_URL`` is configured."""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import Final

from api_gateway.limiter import Decision, Rate, blocked, gcra

SWEEP_EVERY: Final = 10_000  # hits between sweeps of expired keys


class MemoryStore:
    def __init__(self, clock_ms: Callable[[], float] | None = None) -> None:
        # None: the monotonic clock, read in place (one Python call less per hit).
        self.clock_ms = clock_ms
        self.tats: dict[str, float] = {}
        self.blocks: dict[str, float] = {}
        self.hits = 0

    def decide(self, key: str, rate: Rate) -> Decision:
        clock_ms = self.clock_ms
        now = monotonic() * 1000 if clock_ms is None else clock_ms()
        self.hits += 1
        if self.hits % SWEEP_EVERY == 0:
            self._sweep(now)
        if rate.block_ms:
            block = blocked(self.blocks.get(key), now)
            if block is not None:
                return block
        decision, new_tat = gcra(self.tats.get(key), now, rate)
        if new_tat is not None:
            self.tats[key] = new_tat
        elif rate.block_ms:
            self.blocks[key] = now + rate.block_ms
            return Decision(False, 0, rate.block_ms, rate.block_ms)
        return decision

    async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
        return self.decide(key, rate)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _sweep(self, now: float) -> None:
        # A TAT in the past means the bucket is full again: the key carries no information.
        self.tats = {k: v for k, v in self.tats.items() if v > now}
        self.blocks = {k: v for k, v in self.blocks.items() if v > now}
