"""Where shared state lives: one small interface, an in-memory and a Redis implementation."""

from __future__ import annotations

from typing import Protocol

from api_gateway.limiter import Decision, Rate


class StoreUnavailable(Exception):
    """The store cannot answer now (Redis down, timed out); callers decide how to degrade."""


class Store(Protocol):
    async def hit(self, key: str, rate: Rate) -> Decision:
        """Count one request against ``key`` under ``rate`` and decide it."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""
        ...

    async def close(self) -> None: ...
