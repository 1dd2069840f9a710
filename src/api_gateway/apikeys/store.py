"""Where key records live: Redis when ``redis.url`` is set (every gateway sees one store), else
an embedded SQLite file (``api_keys.path``) that the CLI and several workers share safely."""

from __future__ import annotations

from typing import Protocol

from api_gateway.apikeys.records import KeyRecord
from api_gateway.config.settings import GatewayConfig


class KeyStore(Protocol):
    """Failures surface as ``stores.StoreUnavailable`` only."""

    async def get(self, key_id: str) -> KeyRecord | None:
        """The record, or None when there is none (or it is unusable)."""
        ...

    async def put(self, record: KeyRecord) -> None:
        """Create or replace the record, keeping its ``last_used``."""
        ...

    async def records(self) -> list[KeyRecord]: ...

    async def touch(self, key_id: str, when_s: float) -> None:
        """Note that the key was used at ``when_s``."""
        ...

    async def close(self) -> None: ...


def open_key_store(config: GatewayConfig, writer: bool = False) -> KeyStore:
    """The configured store; ``writer``: for the CLI, which may wait longer for a busy file."""
    if config.redis_url is not None:
        from api_gateway.apikeys.redis import RedisKeys
        from api_gateway.stores.cluster import open_shared

        return RedisKeys(open_shared(config), config.api_keys.key_prefix)
    from api_gateway.apikeys.sqlite import SqliteKeys

    return SqliteKeys(config.api_keys.path, busy_timeout_s=5.0 if writer else 0.25)
