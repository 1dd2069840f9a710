"""The embedded store: per-process state, used when no ``REDIS_URL`` is configured.

A key's TAT (or block) in the past carries no information: ``gcra`` treats it as absent. Such
keys are dropped with bounded work per hit, never by a pass over every key: each dictionary has
two generations; every ``TURN_EVERY`` hits the young generation becomes the old one (once the
old one is empty), and each hit examines ``DRAIN_PER_HIT`` old entries, moving the live ones
back to the young generation and dropping the expired. A lookup reads the young generation,
then the old one, so decisions are the same as with one dictionary that forgot nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import Final

from api_gateway.limiter import Decision, Rate, blocked, gcra

TURN_EVERY: Final = 10_000  # hits between generations
# Old entries examined per hit: more than one, so that the old generation is gone before the
# next turn even when every hit adds a key.
DRAIN_PER_HIT: Final = 4


class MemoryStore:
    def __init__(self, clock_ms: Callable[[], float] | None = None) -> None:
        # None: the monotonic clock, read in place (one Python call less per hit).
        self.clock_ms = clock_ms
        self.tats: dict[str, float] = {}
        self.blocks: dict[str, float] = {}
        self.old_tats: dict[str, float] = {}
        self.old_blocks: dict[str, float] = {}
        self.hits = 0

    def __len__(self) -> int:
        """Keys held (live or not yet dropped), for tests and the soak."""
        return len(self.tats) + len(self.old_tats) + len(self.blocks) + len(self.old_blocks)

    def decide(self, key: str, rate: Rate) -> Decision:
        clock_ms = self.clock_ms
        now = monotonic() * 1000 if clock_ms is None else clock_ms()
        self.hits += 1
        if self.old_tats or self.old_blocks:
            self._drain(now)
        elif self.hits >= TURN_EVERY:
            self._turn()
        if rate.block_ms:
            until = self.blocks.get(key)
            if until is None and self.old_blocks:
                until = self.old_blocks.get(key)
            block = blocked(until, now)
            if block is not None:
                return block
        tat = self.tats.get(key)
        if tat is None and self.old_tats:
            tat = self.old_tats.get(key)
        decision, new_tat = gcra(tat, now, rate)
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

    def _turn(self) -> None:
        self.hits = 0
        self.old_tats = self.tats
        self.tats = {}
        self.old_blocks = self.blocks
        self.blocks = {}

    def _drain(self, now: float) -> None:
        drain(self.old_tats, self.tats, now)
        drain(self.old_blocks, self.blocks, now)


def drain(old: dict[str, float], young: dict[str, float], now: float) -> None:
    """Examine up to ``DRAIN_PER_HIT`` entries of ``old``: a live one moves to ``young`` unless
    ``young`` has a newer value of its own; an expired one is dropped."""
    for _ in range(DRAIN_PER_HIT):
        if not old:
            return
        key, until = old.popitem()
        if until > now and key not in young:
            young[key] = until
