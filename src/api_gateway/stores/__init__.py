"""Where shared state lives: one small interface, an in-memory and a Redis implementation."""

from __future__ import annotations

from typing import Protocol

from api_gateway.limiter import Decision, Rate


class StoreUnavailable(Exception):
    """The store cannot answer now (Redis down, timed out); callers decide how to degrade."""


class Store(Protocol):
    async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
        """Count one request against ``key`` under ``rate`` and decide it.

        A store that can stand in for an unreachable backend (``FallbackStore``) does so unless
        ``strict``: then it raises ``StoreUnavailable``, for routes that must fail closed.
        """
        ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""
        ...

    async def close(self) -> None: ...
