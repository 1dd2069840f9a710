"""Which Stripe events were answered already: the deduplication of verified webhooks.

A delivery first *claims* its event id with a marker of its own that it is in flight (which
expires by itself, should the gateway die with it); the service's 2xx turns the claim into
*seen* for the dedupe TTL; any other outcome releases it, so that Stripe's retry reaches the
service again. In Redis (shared by every gateway) with single-key commands only (GET, SET with
NX/PX, DEL), so a Redis Cluster or a store that speaks only those can hold them; otherwise in
the process's memory, bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from api_gateway.resp.protocol import Reply, RespError
from api_gateway.stores import StoreUnavailable

CLAIMED: Final = 0  # this delivery holds the event: forward it
SEEN: Final = 1  # answered 2xx within the TTL: answer without forwarding
IN_FLIGHT: Final = 2  # another delivery of the event is being forwarded right now
SEEN_MARK: Final = "1"
CLAIM_MARK: Final = "p:"  # followed by the claiming delivery's token


class EventLog(Protocol):
    async def claim(self, event: str, token: str, in_flight_ms: int) -> int:
        """CLAIMED, SEEN or IN_FLIGHT; raises ``StoreUnavailable``."""
        ...

    async def seen(self, event: str, ttl_ms: int) -> None: ...

    async def release(self, event: str, token: str) -> None:
        """Forget the claim, if it is still this delivery's."""
        ...


class MemoryEvents:
    """Event ids of this process, expiring, and at most ``max_events`` of them: past that the
    oldest are forgotten first (a forgotten event is forwarded again, as without dedupe)."""

    def __init__(self, max_events: int, clock_ms: Callable[[], float]) -> None:
        self.max_events = max_events
        self.clock_ms = clock_ms
        # event -> (mark, expiry in ms); insertion order is age, as every write re-inserts.
        self.events: dict[str, tuple[str, float]] = {}

    async def claim(self, event: str, token: str, in_flight_ms: int) -> int:
        mark = self._get(event)
        if mark is not None:
            return SEEN if mark == SEEN_MARK else IN_FLIGHT
        self._put(event, CLAIM_MARK + token, in_flight_ms)
        return CLAIMED

    async def seen(self, event: str, ttl_ms: int) -> None:
        self._put(event, SEEN_MARK, ttl_ms)

    async def release(self, event: str, token: str) -> None:
        if self._get(event) == CLAIM_MARK + token:
            del self.events[event]

    def _get(self, event: str) -> str | None:
        entry = self.events.get(event)
        if entry is None:
            return None
        if entry[1] <= self.clock_ms():
            del self.events[event]
            return None
        return entry[0]

    def _put(self, event: str, mark: str, ttl_ms: int) -> None:
        self.events.pop(event, None)
        while len(self.events) >= self.max_events:
            del self.events[next(iter(self.events))]
        self.events[event] = (mark, self.clock_ms() + ttl_ms)


class Commands(Protocol):
    """One Redis server or a cluster: both route a single-key command to the key's node."""

    async def command(self, *args: str | bytes | int) -> Reply: ...


class RedisEvents:
    """Event ids in Redis under ``prefix``, shared by every gateway."""

    def __init__(self, redis: Commands, prefix: str) -> None:
        self.redis, self.prefix = redis, prefix

    async def claim(self, event: str, token: str, in_flight_ms: int) -> int:
        key, mark = self.prefix + event, CLAIM_MARK + token
        # Twice at most: the second after a mark that expired between SET NX and GET.
        for _ in range(2):
            if await self._command("SET", key, mark, "NX", "PX", in_flight_ms) is not None:
                return CLAIMED
            found = await self._command("GET", key)
            if found is not None:
                return SEEN if found == SEEN_MARK.encode() else IN_FLIGHT
        return IN_FLIGHT

    async def seen(self, event: str, ttl_ms: int) -> None:
        await self._command("SET", self.prefix + event, SEEN_MARK, "PX", ttl_ms)

    async def release(self, event: str, token: str) -> None:
        key = self.prefix + event
        # Only our own claim: a claim that expired may be another delivery's by now (GET then
        # DEL leaves a short race, which at worst forwards one delivery twice).
        if await self._command("GET", key) == (CLAIM_MARK + token).encode():
            await self._command("DEL", key)

    async def _command(self, *args: str | int) -> Reply:
        reply = await self.redis.command(*args)
        if isinstance(reply, RespError):
            raise StoreUnavailable(f"redis refused a webhook command: {reply.message}")
        return reply
